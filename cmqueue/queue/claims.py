"""Run each job at most once at a time, and never again once it is done.

The Redis transport hands an unacknowledged message out again after its visibility
timeout, even while the first worker still runs it. Before running, a worker takes a
claim on the job (a key with a TTL it keeps alive while the job runs). A second copy
that finds the claim held waits and checks again; one that finds the job done drops
itself; one that finds the claim expired (its holder died) runs the job. Cancel
requests live here too, so a job cancelled while queued is dropped when it arrives.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..core import defaults
from ..core.models import Event
from . import events, receipts

CANCEL_CHANNEL = "cmq:cancel"

# Check done/cancel, take the claim, note the start and announce "running", in one round
# trip. KEYS: done, cancel, claim, stream, started. ARGV: token, claim ttl, start mark,
# mark ttl, then the event's field/value pairs. Returns 'run|<mark of an earlier start
# that never ended>' (empty when there was none), or 'done', 'cancelled', 'busy'.
_BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'done' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'cancelled' end
if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'EX', ARGV[2]) then return 'busy' end
local earlier = redis.call('GET', KEYS[5]) or ''
redis.call('SET', KEYS[5], ARGV[3], 'EX', ARGV[4])
if #ARGV > 4 then redis.call('XADD', KEYS[4], '*', unpack(ARGV, 5)) end
return 'run|' .. earlier
"""


# KEYS: claim. ARGV: token. Deletes the claim only while it holds ``token``.
_DROP_OWN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Keep a worker's claims alive; take back one that expired while the worker could not
# renew it (stopped, cut off from the broker), unless the job is done meanwhile. KEYS:
# claim, done, for each job. ARGV: token, ttl. Returns the (1-based) numbers of the jobs
# whose claim another run holds now: those run twice.
_KEEP_CLAIMS = """
local taken = {}
for i = 1, #KEYS, 2 do
  local cur = redis.call('GET', KEYS[i])
  if cur == ARGV[1] then redis.call('EXPIRE', KEYS[i], ARGV[2])
  elseif not cur then
    if redis.call('EXISTS', KEYS[i + 1]) == 0 then redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[2]) end
  else table.insert(taken, (i + 1) / 2) end
end
return taken
"""

# End a run: publish its event, and for a final one set the done marker; drop the claim
# and the start mark only while they are this run's (or gone): another run of the job
# that took over meanwhile keeps its own; with a delivery tag, let the message go too
# (see :mod:`.receipts`), so that the outcome and the acknowledgement are one write.
# KEYS: claim, started, stream, done, then the receipts' keys. ARGV: token, done value
# ('' for none: a run that will be tried again), done ttl, 'check' (answer 'other|<its
# start mark>' and write nothing when another run holds the claim) or 'write', '1' to
# drop the start mark (the run is known to have ended) or '0', the delivery tag to let go
# ('' for none), then the event's field/value pairs.
_END = """
local cur = redis.call('GET', KEYS[1])
local mine = (not cur) or cur == ARGV[1]
if not mine and ARGV[4] == 'check' then return 'other|' .. (redis.call('GET', KEYS[2]) or '?') end
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 7))
if ARGV[2] ~= '' then redis.call('SET', KEYS[4], ARGV[2], 'EX', ARGV[3]) end
if mine then
  redis.call('DEL', KEYS[1])
  if ARGV[5] == '1' then redis.call('DEL', KEYS[2]) end
end
if ARGV[6] ~= '' then
""" + receipts.lua_let_go(5, "ARGV[6]") + """end
return 'ok'
"""


class Verdict(str, Enum):
    """What a worker should do with a job message it just received."""

    RUN = "run"
    BUSY = "busy"
    DONE = "done"
    CANCELLED = "cancelled"


def claim_key(job: str) -> str:
    """Redis key of ``job``'s claim (its value: the guard token of the worker running it)."""
    return f"cmq:claim:{job}"



def done_key(job: str) -> str:
    """Redis key of ``job``'s done marker (kept ``done_ttl``)."""
    return f"cmq:done:{job}"



def _cancel(job: str) -> str:
    return f"cmq:cancel:{job}"


def started_key(job: str) -> str:
    """Redis key noting where ``job`` started (until it ends or fails an attempt)."""
    return f"cmq:started:{job}"



@dataclass(frozen=True)
class Claim:
    """The answer of :meth:`JobGuard.begin`: what to do, and for a job to run, the mark
    of an earlier start that never ended (its worker or machine was lost mid-run), so
    that the job is known, and reported, to have possibly run twice."""

    verdict: Verdict
    earlier: str = ""


class JobGuard:
    """Claims, done markers and cancel flags for jobs, kept in the broker's Redis."""

    def __init__(self, client: Any, token: str, stream: str = defaults.EVENT_STREAM,
                 claim_ttl: int = defaults.CLAIM_TTL, done_ttl: int = defaults.DONE_TTL,
                 replicated: Callable[[], Any] | None = None) -> None:
        self.client = client
        #: Called after the writes that start and end a job: waits until the broker's
        #: replicas have them (see :class:`cmqueue.queue.broker.ReplicaWait`).
        self.replicated = replicated or (lambda: 0)
        self.token = token
        self.stream = stream
        self.claim_ttl = int(claim_ttl)
        self.done_ttl = int(done_ttl)
        self._begin = client.register_script(_BEGIN)
        self._drop_own = client.register_script(_DROP_OWN)
        self._keep_claims = client.register_script(_KEEP_CLAIMS)
        self._end_script = client.register_script(_END)

    def begin(self, job: str, running: Event | None = None, mark: str = "") -> Claim:
        """Try to claim ``job``; on success note ``mark`` (who starts it) as its start and
        publish ``running``, in one round trip. A start noted earlier and never ended by
        :meth:`finish` or :meth:`release` comes back as ``Claim.earlier``."""
        fields: list[str] = []
        if running is not None:
            for key, value in events.encode(running).items():
                fields += [key, value]
        answer = self._begin(keys=[done_key(job), _cancel(job), claim_key(job), self.stream, started_key(job)],
                             args=[self.token, self.claim_ttl, mark or "?", self.done_ttl, *fields])
        answer = answer.decode() if isinstance(answer, bytes) else answer
        self.replicated()
        verdict, _, earlier = answer.partition("|")
        return Claim(Verdict(verdict), earlier)

    def release_own(self, job: str) -> bool:
        """Give up ``job``'s claim if this guard holds it (nothing else changes)."""
        return bool(self._drop_own(keys=[claim_key(job)], args=[self.token]))

    def heartbeat(self, jobs: list[str]) -> list[str]:
        """Keep the claims of ``jobs`` (running here) alive, and take back those that
        expired while this worker could not renew them (it was stopped, or cut off from
        the broker). Returns the jobs whose claim another run holds now: they run twice."""
        if not jobs:
            return []
        keys = [k for job in jobs for k in (claim_key(job), done_key(job))]
        taken = self._keep_claims(keys=keys, args=[self.token, self.claim_ttl])
        return [jobs[int(i) - 1] for i in taken]

    def release(self, job: str, event: Event | None = None, ended: bool = True) -> None:
        """Give up the claim (the job will run again later) and publish ``event``.

        ``ended``: the run is known to have ended (a failed attempt). False when it may
        still have run partly (its machine went away mid-run): the next start then
        reports it as a possible second run. A claim (and start mark) that another run
        took over meanwhile is left to it.
        """
        if event is None:
            self.release_own(job)
            return
        self._end(job, event, "", mark_ended=ended)

    def finish(self, job: str, event: Event, keep: bool = False, let_go: str = "") -> None:
        """Mark ``job`` done, drop the claim and publish its final event, atomically.

        ``let_go``: the delivery tag of the job's message, acknowledged in the same write
        (the caller tells its channel so: see :meth:`.receipts.Receipts.gone`). Never for
        a map member: its acknowledgement must follow the chord's count of it.

        With ``keep`` the done marker holds the job's outcome (:func:`outcome_of`), so a
        redelivered copy of a map member hands the reduce the same outcome again. When
        another run of the job holds its claim (this one was cut off long enough for its
        claim to expire and the job to start again elsewhere), the event says that the
        job ran twice, and the other run's claim stays.
        """
        answer = self._end(job, event, _done_value(event, keep), check=True, let_go=let_go)
        if answer.startswith("other|"):
            note_rerun(event.data, answer.partition("|")[2], alongside=True)
            self._end(job, event, _done_value(event, keep), let_go=let_go)   # the outcome now says so too
        self.replicated()

    def _end(self, job: str, event: Event, done: str, check: bool = False, mark_ended: bool = True,
             let_go: str = "") -> str:
        fields: list[str] = []
        for key, value in events.encode(event).items():
            fields += [key, value]
        answer = self._end_script(keys=[claim_key(job), started_key(job), self.stream, done_key(job),
                                        *receipts.KEYS],
                                  args=[self.token, done, self.done_ttl, "check" if check else "write",
                                        "1" if mark_ended else "0", let_go, *fields])
        return answer.decode() if isinstance(answer, bytes) else answer

    def outcome(self, job: str) -> dict[str, Any] | None:
        """The outcome stored by ``finish(keep=True)``, or None."""
        raw = self.client.get(done_key(job))
        if not raw or raw in (b"1", "1"):
            return None
        return json.loads(raw)

    def is_done(self, job: str) -> bool:
        """Whether ``job`` has ended (its done marker exists)."""
        return bool(self.client.exists(done_key(job)))

    def is_cancelled(self, job: str) -> bool:
        """Whether a cancel was requested for ``job``."""
        return bool(self.client.exists(_cancel(job)))


def _done_value(event: Event, keep: bool) -> str:
    """What a done marker holds: the outcome (``keep``, for map members) or "1"."""
    return json.dumps(outcome_of(event), separators=(",", ":")) if keep else "1"


def note_rerun(data: dict[str, Any], earlier: str, alongside: bool = False) -> None:
    """Mark a job's outcome ``data`` as one of two runs: an earlier start on machine
    ``earlier`` never ended (lost worker or machine), or, ``alongside``, this run was cut
    off long enough for the job to start again on ``earlier``. Its side effects may be
    doubled, and its record says so (``reran_after``)."""
    data.setdefault("data", {})["reran_after"] = earlier
    if alongside:
        note = (f"ran twice: this run was cut off from the broker (its worker stopped or unreachable) "
                f"and the job started again on {earlier}")
    else:
        note = f"ran again: its start on {earlier} was cut off (worker or machine lost); it may have run twice"
    data["reason"] = f"{note}; {data['reason']}" if data.get("reason") else note


def suspended_key(workflow: str) -> str:
    """Redis key holding why ``workflow`` is suspended (absent while it may go on)."""
    return f"cmq:wf:{workflow}:suspended"


def outcome_of(event: Event) -> dict[str, Any]:
    """What a reduce needs of a finished job: state, where, exit code, stdout, times."""
    d = event.data
    return {"job": event.job, "state": event.state.value, "machine": event.machine,
            "exit_code": d.get("exit_code"), "stdout": d.get("stdout", ""),
            "stdout_truncated": bool(d.get("stdout_truncated")), "reason": d.get("reason", ""),
            "started": d.get("started"), "ended": d.get("ended", event.ts)}


def request_cancel(client: Any, jobs: list[str], ttl: int = defaults.DONE_TTL) -> None:
    """Flag ``jobs`` as cancelled and tell running workers to kill them now."""
    pipe = client.pipeline(transaction=False)
    for job in jobs:
        pipe.set(_cancel(job), "1", ex=ttl)
        pipe.publish(CANCEL_CHANNEL, job)
    pipe.execute()
