"""One firing of a schedule, and one look at every schedule at a given time.

A firing first makes what it sends (the batch's job specs through the submit path, or the
workflow's plan), so that its id is known; then it claims the due time in the store
(compare-and-set, see :meth:`cmqueue.history.base.HistoryStore.claim_schedule`) together
with that id; only the caller that won the claim sends. A firing that cannot be made (the
tasks file is gone, a machine left the inventory) is claimed all the same and recorded
as failed with the reason: it is never skipped silently. A firing whose send fails (the
broker is down) keeps its id and gets the reason.

"Now" is always given (``now``), so the due-time logic runs on any clock.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.errors import CmqError
from .cron import CronError, parse
from .model import Schedule, decide


@dataclass(frozen=True)
class Firing:
    """What one firing did: the due time, the id it made (None when it could not make
    one), and why it failed ('' when it did not)."""

    name: str
    due: float
    id: str | None
    error: str = ""


def _prepare(cluster: Any, s: Schedule) -> tuple[str, Callable[[], Any]]:
    """The id of what firing ``s`` sends, and the call that sends it."""
    if s.kind == "workflow":
        if not os.path.isfile(s.tasks):
            raise CmqError(f"tasks file {s.tasks} is gone (removed or moved since the schedule was added)")
        wfs = cluster.workflows
        plan = wfs.plan(s.expr, cluster.tasks(s.tasks), source=s.tasks)
        return plan.id, lambda: wfs.start(plan)
    from ..submit.specs import build_specs, placement

    where = placement(cluster.settings.inventory, on=s.on, label=s.label, everywhere=s.all)
    batch, specs = build_specs(s.command, where, timeout=s.timeout, retries=s.retries, env=dict(s.env))
    return batch, lambda: cluster.send_specs(specs)


def fire(cluster: Any, s: Schedule, due: float, now: float) -> Firing | None:
    """Fire ``s`` for due time ``due`` (at ``now``) through ``cluster`` (an
    :class:`~cmqueue.api.cluster.Cluster`); None when another caller claimed that due time."""
    send: Callable[[], Any] | None = None
    try:
        ident, send = _prepare(cluster, s)
        error = ""
    except CmqError as e:
        ident, error = None, str(e)
    except Exception as e:  # noqa: BLE001 - recorded on the schedule: a firing is never lost silently
        ident, error = None, f"{type(e).__name__}: {e}"
    changes = {"last_due": due, "last_fired": now, "last_id": ident, "last_error": error}
    if not cluster.store.claim_schedule(s.name, due, changes, count="fired"):
        return None
    if send is not None:
        try:
            send()
        except CmqError as e:
            error = f"not sent: {e}"
            cluster.store.update_schedule(s.name, {"last_error": error})
    return Firing(s.name, due, ident, error)


def check(store: Any, now: float, tz: str, late: float,
          cluster: Callable[[], Any]) -> tuple[list[Firing], float]:
    """Look at every schedule of ``store`` at time ``now`` (cron fields read in zone
    ``tz``): fire what is due (``cluster()`` makes the Cluster to fire through, once, when
    something is due), skip what ``catchup: skip`` misses. Returns the firings and the
    next due time (``inf`` when nothing is due ever, all paused)."""
    fired: list[Firing] = []
    wake = math.inf
    made: Any = None
    try:
        for doc in store.schedules():
            s = Schedule.from_dict(doc)
            try:
                cron = parse(s.cron, tz)
            except CronError as e:                  # stored by an older version or by hand
                if s.last_error != str(e):
                    store.update_schedule(s.name, {"last_error": str(e)})
                continue
            d = decide(s, cron, now, late)
            if d.fire is not None:
                if made is None:
                    made = cluster()
                done = fire(made, s, d.fire, now)
                if done is not None:
                    fired.append(done)
            elif d.skip is not None:
                store.claim_schedule(s.name, d.skip, {}, count="skipped")
            wake = min(wake, d.next)
    finally:
        if made is not None:
            made.close()
    return fired, wake
