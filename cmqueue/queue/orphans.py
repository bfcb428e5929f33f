"""Messages held by a worker that died go back to their queue in seconds.

The Redis transport keeps every message a worker has taken but not acknowledged in its
``unacked`` hash, and hands it out again only after the visibility timeout (5 minutes by
default). A worker notes here, for each message it takes, who holds it: its machine, its
lease (which names its process) and its guard token. The recorder sweeps the notes every
few seconds (and a worker once when it starts): a message whose holder is dead goes back
to the front of its queue at once, unless its job is still claimed by that holder — a job
that had started waits until its claim expires (``claim_ttl``), so that it never runs
twice at the same time; it is then reported as a second run (``reran_after``).

A holder is gone when its process is dead (known on its own host, which is where `cmq up`
runs workers), or when its machine's lease is no longer its own: it could not renew it
(it is stopped, or cut off from the broker) or a new worker took it. A hung worker that
comes back takes its lease again (or shuts down when another worker took it), and its
runs that were meanwhile started again elsewhere are reported as having run twice.

A message that no worker noted within ``orphan_grace`` seconds of taking it (the broker
went away just then, and the worker may have dropped it) goes back too; if a worker does
run it, the job's claim or done marker holds the second copy back.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..core import defaults
from ..core.periodic import every
from .claims import claim_key
from .lease import Holder, lease_key, worker_lease
from .receipts import HOLDERS, UNACKED, UNACKED_INDEX

log = logging.getLogger("cmq.orphans")



@dataclass(frozen=True)
class Held:
    """Who holds a message: the job, the machine whose worker took it, that worker's
    lease value and its guard token (the value of the job's claim while it runs)."""

    job: str
    machine: str
    lease: str
    claim: str

    def dump(self) -> str:
        """The stored JSON."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, raw: Any) -> Held | None:
        """From the stored JSON; None when unreadable."""
        try:
            return cls(**json.loads(raw))
        except (TypeError, ValueError):
            return None


def forget(client: Any, tag: str) -> None:
    """The message is done with (acknowledged or about to be)."""
    client.hdel(HOLDERS, tag)


def holder_gone(client: Any, held: Held) -> bool:
    """Whether the worker that took a message is dead or hung (see the module)."""
    who = Holder.parse(held.lease)
    if who is not None and who.alive() is False:
        return True
    current = client.get(lease_key(worker_lease(held.machine)))
    return (current.decode() if isinstance(current, bytes) else current) != held.lease


def _job_of(payload: Any) -> str:
    """The job id (Celery task id) of an ``unacked`` entry."""
    try:
        message = json.loads(payload)[0]
        return str(message["headers"]["id"])
    except (TypeError, ValueError, KeyError, IndexError):
        return "?"


def mine(client: Any, claim: str) -> list[tuple[str, Held]]:
    """The notes of the worker whose guard token is ``claim``: (delivery tag, note)."""
    found = []
    for tag, raw in client.hscan_iter(HOLDERS, count=500):
        held = Held.parse(raw)
        if held is not None and held.claim == claim:
            found.append((tag.decode() if isinstance(tag, bytes) else tag, held))
    return found


class Restorer:
    """Puts the messages of dead workers back on their queues (see the module)."""

    def __init__(self, client: Any, connection: Any, grace: float = defaults.ORPHAN_GRACE) -> None:
        """``client``: redis-py client of the broker; ``connection``: a kombu Connection
        to the same broker (its channel knows how to put a message back); ``grace``:
        seconds after which a message no worker noted counts as dropped."""
        self.client = client
        self.connection = connection
        self.grace = grace

    def sweep(self) -> list[str]:
        """One pass over the notes; returns the jobs whose messages were put back."""
        restored: list[str] = []
        cursor = 0
        while True:
            cursor, batch = self.client.hscan(HOLDERS, cursor, count=500)
            tags = [t.decode() if isinstance(t, bytes) else t for t in batch]
            pipe = self.client.pipeline(transaction=False)
            for tag in tags:
                pipe.hexists(UNACKED, tag)
            for tag, raw, pending in zip(tags, batch.values(), pipe.execute(), strict=True):
                held = Held.parse(raw)
                if not pending:
                    forget(self.client, tag)          # acknowledged, or put back by someone else
                elif self._restore_if_orphaned(tag, held):
                    restored.append(held.job)
            if not cursor:
                break
        return restored + self._restore_unnoted()

    def _restore_unnoted(self) -> list[str]:
        """Messages handed out ``grace`` seconds ago or more that no worker noted: the
        note failed (the broker went away just then), so whoever took the message may have
        dropped it. Put back, they run once: a copy whose job runs or ran is held back by
        the job's claim or done marker."""
        ceiling = time.time() - self.grace
        tags = [t.decode() if isinstance(t, bytes) else t
                for t in self.client.zrangebyscore(UNACKED_INDEX, 0, ceiling, start=0, num=1000)]
        if not tags:
            return []
        pipe = self.client.pipeline(transaction=False)
        for tag in tags:
            pipe.hexists(HOLDERS, tag)
            pipe.hget(UNACKED, tag)
        answers = pipe.execute()
        restored = []
        for tag, noted, payload in zip(tags, answers[0::2], answers[1::2], strict=True):
            if noted or not payload:
                continue
            self.connection.default_channel.qos.restore_by_tag(tag, leftmost=True)
            job = _job_of(payload)
            restored.append(job)
            log.warning("job %s: its message was handed out %ds ago and no worker holds it; back on its queue",
                        job, self.grace)
        return restored

    def restore_dropped(self, claim: str, running: set[str]) -> list[str]:
        """After its connection to the broker was lost, a worker drops the messages it had
        taken but not started (Celery clears them: their delivery tags belonged to the old
        channel). Put those of the worker with guard token ``claim`` back on their queues:
        every noted one that is neither in ``running`` nor claimed by it."""
        restored = []
        for tag, held in mine(self.client, claim):
            if held.job in running:
                continue
            current = self.client.get(claim_key(held.job))
            if current is not None and (current.decode() if isinstance(current, bytes) else current) == claim:
                continue
            if self.client.hexists(UNACKED, tag):
                self.connection.default_channel.qos.restore_by_tag(tag, leftmost=True)
                restored.append(held.job)
            forget(self.client, tag)
        return restored

    def _restore_if_orphaned(self, tag: str, held: Held | None) -> bool:
        if held is None:
            forget(self.client, tag)
            return False
        if not holder_gone(self.client, held):
            return False
        claim = self.client.get(claim_key(held.job))
        if claim is not None and (claim.decode() if isinstance(claim, bytes) else claim) == held.claim:
            return False                              # it may still run on the machine: wait for the claim
        self.connection.default_channel.qos.restore_by_tag(tag, leftmost=True)
        forget(self.client, tag)
        log.warning("job %s: its worker on %s died or stopped answering; its message is back on its queue",
                    held.job, held.machine)
        return True


def sweep_forever(url: str, interval: float = defaults.ORPHAN_SWEEP, on_error: Any = None) -> threading.Thread:
    """Sweep every ``interval`` seconds in a daemon thread (the recorder's); ``on_error``
    is told of errors (the broker may be restarting) and the sweeps go on."""
    def make_step() -> Any:
        from .broker import connect, kombu_connection

        return Restorer(connect(url, socket_timeout=10), kombu_connection(url)).sweep

    return every(interval, make_step, "cmq-orphans", on_error)
