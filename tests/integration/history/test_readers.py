"""The event stream shared by several history stores (a private redis-server, SQLite
stores): it is trimmed only up to what every live store applied."""

from __future__ import annotations

import pytest
import redis

from cmqueue.core.models import JobStatus
from cmqueue.history import readers
from cmqueue.history.sqlite import SqliteStore
from cmqueue.history.sync import sync
from cmqueue.queue import events

STREAM = "cmq:test-events"


@pytest.fixture
def client(redis_server):
    c = redis.Redis.from_url(redis_server.url)
    c.config_set("stream-node-max-entries", 1)       # so that a trim '~' drops every entry it may
    c.delete(STREAM, readers.readers_key(STREAM))
    yield c
    c.close()


def publish(client, n: int) -> None:
    for i in range(n):
        events.publish(client, STREAM, events.make(f"job{i}", JobStatus.SUCCEEDED, machine="m1"))


def test_a_store_that_marked_its_place_keeps_the_events_it_has_not_read(client, tmp_path):
    recorder, laptop = SqliteStore(str(tmp_path / "recorder.db")), SqliteStore(str(tmp_path / "laptop.db"))
    readers.mark(client, STREAM, laptop.identity, laptop.cursor())    # as a command does before it sends
    publish(client, 5)
    assert len(sync(recorder, client, STREAM)) == 5                   # the recorder applies and trims...
    assert client.xlen(STREAM) == 5                                   # ...nothing the laptop still needs
    assert {e.job for e in sync(laptop, client, STREAM)} == {f"job{i}" for i in range(5)}
    publish(client, 2)
    sync(recorder, client, STREAM)
    assert client.xlen(STREAM) <= 3                                   # both applied the first 5
    assert len(sync(laptop, client, STREAM)) == 2


def test_a_store_alone_trims_what_it_applied(client, tmp_path):
    store = SqliteStore(str(tmp_path / "only.db"))
    publish(client, 4)
    sync(store, client, STREAM)
    assert client.xlen(STREAM) <= 1                                   # (MINID keeps the cursor's entry)


def test_a_store_silent_for_the_ttl_no_longer_holds_the_stream(client, tmp_path):
    recorder = SqliteStore(str(tmp_path / "recorder.db"))
    now = int(client.time()[0])
    client.hset(readers.readers_key(STREAM), "gone", f"0-0 {now - readers.READER_TTL - 1}")
    client.hset(readers.readers_key(STREAM), "live", f"0-0 {now}")
    publish(client, 3)
    sync(recorder, client, STREAM)
    assert client.xlen(STREAM) == 3                                   # "live" has read nothing yet
    assert set(client.hkeys(readers.readers_key(STREAM))) == {b"live", recorder.identity.encode()}
    client.hset(readers.readers_key(STREAM), "live", f"0-0 {now - readers.READER_TTL - 1}")
    publish(client, 1)
    sync(recorder, client, STREAM)
    assert client.xlen(STREAM) <= 1


def test_the_same_store_has_the_same_identity_in_every_process(tmp_path):
    a, b = SqliteStore(str(tmp_path / "h.db")), SqliteStore(str(tmp_path / "." / "h.db"))
    assert a.identity == b.identity != SqliteStore(str(tmp_path / "other.db")).identity
