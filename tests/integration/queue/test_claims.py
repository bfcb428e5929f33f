"""The job guard against a real Redis: claims that a stopped worker takes back, and two
runs of one job (one cut off long enough for the other to start) both reported."""

from __future__ import annotations

import pytest
import redis

from cmqueue.core.models import JobStatus
from cmqueue.queue import events
from cmqueue.queue.claims import JobGuard, Verdict, claim_key, done_key, started_key
from cmqueue.queue.lease import Lease, lease_key, worker_lease
from cmqueue.queue.orphans import Held, holder_gone

STREAM = "test:events"


@pytest.fixture(scope="module")
def client(redis_server):
    return redis.Redis.from_url(redis_server.url, decode_responses=True)


def guard(client, token):
    return JobGuard(client, token=token, stream=STREAM, claim_ttl=20)


def finals(client, job):
    return [e for e in events.read_after(client, STREAM, "") if e.job == job and e.state.final]


def test_a_claim_that_expired_while_its_worker_was_stopped_is_taken_back(client):
    w1 = guard(client, "w1")
    assert w1.begin("j1", mark="m1").verdict == Verdict.RUN
    client.delete(claim_key("j1"))                       # expired: w1 could not renew it
    assert w1.heartbeat(["j1"]) == [] and client.get(claim_key("j1")) == "w1"
    assert 0 < client.ttl(claim_key("j1")) <= 20
    assert guard(client, "w2").begin("j1", mark="m2").verdict == Verdict.BUSY


def test_a_claim_is_not_taken_back_for_a_job_done_meanwhile(client):
    w1 = guard(client, "w1")
    w1.begin("j2", mark="m1")
    client.delete(claim_key("j2"))
    client.set(done_key("j2"), "1")
    assert w1.heartbeat(["j2"]) == [] and client.get(claim_key("j2")) is None


def test_two_runs_of_a_job_end_both_reported_and_the_other_keeps_its_claim(client):
    w1, w2 = guard(client, "w1"), guard(client, "w2")
    w1.begin("j3", mark="m1")
    client.delete(claim_key("j3"))                       # w1 stopped; the job starts again on m2
    claim = w2.begin("j3", mark="m2")
    assert claim.verdict == Verdict.RUN and claim.earlier == "m1"
    assert w1.heartbeat(["j3"]) == ["j3"]                # w1 is back: the job runs twice
    w1.finish("j3", events.make("j3", JobStatus.SUCCEEDED, "m1", 1, {"exit_code": 0}))
    (first,) = finals(client, "j3")
    assert first.data["data"]["reran_after"] == "m2" and first.data["reason"].startswith("ran twice")
    assert client.get(claim_key("j3")) == "w2" and client.get(started_key("j3")) == "m2"
    w2.finish("j3", events.make("j3", JobStatus.SUCCEEDED, "m2", 1, {"exit_code": 0}))
    assert client.get(claim_key("j3")) is None and client.get(started_key("j3")) is None


def test_a_release_leaves_another_runs_claim(client):
    w1, w2 = guard(client, "w1"), guard(client, "w2")
    w1.begin("j4", mark="m1")
    client.delete(claim_key("j4"))
    w2.begin("j4", mark="m2")
    w1.release("j4", events.make("j4", JobStatus.RETRYING, "m1", 1, {"reason": "attempt 1 failed"}))
    assert client.get(claim_key("j4")) == "w2" and client.get(started_key("j4")) == "m2"
    w2.release("j4", events.make("j4", JobStatus.RETRYING, "m2", 1, {"reason": "attempt 1 failed"}))
    assert client.get(claim_key("j4")) is None and client.get(started_key("j4")) is None


def test_a_live_worker_whose_lease_expired_counts_as_gone_until_it_takes_it_again(client):
    lease = Lease(client, worker_lease("m5"), what="worker m5")
    lease.take()
    held = Held(job="j5", machine="m5", lease=lease.me, claim="w1")
    assert not holder_gone(client, held)                 # this process: alive, and its lease is its own
    client.delete(lease_key(worker_lease("m5")))         # stopped (SIGSTOP) past the lease's TTL
    assert holder_gone(client, held)
    assert lease.retake() and not holder_gone(client, held)
