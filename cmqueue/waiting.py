"""Follow jobs until they end, keeping the history store in step with the event stream."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .history import HistoryStore
from .history.sync import sync
from .models import JobRecord

#: Least seconds between two reads of the store while many jobs are pending (a throttle
#: that keeps a waiting client from competing with the workers for CPU).
MIN_INTERVAL = 0.05
#: Seconds between two ``on_tick`` calls while waiting.
TICK = 0.25


class Waiter:
    """Waits for jobs by blocking on the event stream, not by polling."""

    def __init__(self, store: HistoryStore, client: Any, stream: str) -> None:
        self.store = store
        self.client = client
        self.stream = stream

    def refresh(self) -> list:
        """Apply new events to the store; returns them."""
        return sync(self.store, self.client, self.stream)

    def tip(self) -> str:
        """Id of the newest stream entry ('0-0' when empty): block on what comes after it."""
        newest = self.client.xrevrange(self.stream, count=1)
        return newest[0][0] if newest else "0-0"

    def block(self, after: str, ms: int) -> None:
        """Return as soon as an entry newer than ``after`` exists, or after ``ms``."""
        self.client.xread({self.stream: after}, block=ms, count=1)

    def follow(self) -> None:
        """Keep the store in step with the stream, forever (the recorder)."""
        while True:
            after = self.tip()
            self.refresh()
            self.block(after, 5000)

    def wait(self, ids: list[str], timeout: float | None = None,
             on_update: Callable[[list[JobRecord]], None] | None = None,
             on_tick: Callable[[], None] | None = None) -> list[JobRecord]:
        """Block until every job in ``ids`` is final (or ``timeout`` passes); returns the
        records as they are then. ``on_update`` sees all records after every change;
        ``on_tick`` is called at least every TICK seconds (for views of live counters)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        records: dict[str, JobRecord] = {}
        pending = list(ids)
        while True:
            # Note the stream's tip before syncing, so an event added meanwhile wakes us.
            last_seen = self.tip()
            self.refresh()
            changed = False
            for rec in self.store.get_many(pending):
                old = records.get(rec.id)
                if old is None or old.state != rec.state or old.updated != rec.updated:
                    changed = True
                records[rec.id] = rec
            pending = [i for i in pending if not (i in records and records[i].state.final)]
            if changed and on_update:
                on_update([records[i] for i in ids if i in records])
            if not pending:
                return [records[i] for i in ids if i in records]
            block = 1000
            if on_tick:
                on_tick()
                block = int(TICK * 1000)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return [records[i] for i in ids if i in records]
                block = max(1, min(block, int(left * 1000)))
            t0 = time.monotonic()
            self.block(last_seen, block)
            if len(pending) > 50:
                time.sleep(max(0.0, MIN_INTERVAL - (time.monotonic() - t0)))
