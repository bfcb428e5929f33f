"""What the broker lost in a crash is sent again: a map's reduce, and queued jobs.

The reduce of a map is a Celery chord callback: the worker that ends the map's last member
counts it in the chord and publishes the callback. If the broker goes away at that moment,
Celery gives up on the chord, and the reduce would stay queued forever although every
member has ended. The recorder looks for such maps every ``rescue_interval`` seconds: a
reduce still queued, whose members have all ended more than ``grace`` seconds ago, that
no worker has claimed or finished and whose message is nowhere on the broker, is sent
again with the members' outcomes (kept with their done markers). The reduce's own guard
makes it run once whatever happens.

Redis hands a message out by popping it from its queue before the worker has it: if Redis
dies in between, the message is gone although nothing of it was lost from the disk. So,
some ``grace`` seconds after the recorder sees a Redis that restarted (its run id
changed, or the recorder itself started), every job queued since before then whose
message is nowhere on the broker (not queued, not handed out, never claimed, started or
done) is sent again.

A Redis that restarted may also lack the end of a job the history recorded: replication to
a replica promoted by Sentinel is asynchronous, and a job's done marker can be lost with
the last writes of the old primary. Its message, handed out again, would run the job a
second time. So the done markers of the jobs that ended within ``END_WINDOW`` seconds before
the restart are put back from the history (with the outcome a map's reduce needs) before
anything is resent.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..core import defaults
from ..core.models import JobStatus
from ..core.periodic import every
from ..history import HistoryStore
from .celery_tasks import REDUCE_TASK
from .claims import claim_key, done_key

log = logging.getLogger("cmq.rescue")


def stalled_reduces(store: HistoryStore, grace: float, now: float | None = None) -> list[Any]:
    """Queued reduces whose members have all ended more than ``grace`` seconds ago:
    (reduce record, member records in order)."""
    now = time.time() if now is None else now
    found = []
    for rec in store.jobs(state=JobStatus.QUEUED):
        if rec.spec.kind != "reduce" or now - (rec.spec.submitted or now) < grace:
            continue
        members = [r for r in store.batch(rec.spec.batch) if r.id != rec.id and r.spec.kind != "reduce"]
        if len(members) != int(rec.spec.params.get("members", -1)):
            continue
        if all(m.state.final and now - (m.ended or now) >= grace for m in members):
            found.append((rec, members))
    return found


def rescue(store: HistoryStore, client: Any, app: Any, grace: float) -> list[str]:
    """Send the stalled reduces again (see the module); returns their ids."""
    import json

    from ..submit.publish import missing

    sent = []
    for rec, members in stalled_reduces(store, grace):
        if client.exists(claim_key(rec.id), done_key(rec.id)) or not missing(app, [rec.spec]):
            continue
        outcomes = []
        for m in members:
            raw = client.get(done_key(m.id))
            outcomes.append(json.loads(raw) if raw and raw not in (b"1", "1") else None)
        app.tasks[REDUCE_TASK].apply_async(args=[outcomes], kwargs={"spec": rec.spec.to_dict()}, task_id=rec.id,
                                           queue=rec.spec.queue, routing_key=rec.spec.queue)
        sent.append(rec.id)
        log.warning("reduce %s: every member ended but it was never sent (the broker went away); sent now", rec.id)
    return sent


#: Seconds before a restart of Redis within which ended jobs get their done markers back.
END_WINDOW = 600.0


def outcome_of_record(rec: Any) -> dict[str, Any]:
    """What a reduce needs of a job that ended, from its history record (as
    :func:`cmqueue.queue.claims.outcome_of` gives it from the event)."""
    res = rec.result
    return {"job": rec.id, "state": rec.state.value, "machine": rec.machine, "exit_code": rec.exit_code,
            "stdout": res.stdout if res else "", "stdout_truncated": bool(res and res.stdout_truncated),
            "reason": rec.reason, "started": rec.started, "ended": rec.ended}


def restore_ends(store: HistoryStore, client: Any, since: float, done_ttl: int = defaults.DONE_TTL) -> list[str]:
    """Put back the done markers the broker lost of jobs that ended after ``since`` (see
    the module); returns their ids."""
    import json

    recent = [r for state in JobStatus if state.final for r in store.jobs(state=state) if (r.ended or 0) >= since]
    mapped = {r.spec.batch for r in [*recent, *store.jobs(state=JobStatus.QUEUED), *store.jobs(state=JobStatus.RUNNING)]
              if r.spec.kind == "reduce"}
    ended = [r for r in recent if r.spec.kind != "reduce"]
    if not ended:
        return []
    pipe = client.pipeline(transaction=False)
    for rec in ended:
        pipe.exists(done_key(rec.id))
    have = pipe.execute()
    lost = [r for r, n in zip(ended, have, strict=True) if not n]
    if lost:
        pipe = client.pipeline(transaction=False)
        for rec in lost:
            member = rec.spec.batch in mapped or "workflow" in rec.spec.params or bool(rec.spec.params.get("member"))
            value = json.dumps(outcome_of_record(rec), separators=(",", ":")) if member else "1"
            pipe.set(done_key(rec.id), value, ex=int(done_ttl), nx=True)
        pipe.execute()
        log.warning("the broker lost the end of %d job(s) (a failover to a replica that lacked the last "
                    "writes?): their done markers are back, so they do not run again: %s", len(lost),
                    ", ".join(r.id for r in lost[:20]))
    return [r.id for r in lost]


def resend_lost(store: HistoryStore, client: Any, app: Any, before: float) -> list[str]:
    """Send again the jobs queued before ``before`` whose message the broker lost. A lost
    member of a map goes without its chord (lost with the message): it is marked so that
    its worker keeps its outcome, which the rescued reduce receives."""
    from ..submit.publish import missing, publish_chunk

    records = store.jobs(state=JobStatus.QUEUED)
    mapped = {r.spec.batch for r in records if r.spec.kind == "reduce"}
    queued = [r.spec for r in records if r.spec.kind != "reduce" and (r.spec.submitted or 0) < before]
    if not queued:
        return []
    lost = missing(app, queued)
    for spec in lost:
        if spec.batch in mapped:        # a member of a map: its outcome must be kept for the reduce
            spec.params["member"] = True
    if lost:
        publish_chunk(app, lost, {}, {s.id: i for i, s in enumerate(lost)})
        log.warning("sent again %d queued job(s) whose message the broker lost: %s", len(lost),
                    ", ".join(s.id for s in lost[:20]))
    return [s.id for s in lost]


class Rescuer:
    """One rescue pass after another (see the module): keeps the Redis run id it saw."""

    def __init__(self, store: HistoryStore, client: Any, app: Any, grace: float) -> None:
        self.store, self.client, self.app, self.grace = store, client, app, grace
        self.run_id: str | None = None
        self.check_at: float | None = None
        self.restarted = 0.0

    def step(self, now: float | None = None) -> None:
        """One pass: note a restart of Redis, resend what it lost once ``grace`` passed,
        and send stalled reduces."""
        now = time.time() if now is None else now
        run_id = self.client.info("server").get("run_id")
        if run_id != self.run_id:
            self.run_id, self.restarted, self.check_at = run_id, now, now + self.grace
        if self.check_at is not None and now >= self.check_at:
            restore_ends(self.store, self.client, self.restarted - END_WINDOW)
            resend_lost(self.store, self.client, self.app, self.restarted)
            self.check_at = None
        rescue(self.store, self.client, self.app, self.grace)


def rescue_forever(settings: Any, interval: float = defaults.RESCUE_INTERVAL, grace: float = defaults.RESCUE_GRACE,
                   on_error: Any = None) -> threading.Thread:
    """Rescue every ``interval`` seconds in a daemon thread (the recorder's), with a
    history store and a publishing app of its own."""
    def make_step() -> Any:
        from ..history import open_store
        from .broker import connect
        from .celery_app import create_app

        return Rescuer(open_store(settings.history), connect(settings.require_broker(), socket_timeout=10),
                       create_app(settings), grace).step

    return every(interval, make_step, "cmq-rescue", on_error)
