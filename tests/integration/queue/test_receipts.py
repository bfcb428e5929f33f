"""Taking and letting go of messages against a real Redis: one write each, the holder's
note with the message, and a job's final write that acknowledges its message."""

from __future__ import annotations

import pytest
import redis

from cmqueue.core.models import JobStatus
from cmqueue.queue import events
from cmqueue.queue.claims import JobGuard, Verdict, done_key
from cmqueue.queue.orphans import Held
from cmqueue.queue.receipts import HOLDERS, UNACKED, UNACKED_INDEX, Receipts

STREAM = "test:receipts:events"


@pytest.fixture(scope="module")
def client(redis_server):
    return redis.Redis.from_url(redis_server.url, decode_responses=True)


def held(job: str) -> str:
    return Held(job=job, machine="m1", lease="lease", claim="token").dump()


def commands(client) -> int:
    return int(client.info("stats")["total_commands_processed"])


def test_a_taken_message_is_recorded_with_its_holder_and_let_go_with_it(client):
    r = Receipts(client)
    r.take("tag-1", 1000.5, '["raw", "", "q"]', held("j1"))
    assert client.hget(UNACKED, "tag-1") == '["raw", "", "q"]'
    assert client.zscore(UNACKED_INDEX, "tag-1") == 1000.5
    assert Held.parse(client.hget(HOLDERS, "tag-1")).job == "j1"
    r.let_go("tag-1")
    assert client.hget(UNACKED, "tag-1") is None and client.zscore(UNACKED_INDEX, "tag-1") is None
    assert client.hget(HOLDERS, "tag-1") is None


def test_a_job_s_final_write_lets_its_message_go_and_the_acknowledgement_writes_nothing(client):
    r = Receipts(client)
    guard = JobGuard(client, token="token", stream=STREAM)
    r.take("tag-2", 1000.0, '["raw", "", "q"]', held("j2"))
    assert guard.begin("j2", mark="m1").verdict == Verdict.RUN
    guard.finish("j2", events.make("j2", JobStatus.SUCCEEDED, "m1"), let_go="tag-2")
    r.gone("tag-2")
    assert client.exists(done_key("j2"))
    assert client.hget(UNACKED, "tag-2") is None and client.zscore(UNACKED_INDEX, "tag-2") is None
    assert client.hget(HOLDERS, "tag-2") is None
    before = commands(client)
    r.let_go("tag-2")                                   # Celery's late acknowledgement
    assert commands(client) - before == 1               # only INFO itself ran
    r.take("tag-2b", 1000.0, '["raw", "", "q"]', held("j2b"))
    r.let_go("tag-2b")                                  # not gone: a real write
    assert client.hget(UNACKED, "tag-2b") is None


def test_a_final_write_without_a_tag_leaves_the_message_to_its_acknowledgement(client):
    # A map member: acknowledged only after the chord counted it.
    r = Receipts(client)
    guard = JobGuard(client, token="token", stream=STREAM)
    r.take("tag-3", 1000.0, '["raw", "", "q"]', held("j3"))
    assert guard.begin("j3", mark="m1").verdict == Verdict.RUN
    guard.finish("j3", events.make("j3", JobStatus.SUCCEEDED, "m1"), keep=True)
    assert client.hget(UNACKED, "tag-3") is not None and client.hget(HOLDERS, "tag-3") is not None
    r.let_go("tag-3")
    assert client.hget(UNACKED, "tag-3") is None and client.hget(HOLDERS, "tag-3") is None
