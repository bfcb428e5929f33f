"""What keeps a broker failover from losing work, on real redis-server processes: the done
markers a new primary lacks are put back from the history, and WAIT holds a writer until
a replica has its writes (and never when no replica is connected)."""

from __future__ import annotations

import json

import pytest
import redis

from cmqueue.core.models import Event, JobRecord, JobSpec, JobStatus, new_id
from cmqueue.history import open_store
from cmqueue.queue.broker import MARK, ReplicaWait, connect, primary
from cmqueue.queue.claims import done_key
from cmqueue.queue.rescue import restore_ends
from tests.conftest import need_services
from tests.support.redis_group import RedisGroup

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    need_services()
    g = RedisGroup(tmp_path_factory.mktemp("group"))
    g.start()
    yield g
    g.stop()


def _ended(store, batch, at, kind="run", params=None):
    spec = JobSpec(id=new_id(), command="echo 1", batch=batch, kind=kind, submitted=at - 5, params=params or {})
    store.add([JobRecord(spec=spec)])
    store.apply([Event(spec.id, JobStatus.SUCCEEDED, at, "m1",
                       data={"job": spec.id, "machine": "m1", "exit_code": 0, "stdout": "7\n",
                             "started": at - 1, "ended": at})])
    return spec


def test_done_markers_a_broker_lost_are_put_back_from_the_history(tmp_path, redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    store = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    plain = _ended(store, "b1", at=1000.0)
    member = _ended(store, "bm", at=1000.0)
    store.add([JobRecord(spec=JobSpec(id=new_id("r"), command="reduce", batch="bm", kind="reduce",
                                      params={"reducer": "sum", "members": 1}))])
    kept = _ended(store, "b2", at=1000.0)
    client.set(done_key(kept.id), "theirs")
    old = _ended(store, "b3", at=100.0)
    assert sorted(restore_ends(store, client, since=500.0)) == sorted([plain.id, member.id])
    assert client.get(done_key(plain.id)) == "1"
    outcome = json.loads(client.get(done_key(member.id)))            # what the reduce needs
    assert outcome["stdout"] == "7\n" and outcome["exit_code"] == 0 and outcome["job"] == member.id
    assert client.get(done_key(kept.id)) == "theirs" and not client.exists(done_key(old.id))
    assert restore_ends(store, client, since=500.0) == []             # once put back, nothing to do


def test_a_write_waits_for_the_replica_and_not_when_none_is_connected(group, redis_server):
    client = connect(group.url, socket_timeout=5)
    assert primary(group.url) == f"127.0.0.1:{group.ports[group.primary()]}"
    client.set("k", "v")
    assert ReplicaWait(client, wanted=1, timeout=5)() == 1
    assert ReplicaWait(client, wanted=0, timeout=5)() == 0            # replica_acks: 0 never waits
    alone = redis.Redis.from_url(redis_server.url)                    # a Redis with no replica
    alone.delete(MARK)
    assert ReplicaWait(alone, wanted=1, timeout=30)() == 0
    assert not alone.exists(MARK)                                     # no WAIT was sent: none is connected
