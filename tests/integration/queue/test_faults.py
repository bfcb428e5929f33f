"""Machines going down, messages handed out twice: no job lost, none run twice."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import make_env, teardown, wait_for

#: Machines go down and come back; a thousand jobs survive a restart of everything.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(params=["session", "exec"])
def fresh(request, tmp_path):
    cenv = make_env(tmp_path, machines=3, slots=2, first=21, transport=request.param)
    yield cenv
    teardown(cenv)


def test_a_machine_going_down_mid_run_loses_no_job(fresh):
    tag = uuid.uuid4().hex[:8]
    with fresh.cluster_api() as c:
        jobs = c.map(f"echo {tag}-{{}} >> ran.log; sleep 8; echo $CMQ_MACHINE", range(12))

        def running_on_m1():
            # Jobs that started on m1 less than 2 s ago (of 8) are surely still running when it goes
            # down, even on a loaded machine where the history lags a little.
            return [r for r in c.status([j.id for j in jobs]) if r.state.value == "running"
                    and r.machine == "m1" and time.time() - r.started < 2]

        victims = wait_for(running_on_m1, timeout=60, what="a job running on m1")
        fresh.cluster.machine("m1").stop()        # the machine goes down, sessions and all
        records = c.wait(jobs, timeout=120)
        assert [r.state.value for r in records] == ["succeeded"] * 12
        by_id = {r.id: r for r in records}
        for v in victims:
            assert by_id[v.id].machine in ("m2", "m3")
            assert by_id[v.id].result.stdout.strip() == by_id[v.id].machine
            reasons = [e.data.get("reason", "") for e in c.store.events(v.id) if e.state.value == "retrying"]
            assert any("m1 unreachable" in r for r in reasons), reasons
    rows = {r["name"]: r for r in fresh.run("machines", "--json", check=True).json()}
    assert rows["m1"]["worker"] == "unreachable"
    # The machine comes back: its worker resumes and pinned work runs there again.
    fresh.cluster.machine("m1").start()
    r = fresh.run("submit", "--wait", "--on=m1", "echo back on $CMQ_MACHINE", timeout=120)
    assert r.code == 0 and r.out == "back on m1\n"


def test_pinned_job_waits_for_its_machine_instead_of_failing(fresh):
    fresh.cluster.machine("m2").stop()
    with fresh.cluster_api() as c:
        job = c.submit("echo pinned on $CMQ_MACHINE", on="m2")
        wait_for(lambda: "unreachable" in str(fresh.run("machines", "--json").out), timeout=60,
                 what="m2 to be reported unreachable")
        assert job.state.value in ("queued", "retrying")
        fresh.cluster.machine("m2").start()
        res = job.wait(timeout=120)
    assert res.ok and res.stdout == "pinned on m2\n"


def test_jobs_pinned_to_a_machine_down_from_the_start_wait_for_it(tmp_path):
    cenv = make_env(tmp_path, machines=2, slots=1, first=35)
    try:
        cenv.cluster.machine("m2").stop()
        cenv.run("down", check=True)
        up = cenv.run("up")                       # m2's worker starts with its machine down
        assert "worker m2: unreachable" in up.err
        pinned = cenv.run("submit", "--json", "--on=m2", "echo pinned on $CMQ_MACHINE", check=True).json()
        everywhere = cenv.run("submit", "--json", "--all", "echo all on $CMQ_MACHINE", check=True).json()
        on_m1 = [j["id"] for j in everywhere["jobs"] if j["target"] == "machine:m1"]
        waiting = [pinned["jobs"][0]["id"]] + [j["id"] for j in everywhere["jobs"] if j["target"] == "machine:m2"]
        assert cenv.run("wait", *on_m1, check=True).out == "all on m1\n"     # m1's copy ran
        for rec in cenv.run("status", "--json", *waiting, check=True).json():
            assert rec["state"] == "queued", rec
            assert rec["reason"].startswith("waiting for m2: unreachable: ssh: connect to host"), rec
        assert "waiting for m2" in cenv.run("status", check=True).out
        cenv.cluster.machine("m2").start()
        r = cenv.run("wait", "--json", *waiting, timeout=120, check=True)
        assert [rec["stdout"] for rec in r.json()] == ["pinned on m2\n", "all on m2\n"]
    finally:
        teardown(cenv)


def test_a_job_longer_than_the_visibility_timeout_runs_once(tmp_path):
    # One machine with two slots: the copy handed out again reaches the worker that is
    # running the job, which must not take it for its own and run it a second time.
    cenv = make_env(tmp_path, machines=1, slots=2, first=31,
                    settings={"visibility_timeout": 2, "restore_interval": 1, "claim_ttl": 3})
    try:
        name = f"runs-{uuid.uuid4().hex}.txt"
        r = cenv.run("submit", "--wait", "--json", f"echo run >> {name}; sleep 7; echo done", timeout=120)
        assert r.code == 0, r.err
        (rec,) = r.json()
        assert rec["stdout"] == "done\n"
        assert len((cenv.workdir("m1") / name).read_text().splitlines()) == 1
        assert not rec["reran_after"]
        # The broker did hand the message out again: the guard is what kept it from running twice.
        logs = (cenv.home / "logs" / "worker-w1.log").read_text()
        assert f"job {rec['id']}: its message was handed out again while the job runs" in logs, logs[-3000:]
    finally:
        teardown(cenv)

