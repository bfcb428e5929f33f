"""A map whose reduce was never sent gets it sent.

The reduce of a map is a Celery chord callback: the worker that ends the map's last member
counts it in the chord and publishes the callback. If the broker goes away at that moment,
Celery gives up on the chord, and the reduce would stay queued forever although every
member has ended. The recorder looks for such maps every ``rescue_interval`` seconds: a
reduce still queued, whose members have all ended more than ``grace`` seconds ago, that
no worker has claimed or finished and whose message is nowhere on the broker, is sent
again with the members' outcomes (kept with their done markers). The reduce's own guard
makes it run once whatever happens.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from . import defaults
from .guard import claim_key, done_key
from .history import HistoryStore
from .models import JobStatus
from .tasks import REDUCE_TASK

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

    from .submit import missing

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


def rescue_forever(settings: Any, interval: float = defaults.RESCUE_INTERVAL, grace: float = defaults.RESCUE_GRACE,
                   on_error: Any = None) -> threading.Thread:
    """Rescue stalled reduces every ``interval`` seconds in a daemon thread (the
    recorder's), with a history store and a publishing app of its own."""
    def run() -> None:
        import redis

        from .app import create_app
        from .history import open_store

        store = open_store(settings.history)
        client = redis.Redis.from_url(settings.require_broker(), socket_timeout=10)
        app = create_app(settings)
        while True:
            time.sleep(interval)
            try:
                rescue(store, client, app, grace)
            except Exception as e:  # noqa: BLE001 - go on: the broker may be restarting
                if on_error:
                    on_error(e)

    thread = threading.Thread(target=run, name="cmq-rescue", daemon=True)
    thread.start()
    return thread
