"""The event stream: workers append job state changes, the history store reads them.

Workers may run on other machines (agents), so they never write the controller's files:
every change travels as an entry of a Redis stream on the broker, which the history
store applies in order and remembers how far it got (see :mod:`cmqueue.history.sync`).
"""

from __future__ import annotations

import json
from typing import Any

from ..core import clock
from ..core.models import Event, JobStatus


def encode(event: Event) -> dict[str, str]:
    """Stream entry fields of ``event``."""
    return {
        "job": event.job, "state": event.state.value, "ts": repr(event.ts),
        "machine": event.machine or "", "attempt": str(event.attempt),
        "data": json.dumps(event.data, separators=(",", ":")),
    }


def decode(entry_id: str | bytes, fields: dict[Any, Any]) -> Event:
    """Event from a stream entry (fields may be bytes)."""
    f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
         for k, v in fields.items()}
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return Event(job=f["job"], state=JobStatus(f["state"]), ts=float(f["ts"]),
                 machine=f.get("machine") or None, attempt=int(f.get("attempt", 1)),
                 data=json.loads(f.get("data") or "{}"), id=eid)


def make(job: str, state: JobStatus, machine: str | None = None, attempt: int = 1,
         data: dict[str, Any] | None = None, **more: Any) -> Event:
    """A new event stamped now; ``data`` and ``more`` form its payload."""
    return Event(job=job, state=state, ts=clock.now(), machine=machine, attempt=attempt,
                 data={**(data or {}), **more})


def publish(client: Any, stream: str, event: Event) -> None:
    """Append ``event`` to ``stream`` (``client`` may be a redis pipeline)."""
    client.xadd(stream, encode(event))


def read_after(client: Any, stream: str, cursor: str, count: int = 1000) -> list[Event]:
    """Up to ``count`` events after stream id ``cursor`` (exclusive), oldest first."""
    start = f"({cursor}" if cursor else "-"
    return [decode(eid, fields) for eid, fields in client.xrange(stream, min=start, count=count)]
