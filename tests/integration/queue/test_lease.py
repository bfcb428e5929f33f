"""The worker lease against a real Redis: one live worker per machine."""

from __future__ import annotations

import subprocess
import time

import pytest
import redis

from cmqueue.core.errors import ServiceError
from cmqueue.queue.lease import Holder, Lease, holder, lease_key, worker_lease


@pytest.fixture(scope="module")
def client(redis_server):
    return redis.Redis.from_url(redis_server.url)


def lease(client, machine):
    return Lease(client, worker_lease(machine), what=f"worker {machine}")


def test_a_second_worker_of_a_live_one_is_refused_naming_it(client):
    first = lease(client, "m1")
    first.take()
    with pytest.raises(ServiceError, match=r"worker m1: another one runs \(pid \d+ on "):
        lease(client, "m1").take(wait=0)
    assert holder(client, worker_lease("m1")) == Holder.parse(first.me)
    first.release()
    assert holder(client, worker_lease("m1")) is None


def test_the_lease_of_a_dead_worker_here_is_taken_over_at_once(client):
    gone = subprocess.Popen(["true"])
    gone.wait()
    client.set(lease_key(worker_lease("m2")), Holder(Holder.me().host, gone.pid, time.time() - 100).dump(), ex=60)
    mine = lease(client, "m2")
    mine.take(wait=0)                   # not waited out: a dead holder on this host is replaced
    assert holder(client, worker_lease("m2")) == Holder.parse(mine.me)
    assert mine.keep()
    mine.release()


def test_a_lease_held_from_another_host_is_waited_for_until_it_expires(client):
    key = lease_key(worker_lease("m3"))
    client.set(key, Holder("elsewhere.example", 4242, 1.0).dump(), ex=2)
    with pytest.raises(ServiceError, match="pid 4242 on elsewhere.example"):
        lease(client, "m3").take(wait=0.5)
    mine = lease(client, "m3")
    mine.take(wait=10)                                   # the holder stopped renewing it
    assert holder(client, worker_lease("m3")) == Holder.parse(mine.me)
    client.set(key, Holder("elsewhere.example", 4242, 1.0).dump(), ex=60)
    assert not mine.keep()                               # no longer ours: keep says so


def test_a_lease_that_expired_while_its_holder_was_stopped_is_taken_again_only_when_free(client):
    mine = lease(client, "m4")
    mine.take()
    client.delete(lease_key(worker_lease("m4")))         # expired: the holder could not renew it
    assert not mine.keep() and mine.retake() and mine.keep()
    client.set(lease_key(worker_lease("m4")), Holder("elsewhere.example", 4242, 1.0).dump(), ex=60)
    assert not mine.retake()                             # another worker took it: not taken from it
    assert holder(client, worker_lease("m4")) == Holder("elsewhere.example", 4242, 1.0)
