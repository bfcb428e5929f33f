"""Which maps' reduces count as stalled (cmqueue.queue.rescue): a pure function of the history."""

from cmqueue.core.models import Event, JobRecord, JobSpec, JobStatus, new_id
from cmqueue.history import open_store
from cmqueue.queue.rescue import stalled_reduces


def _map(store, n, submitted):
    members = [JobSpec(id=new_id(), command=f"echo {i}", batch="bm", submitted=submitted) for i in range(n)]
    red = JobSpec(id=new_id("r"), command="reduce", batch="bm", kind="reduce", submitted=submitted,
                  params={"reducer": "sum", "members": n})
    store.add(JobRecord(spec=s) for s in [*members, red])
    return members, red


def _end(store, spec, at):
    store.apply([Event(spec.id, JobStatus.SUCCEEDED, at, "m1",
                       data={"job": spec.id, "machine": "m1", "exit_code": 0, "stdout": "1\n",
                             "started": at - 1, "ended": at})])


def test_a_reduce_is_stalled_once_every_member_ended_long_enough_ago(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    members, red = _map(store, 3, submitted=1000.0)
    assert stalled_reduces(store, grace=30, now=2000.0) == []           # members still queued
    for m in members[:2]:
        _end(store, m, 1500.0)
    assert stalled_reduces(store, grace=30, now=2000.0) == []           # one still queued
    _end(store, members[2], 1990.0)
    assert stalled_reduces(store, grace=30, now=2000.0) == []           # the last ended 10 s ago
    ((rec, found),) = stalled_reduces(store, grace=30, now=2030.0)
    assert rec.id == red.id and [r.id for r in found] == [m.id for m in members]
    store.apply([Event(red.id, JobStatus.RUNNING, 2031.0, "m1")])
    assert stalled_reduces(store, grace=30, now=2100.0) == []           # it runs: nothing to do
