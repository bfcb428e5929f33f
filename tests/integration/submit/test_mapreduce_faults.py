"""A map's reduce is neither lost nor run twice when a worker is killed -9 mid-map or
Redis restarts (AOF) mid-map."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from tests.conftest import make_env, teardown, wait_for, worker_pid

FAST_REDELIVERY = {"visibility_timeout": 4, "restore_interval": 1, "claim_ttl": 3}


@pytest.fixture
def fresh(tmp_path):
    cenv = make_env(tmp_path, machines=2, slots=2, first=81, settings=FAST_REDELIVERY)
    yield cenv
    teardown(cenv)


def _member_runs(cenv, log: str) -> list[str]:
    return [ln for m in ("m1", "m2") if (cenv.workdir(m) / log).exists()
            for ln in (cenv.workdir(m) / log).read_text().splitlines()]


def _check_one_reduce(c, rid: str, members: int, expected: int) -> None:
    res = c.wait([rid], timeout=180)[0]
    assert res.state.value == "succeeded", res.reason
    assert res.result.data["value"] == expected
    assert len(res.result.data["members"]) == members
    finals = [e for e in c.store.events(rid) if e.state.final]
    assert len(finals) == 1, [e.state for e in c.store.events(rid)]


def test_worker_killed_mid_map_loses_no_member_and_reduces_once(fresh):
    log = f"runs-{uuid.uuid4().hex}.log"
    with fresh.cluster_api() as c:
        job = c.mapreduce(f"echo $CMQ_JOB_ID >> {log}; sleep 1; echo {{}}", range(1, 17), reduce="sum")
        wait_for(lambda: len(_member_runs(fresh, log)) >= 3, timeout=60, what="the map to be under way")
        os.kill(worker_pid(fresh, "m1"), signal.SIGKILL)
        up = fresh.run("up")                     # the worker comes back, as after a crash
        assert up.code == 0, up.err
        _check_one_reduce(c, job.id, 16, sum(range(1, 17)))
        members = [r for r in c.store.batch(job.spec.batch) if r.id != job.id]
        assert {r.state.value for r in members} == {"succeeded"}
    runs = _member_runs(fresh, log)
    # Every member ran; one killed mid-run may have run again (at least once), never lost.
    assert set(runs) == {r.id for r in members}


def test_redis_restart_mid_map_reduces_once(fresh):
    log = f"runs-{uuid.uuid4().hex}.log"
    with fresh.cluster_api() as c:
        job = c.mapreduce(f"echo $CMQ_JOB_ID >> {log}; sleep 1; echo {{}}", range(1, 13), reduce="sum")
        wait_for(lambda: len(_member_runs(fresh, log)) >= 3, timeout=60, what="the map to be under way")
        fresh.redis.stop()                       # SIGTERM: Redis writes its AOF and exits
        fresh.redis.start()                      # same port, password and data
        _check_one_reduce(c, job.id, 12, sum(range(1, 13)))
    assert len(set(_member_runs(fresh, log))) == 12


def test_a_member_whose_message_the_broker_lost_is_sent_again_and_reduced(tmp_path):
    # Redis pops a message before the worker has it: a crash in between loses it. The
    # recorder sends such a job again, without its chord (lost with it); the reduce is
    # then sent by the rescue, and must receive that member's outcome too.
    import json

    import redis

    cenv = make_env(tmp_path, machines=2, slots=2, first=83, settings={"rescue_grace": 2, "rescue_interval": 1})
    try:
        assert cenv.run("down", "--grace=2").code == 0                  # no worker takes the messages yet
        r = cenv.run("map", "--reduce=sum", "--no-wait", "--json", "echo {}", ":::", *map(str, range(1, 21)),
                     check=True).json()
        client = redis.Redis.from_url(cenv.redis.url)
        messages = client.lrange("cmq.any", 0, -1)
        victim = next(m for m in messages if json.loads(m)["headers"]["id"] != r["reduce"])
        lost_id = json.loads(victim)["headers"]["id"]
        assert client.lrem("cmq.any", 1, victim) == 1                   # what a crash after the pop does
        client.close()
        assert cenv.run("up").code == 0
        assert cenv.run("wait", "--timeout=120", r["map"], timeout=180).code == 0
        (red,) = cenv.run("status", "--json", r["reduce"], check=True).json()
        assert red["state"] == "succeeded" and red["stdout"] == "210\n", red
        (member,) = cenv.run("status", "--json", lost_id, check=True).json()
        assert member["state"] == "succeeded", member
        assert "sent again 1 queued job(s)" in (cenv.home / "logs" / "recorder.log").read_text()
    finally:
        teardown(cenv)
