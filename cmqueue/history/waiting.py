"""Follow jobs until they end, keeping the history store in step with the event stream."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..core.models import JobRecord, stream_id_key
from ..queue import events
from . import HistoryStore, readers
from .sync import sync

#: Least seconds between two reads of the store while many jobs are pending (a throttle
#: that keeps a waiting client from competing with the workers for CPU).
MIN_INTERVAL = 0.05
#: Seconds between two ``on_tick`` calls while waiting.
TICK = 0.25
#: Most stream entries one blocking read brings.
READ_BATCH = 2000
#: Least seconds between two trims of the stream by the recorder.
TRIM_EVERY = 1.0
#: Seconds a wait goes on reading a broker that went away (a Sentinel failover, a
#: restart) before the error is raised.
AWAY_LIMIT = 60.0
#: Seconds between two marks of how far a long wait has read (well within READER_TTL).
MARK_EVERY = 60.0


def _broker_away(error: Exception) -> bool:
    """Whether ``error`` says the broker is away (redis-py is imported only then: listings
    that read the history never load it)."""
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(error, (RedisConnectionError, RedisTimeoutError))


class Waiter:
    """Waits for jobs by blocking on the event stream, not by polling."""

    def __init__(self, store: HistoryStore, client: Any, stream: str) -> None:
        self.store = store
        self.client = client
        self.stream = stream
        self._marked = time.monotonic()
        self._away: float | None = None         # since when reads fail (the broker is away)

    def refresh(self) -> list:
        """Apply new events to the store; returns them."""
        return sync(self.store, self.client, self.stream)

    def read(self, after: str, ms: int) -> str:
        """Wait up to ``ms`` for entries after stream id ``after`` and apply those that came
        (the store skips what another process applied first); returns the id to read after
        next time. One round trip: the blocking read returns the entries themselves."""
        try:
            found = self.client.xread({self.stream: after or "0-0"}, block=ms, count=READ_BATCH)
            self._away = None
        except Exception as e:
            if not _broker_away(e):
                raise
            # The broker went away (a failover, a restart): read again once it is back.
            self._away = self._away or time.monotonic()
            if time.monotonic() - self._away > AWAY_LIMIT:
                raise
            time.sleep(0.5)
            return after
        if not found:
            return after
        evs = [events.decode(eid, fields) for eid, fields in found[0][1]]
        self.store.apply(evs, cursor=evs[-1].id)
        now = time.monotonic()
        if now - self._marked > MARK_EVERY:          # still reading: keep holding the stream
            readers.mark(self.client, self.stream, self.store.identity, evs[-1].id)
            self._marked = now
        return evs[-1].id

    def follow(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Keep the store in step with the stream until ``stop()`` (the recorder: forever).

        After catching up, each wake is one blocking read that brings the new entries;
        reads are at least MIN_INTERVAL apart (entries that come meanwhile are applied in
        one transaction), and the stream is trimmed at most every TRIM_EVERY seconds."""
        self.refresh()
        after = self.store.cursor() or "0-0"
        trimmed = time.monotonic()
        while not stop():
            t0 = time.monotonic()
            after = self.read(after, 5000)
            if t0 - trimmed >= TRIM_EVERY:
                self.trim()
                trimmed = t0
            time.sleep(max(0.0, MIN_INTERVAL - (time.monotonic() - t0)))

    def wait(self, ids: list[str], timeout: float | None = None,
             on_update: Callable[[list[JobRecord]], None] | None = None,
             on_tick: Callable[[], None] | None = None) -> list[JobRecord]:
        """Block until every job in ``ids`` is final (or ``timeout`` passes); returns the
        records as they are then. ``on_update`` sees all records after every change;
        ``on_tick`` is called at least every TICK seconds (for views of live counters).

        Catches up once, then each wake is one blocking read that brings the new entries.
        The store's cursor is read before its records are: an entry another process (the
        recorder) applies after that is still on the stream (it trims only up to what it
        applied, keeping that entry), so the next read returns at once."""
        deadline = None if timeout is None else time.monotonic() + timeout
        records: dict[str, JobRecord] = {}
        pending = list(ids)
        self.refresh()
        after = self.store.cursor()
        while True:
            after = max(after, self.store.cursor(), key=stream_id_key)
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
                return self._done(records, ids)
            block = 1000
            if on_tick:
                on_tick()
                block = int(TICK * 1000)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return self._done(records, ids)
                block = max(1, min(block, int(left * 1000)))
            t0 = time.monotonic()
            after = self.read(after, block)
            if len(pending) > 50:
                time.sleep(max(0.0, MIN_INTERVAL - (time.monotonic() - t0)))

    def _done(self, records: dict[str, JobRecord], ids: list[str]) -> list[JobRecord]:
        self.trim()
        return [records[i] for i in ids if i in records]

    def trim(self) -> None:
        """Drop from the stream the entries every store reading it has applied."""
        cursor = self.store.cursor()
        if cursor:
            readers.trim(self.client, self.stream, self.store.identity, cursor)
