"""The rows of `cmq schedule list`: each schedule with its next due time and the state of
what its last firing made (read from the history)."""

from __future__ import annotations

from typing import Any

from ..core.errors import CmqError
from .cron import CronError, parse
from .model import Schedule

#: The columns of the table, in order (what a firing does last: it is not padded).
COLUMNS = ("name", "cron", "next", "last", "id", "state", "paused", "what")


def batch_state(states: list[str]) -> str:
    """One state for a batch: queued or running while a job has not ended, else
    succeeded when every job did, else failed."""
    if not states:
        return "not sent"
    final = ("succeeded", "failed", "cancelled", "lost")
    if not all(s in final for s in states):
        return "queued" if all(s == "queued" for s in states) else "running"
    return "succeeded" if all(s == "succeeded" for s in states) else "failed"


def last_state(cluster: Any, s: Schedule) -> str:
    """The state of what ``s`` fired last ('' when it never fired; ``failed`` with a
    reason in ``last_error``; ``not sent`` when it was claimed and never sent)."""
    if s.last_error:
        return "failed"
    if not s.last_id:
        return ""
    if s.kind == "workflow":
        wfs = cluster.workflows
        try:
            return wfs.state(wfs.resolve(s.last_id))
        except CmqError:
            return "not sent"
    return batch_state([r.state.value for r in cluster.store.batch(s.last_id)])


def next_due(s: Schedule, tz: str, now: float) -> float | None:
    """When ``s`` fires next: a due time already passed (the recorder is about to fire it,
    or is not running), else the next one; None when paused or its cron is not valid."""
    if s.paused:
        return None
    try:
        cron = parse(s.cron, tz)
    except CronError:
        return None
    return cron.latest_due(s.checked, now) or cron.next_after(max(now, s.checked))


def rows(cluster: Any, tz: str, now: float) -> list[dict[str, Any]]:
    """One dict per schedule, by name (what ``--json`` prints)."""
    cluster.refresh()
    out = []
    for doc in cluster.store.schedules():
        s = Schedule.from_dict(doc)
        out.append({"name": s.name, "cron": s.cron, "timezone": tz, "kind": s.kind, "what": s.what,
                    "catchup": s.catchup, "paused": s.paused, "next": next_due(s, tz, now),
                    "last_due": s.last_due, "last_fired": s.last_fired, "last_id": s.last_id,
                    "last_state": last_state(cluster, s), "last_error": s.last_error, "fired": s.fired,
                    "skipped": s.skipped, "created": s.created,
                    "command": s.command, "on": s.on, "label": s.label, "all": s.all,
                    "expr": s.expr, "tasks": s.tasks})
    return out
