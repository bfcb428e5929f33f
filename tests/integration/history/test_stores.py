"""One contract, run against every history backend."""

import threading

import pytest

from cmqueue.core.errors import UnknownJobError
from cmqueue.core.models import Event, JobRecord, JobSpec, JobStatus, new_id
from cmqueue.history import open_store
from tests.support import threads


@pytest.fixture
def store(history_store):
    return history_store


def _jobs(n, batch="b1"):
    return [JobRecord(spec=JobSpec(id=new_id(), command=f"echo {i}", batch=batch)) for i in range(n)]


def test_added_jobs_are_queued_with_an_event(store):
    (rec,) = _jobs(1)
    store.add([rec])
    got = store.get(rec.id)
    assert got.state == JobStatus.QUEUED and got.spec.command == "echo 0"
    assert [e.state for e in store.events(rec.id)] == [JobStatus.QUEUED]


def test_events_move_a_job_and_keep_its_result(store):
    (rec,) = _jobs(1)
    store.add([rec])
    store.apply([Event(rec.id, JobStatus.RUNNING, 10.0, "m1", id="1-0"),
                 Event(rec.id, JobStatus.SUCCEEDED, 11.0, "m1", id="2-0",
                       data={"exit_code": 0, "stdout": "hi", "started": 10.0, "ended": 11.0, "job": rec.id,
                             "machine": "m1"})], cursor="2-0")
    got = store.get(rec.id)
    assert (got.state, got.machine, got.exit_code, got.result.stdout) == (JobStatus.SUCCEEDED, "m1", 0, "hi")
    assert got.ended - got.started == 1.0
    assert store.cursor() == "2-0"


def test_applying_the_same_stream_events_twice_changes_nothing(store):
    (rec,) = _jobs(1)
    store.add([rec])
    evs = [Event(rec.id, JobStatus.RUNNING, 1.0, "m1", id="5-0")]
    assert store.apply(evs, cursor="5-0") == 1
    assert store.apply(evs, cursor="5-0") == 0
    assert len(store.events(rec.id)) == 2


def test_final_state_is_not_overwritten(store):
    (rec,) = _jobs(1)
    store.add([rec])
    store.apply([Event(rec.id, JobStatus.CANCELLED, 1.0)])
    store.apply([Event(rec.id, JobStatus.RUNNING, 2.0, "m1", id="9-0")], cursor="9-0")
    assert store.get(rec.id).state == JobStatus.CANCELLED


def test_resolve_by_id_batch_and_prefix(store):
    recs = _jobs(3, batch="bX")
    store.add(recs)
    assert [r.id for r in store.resolve(["bX"])] == [r.id for r in recs]
    assert store.resolve([recs[1].id[:-1]])[0].id == recs[1].id
    with pytest.raises(UnknownJobError, match="no job or batch 'zzz'"):
        store.resolve(["zzz"])
    twins = [JobRecord(spec=JobSpec(id=f"k7q{n}xyz", command="true", batch="bk7qzz")) for n in (1, 2)]
    store.add(twins)
    with pytest.raises(UnknownJobError, match="several jobs"):
        store.resolve(["k7q"])
    assert store.resolve(["k7q2"])[0].id == "k7q2xyz"
    # A short prefix of a batch id names the batch, as one of a job id names the job.
    assert sorted(r.id for r in store.resolve(["bk7"])) == ["k7q1xyz", "k7q2xyz"]


def test_listing_by_state_and_last(store):
    recs = _jobs(5)
    store.add(recs)
    store.apply([Event(recs[0].id, JobStatus.FAILED, 1.0)])
    assert [r.id for r in store.jobs(state=JobStatus.FAILED)] == [recs[0].id]
    assert [r.id for r in store.jobs(last=2)] == [recs[3].id, recs[4].id]
    assert len(store.get_many([r.id for r in recs] + ["nope"])) == 5


def test_counts_by_state(store):
    recs = _jobs(4)
    store.add(recs)
    store.apply([Event(recs[0].id, JobStatus.FAILED, 1.0), Event(recs[1].id, JobStatus.RUNNING, 1.0)])
    assert store.counts() == {"queued": 2, "failed": 1, "running": 1}


def test_concurrent_appliers_apply_each_event_once(store, tmp_path):
    recs = _jobs(50)
    store.add(recs)
    evs = [Event(r.id, JobStatus.RUNNING, 1.0, "m", id=f"{i + 1}-0") for i, r in enumerate(recs)]
    other = open_store(f"sqlite:///{tmp_path / 'history.db'}")
    appliers = [threads.start(lambda s=s: s.apply(evs, cursor=evs[-1].id)) for s in (store, other)]
    for t in appliers:
        t.result(timeout=60)
    assert sum(len(store.events(r.id)) for r in recs) == 100  # one queued + one running each
    other.close()


def test_cache_entries_follow_job_events(store):
    (rec,) = _jobs(1)
    store.add([rec])
    cache = {"machine": "m1", "added": [["aa", 10], ["bb", 20]], "used": [], "evicted": []}
    done = Event(rec.id, JobStatus.SUCCEEDED, 5.0, "m1", id="1-0", data={"exit_code": 0, "data": {"cache": cache}})
    store.apply([done], cursor="1-0")
    assert [(e["sha"], e["size"], e["last_used"]) for e in store.cache_entries("m1")] == [("aa", 10, 5.0),
                                                                                          ("bb", 20, 5.0)]
    store.cache_update("m1", used=["aa"], evicted=["bb"], ts=9.0)
    store.cache_update("m2", added=[["aa", 10]], ts=7.0)
    assert [(e["machine"], e["sha"], e["last_used"]) for e in store.cache_entries()] == [("m2", "aa", 7.0),
                                                                                         ("m1", "aa", 9.0)]
    # The same events applied again (a second reader) change nothing.
    store.apply([Event(rec.id, JobStatus.SUCCEEDED, 5.0, "m1", id="1-0", data={"data": {"cache": cache}})],
                cursor="1-0")
    assert len(store.cache_entries("m1")) == 1


def test_workflows_and_their_steps(store):
    store.add_workflow({"id": "wabc", "expr": "a; b", "source": "t.py", "created": 1.0, "final": ["b"]},
                       [{"name": "a", "kind": "task", "seq": 0, "spec": {"id": "j1"}, "job": "j1"},
                        {"name": "b", "kind": "task", "seq": 1, "spec": {"id": "j2"}, "job": "j2"}])
    store.add_workflow({"id": "wabd", "expr": "c", "created": 2.0, "final": ["c"]},
                       [{"name": "c", "kind": "task", "seq": 0, "spec": {"id": "j3"}, "job": "j3"}])
    wf = store.workflow("wabc")
    assert (wf["expr"], wf["final"], [s["job"] for s in wf["steps"]]) == ("a; b", ["b"], ["j1", "j2"])
    store.set_step_jobs("wabc", {"b": {"job": "j9", "spec": {"id": "j9"}}})
    assert [s["job"] for s in store.workflow("wabc")["steps"]] == ["j1", "j9"]
    assert [w["id"] for w in store.workflows()] == ["wabc", "wabd"]
    assert [w["id"] for w in store.workflows(last=1)] == ["wabd"]
    assert store.workflow_ids("wab") == ["wabc", "wabd"] and store.workflow_ids("wabd") == ["wabd"]
    assert store.workflow("nope") is None


def test_step_successes_are_the_latest_succeeded_jobs_of_steps_of_that_name(store):
    recs = _jobs(4, batch="wx")
    store.add(recs)
    for i, rec in enumerate(recs):
        state = JobStatus.FAILED if i == 2 else JobStatus.SUCCEEDED
        store.apply([Event(rec.id, state, 10.0 + i, "m1", id=f"{i + 1}-0",
                           data={"exit_code": 0, "stdout": str(i), "started": 9.0, "ended": 10.0 + i,
                                 "job": rec.id, "machine": "m1"})], cursor=f"{i + 1}-0")
    for n, (name, rec) in enumerate(zip(["make", "make", "make", "other"], recs, strict=True)):
        store.add_workflow({"id": f"w{n}", "expr": name, "created": float(n), "final": [name]},
                           [{"name": name, "kind": "task", "seq": 0, "spec": rec.spec.to_dict(), "job": rec.id}])
    got = store.step_successes("make")
    assert [r.id for r in got] == [recs[1].id, recs[0].id]            # newest first; the failed one left out
    assert got[0].result.stdout == "1"
    assert store.step_successes("make", limit=1)[0].id == recs[1].id
    assert store.step_successes("nothing") == []


def test_a_job_sent_without_a_cmq_client_is_recorded_from_its_first_event(store):
    spec = {"id": "rest-1", "command": "hostname", "target": "machine:m1", "queue": "cmq.m.m1", "submitted": 3.0}
    store.apply([Event("rest-1", JobStatus.RUNNING, 4.0, "m1", id="7-0", data={"spec": spec}),
                 Event("rest-1", JobStatus.SUCCEEDED, 5.0, "m1", id="8-0",
                       data={"exit_code": 0, "stdout": "m1\n", "job": "rest-1", "machine": "m1"})], cursor="8-0")
    rec = store.get("rest-1")
    assert (rec.state, rec.spec.command, rec.result.stdout) == (JobStatus.SUCCEEDED, "hostname", "m1\n")


def test_a_new_sqlite_history_opened_while_another_process_writes_it_waits_for_the_lock(tmp_path):
    """Several services open a new history at once: switching it to WAL waits out their locks.

    SQLite answers the journal-mode change with "locked" at once, without waiting, while
    another connection holds a write lock; the recorder once died of it at `honcho start`.
    """
    import sqlite3

    path = tmp_path / "history.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE other_service (x)")
    other.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release():
        other.execute("COMMIT")
        released.set()

    holder = threading.Timer(0.3, release)
    holder.start()
    try:
        s = open_store(f"sqlite:///{path}")
        assert released.is_set()
        (mode,) = s.db.execute("PRAGMA journal_mode").fetchone()
        assert mode == "wal"
        s.close()
    finally:
        holder.join(30)
        other.close()
