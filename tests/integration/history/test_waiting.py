"""Waiting for jobs against a real Redis: woken by the event stream, never by a timer,
also when another process (the recorder) applies and trims the events first."""

from __future__ import annotations

import threading

import pytest
import redis

from cmqueue.core.models import JobRecord, JobSpec, JobStatus
from cmqueue.history import readers, waiting
from cmqueue.history.sqlite import SqliteStore
from cmqueue.history.waiting import Waiter
from cmqueue.queue import events
from tests.support import threads

STREAM = "cmq:test:events"


@pytest.fixture(scope="module")
def client(redis_server):
    return redis.Redis.from_url(redis_server.url)


def queued(store: SqliteStore, job: str) -> None:
    store.add([JobRecord(spec=JobSpec(id=job, command="true"), state=JobStatus.QUEUED)])


def end_later(client, job: str, recorder: Waiter | None, after: threading.Event) -> threads.Helper:
    """Once ``after`` is set, publish the job's end; the recorder (if any) applies and trims it."""

    def run() -> None:
        assert after.wait(60), "the waiter never ticked"
        events.publish(client, STREAM, events.make(job, JobStatus.RUNNING, machine="m1"))
        events.publish(client, STREAM, events.make(job, JobStatus.SUCCEEDED, machine="m1",
                                                   data={"job": job, "machine": "m1", "exit_code": 0}))
        if recorder is not None:
            recorder.refresh()                      # applies both and trims the stream up to them

    return threads.start(run)


@pytest.mark.parametrize("with_recorder", [False, True], ids=["alone", "recorder-first"])
def test_wait_returns_when_the_job_ends_not_when_its_read_times_out(client, tmp_path, with_recorder, monkeypatch):
    # One blocking read lasts longer than the whole wait may: a waiter that missed the
    # entries would sleep through its deadline and return the job unfinished.
    monkeypatch.setattr(waiting, "TICK", 600.0)
    client.delete(STREAM)
    db = tmp_path / "history.db"
    store = SqliteStore(str(db))
    job = f"job-{with_recorder}"
    queued(store, job)
    waiter = Waiter(store, client, STREAM)
    recorder = Waiter(SqliteStore(str(db)), client, STREAM) if with_recorder else None
    ticks = threading.Event()
    thread = end_later(client, job, recorder, ticks)
    # The first tick comes once the waiter has caught up and is about to block.
    records = waiter.wait([job], timeout=30, on_tick=ticks.set)
    thread.result()
    assert [r.state for r in records] == [JobStatus.SUCCEEDED]


def test_wait_applies_the_events_and_trims_what_it_applied(client, tmp_path):
    client.delete(STREAM, readers.readers_key(STREAM))   # the stores of the tests before no longer read it
    store = SqliteStore(str(tmp_path / "history.db"))
    queued(store, "a")
    for i in range(300):                            # older entries: whole stream nodes to trim
        events.publish(client, STREAM, events.make(f"other-{i}", JobStatus.RUNNING, machine="m2"))
    waiter = Waiter(store, client, STREAM)
    go = threading.Event()
    thread = end_later(client, "a", None, go)
    go.set()
    records = waiter.wait(["a"], timeout=30)
    thread.result()
    assert records[0].state == JobStatus.SUCCEEDED and records[0].exit_code == 0
    last = client.xrevrange(STREAM, count=1)[0][0].decode()
    assert store.cursor() == last
    assert client.xlen(STREAM) < 150               # trimmed (by whole nodes of 100 entries) up to what it applied


def test_the_recorder_applies_a_burst_in_few_transactions_and_trims_what_it_applied(client, tmp_path, monkeypatch):
    # The recorder reads what came since its last read in one go: a burst of 200 jobs'
    # ends reaches the store whole, in a few transactions, and the stream is trimmed.
    client.delete(STREAM, readers.readers_key(STREAM))
    monkeypatch.setattr(waiting, "TRIM_EVERY", 0.0)
    db = str(tmp_path / "history.db")
    jobs = [f"burst-{i}" for i in range(200)]
    SqliteStore(db).add([JobRecord(spec=JobSpec(id=j, command="true"), state=JobStatus.QUEUED) for j in jobs])
    applied: list[int] = []
    done = threading.Event()
    following = threading.Event()

    def record() -> None:                           # the store lives in the recorder's thread, as in cmq
        store = SqliteStore(db)
        original = store.apply

        def counting_apply(evs, cursor=None):
            applied.append(len(evs))
            return original(evs, cursor=cursor)

        store.apply = counting_apply

        def all_ended() -> bool:
            following.set()
            if all(r.state == JobStatus.SUCCEEDED for r in store.get_many(jobs)):
                done.set()
            return done.is_set()

        Waiter(store, client, STREAM).follow(stop=all_ended)

    thread = threads.start(record)
    assert following.wait(30), "the recorder did not start"
    pipe = client.pipeline(transaction=False)
    for j in jobs:
        events.publish(pipe, STREAM, events.make(j, JobStatus.SUCCEEDED, machine="m1",
                                                   data={"job": j, "machine": "m1", "exit_code": 0}))
    pipe.execute()
    assert done.wait(30), "the recorder did not apply the burst"
    thread.result()
    assert sum(applied) >= 200 and len(applied) <= 3, applied
    assert client.xlen(STREAM) < 150
