"""Schedules end to end on the loopback cluster: the recorder that `cmq up` started fires a
missed schedule once (however many due times were missed), the batch runs and succeeds,
a workflow fires through Workflows.start, a gone tasks file is a failed firing with its
reason, and two racing looks at one due time fire it once.

No test waits for a minute to pass: a schedule is made due by moving its ``checked``
time back in the store (as if everything had been down), with a daily cron whose due
time was a few minutes ago, so that it does not fall due again during the test."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_py

from tests.conftest import make_env, teardown, wait_for


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Two machines (loopback offsets 251, 252), Redis, workers and the recorder."""
    cenv = make_env(tmp_path_factory.mktemp("schedules"), machines=2, first=251)
    yield cenv
    teardown(cenv)


def _daily_cron(minutes_ago: int) -> str:
    """A daily cron expression whose due time was ``minutes_ago`` minutes ago (UTC)."""
    t = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return f"{t.minute} {t.hour} * * *"


def _store(env):
    c = env.cluster_api()
    return c, c.store


def _make_due(env, name: str, days: float) -> None:
    """Move ``name``'s checked time ``days`` back (missed due times) and wake the recorder."""
    from cmqueue.schedules.runner import notify

    c, store = _store(env)
    try:
        assert store.update_schedule(name, {"checked": time.time() - days * 86400})
    finally:
        c.close()
    client = redis_py.Redis.from_url(env.redis.url)
    try:
        assert notify(client)
    finally:
        client.close()


def _listed(env, name: str) -> dict:
    r = env.run("schedule", "list", "--json")
    assert r.code == 0, r.err
    return next(s for s in r.json() if s["name"] == name)


@pytest.mark.timeout(300)
def test_a_missed_schedule_fires_once_on_the_recorders_next_look_and_the_batch_succeeds(env):
    r = env.run("schedule", "add", "--on=m1", "tick", _daily_cron(5), "echo scheduled-tick")
    assert r.code == 0, r.err
    assert r.out.startswith("schedule tick: --on=m1 echo scheduled-tick; next ")
    assert _listed(env, "tick")["fired"] == 0
    _make_due(env, "tick", days=3)                      # three daily due times were missed
    fired = wait_for(lambda: (s := _listed(env, "tick"))["fired"] and s, timeout=60, what="the firing")
    batch = fired["last_id"]
    assert batch and fired["last_error"] == ""
    w = env.run("wait", batch, timeout=120)
    assert w.code == 0, w.err
    assert "scheduled-tick" in w.out
    shown = _listed(env, "tick")
    assert (shown["fired"], shown["last_id"], shown["last_state"], shown["paused"]) == (1, batch, "succeeded", False)
    assert shown["next"] > time.time()                  # tomorrow's due time
    c, store = _store(env)
    try:
        runs = [j for j in store.jobs() if j.spec.command == "echo scheduled-tick"]
        assert [(j.spec.batch, j.machine, j.state.value) for j in runs] == [(batch, "m1", "succeeded")]
    finally:
        c.close()
    table = env.run("schedule", "list")
    line = next(ln for ln in table.out.splitlines() if ln.startswith("tick "))
    assert batch in line and "succeeded" in line and line.endswith("--on=m1 echo scheduled-tick")


@pytest.mark.timeout(300)
def test_a_workflow_fires_and_a_gone_tasks_file_is_a_failed_firing_with_its_reason(env, tmp_path):
    tasks = tmp_path / "tasks.py"
    tasks.write_text("def a(): return 'echo 2'\ndef b(): return 'echo 3'\n")
    r = env.run("schedule", "add", "--workflow=a + b", f"--tasks={tasks}", "sum", _daily_cron(4))
    assert r.code == 0, r.err
    _make_due(env, "sum", days=1)
    fired = wait_for(lambda: (s := _listed(env, "sum"))["fired"] and s, timeout=60, what="the workflow firing")
    assert fired["kind"] == "workflow" and fired["last_error"] == "" and fired["last_id"].startswith("w")
    w = env.run("show", "--json", fired["last_id"], timeout=60)
    assert w.code == 0, w.err
    wait_for(lambda: _listed(env, "sum")["last_state"] == "succeeded", timeout=120, what="the workflow")
    shown = env.run("show", "--json", fired["last_id"]).json()
    assert shown["value"] == 5

    tasks.unlink()
    _make_due(env, "sum", days=1)
    failed = wait_for(lambda: (s := _listed(env, "sum"))["fired"] == 2 and s, timeout=60, what="the second firing")
    assert failed["last_state"] == "failed" and failed["last_id"] is None
    assert failed["last_error"] == f"tasks file {tasks} is gone (removed or moved since the schedule was added)"
    table = env.run("schedule", "list")
    assert "is gone" in table.out


@pytest.mark.timeout(240)
def test_two_looks_racing_for_one_due_time_fire_it_once(env):
    """Two threads, each with its own store, look at one due time given as "now" (a
    future one, so the recorder, on the real clock, does not see it due)."""
    from cmqueue.api.cluster import Cluster
    from cmqueue.history import open_store
    from cmqueue.schedules.fire import check

    due = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=2)
    r = env.run("schedule", "add", "--on=m2", "race", f"{due.minute} {due.hour} * * *", "echo raced")
    assert r.code == 0, r.err
    c, _ = _store(env)
    settings = c.settings
    c.close()
    start = threading.Barrier(2)
    results: list = []

    def look() -> None:
        store = open_store(settings.history)
        try:
            start.wait(timeout=30)
            fired, wake = check(store, due.timestamp() + 1, "UTC", 60, lambda: Cluster(settings))
            results.append(([f for f in fired if f.name == "race"], wake))
        finally:
            store.close()

    threads = [threading.Thread(target=look) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    won = [f for fired, _ in results for f in fired]
    assert len(results) == 2 and len(won) == 1, results
    assert won[0].due == due.timestamp() and won[0].error == ""
    assert all(due.timestamp() < wake <= (due + timedelta(days=1)).timestamp() for _, wake in results)
    w = env.run("wait", won[0].id, timeout=120)
    assert w.code == 0 and "raced" in w.out, w.err
    assert _listed(env, "race")["fired"] == 1


def test_bad_input_is_one_line_and_exit_2(env):
    for argv, message in [
        (("add", "x", "61 * * * *", "echo"), "cmq: cron: minute field '61' is not valid"),
        (("add", "x", "* * * 13 *", "echo"), "cmq: cron: month field '13' is not valid"),
        (("add", "x", "* * *", "echo"), "cmq: cron: '* * *' has 3 fields; give 5"),
        (("add", "--catchup=always", "x", "* * * * *", "echo"), "cmq: --catchup=always: must be one of once, skip"),
        (("add", "--on=nosuch", "x", "* * * * *", "echo"), "cmq: unknown machine"),
        (("add", "--workflow=a", "--tasks=/nonexistent/t.py", "x", "* * * * *"), "cmq: --tasks=/nonexistent/t.py"),
        (("pause", "nosuch"), "cmq: no schedule 'nosuch'"),
    ]:
        r = env.run("schedule", *argv)
        assert r.code == 2, (argv, r.err)
        assert r.err.startswith(message) and len(r.err.strip().splitlines()) == 1, (argv, r.err)
    assert "x" not in [s["name"] for s in env.run("schedule", "list", "--json").json()]


def test_pause_unpause_remove(env):
    assert env.run("schedule", "add", "p", "0 0 1 1 *", "true").code == 0
    assert env.run("schedule", "add", "p", "0 0 1 1 *", "true").code == 2          # the name is taken
    assert env.run("schedule", "pause", "p").out.strip() == "schedule p paused"
    shown = _listed(env, "p")
    assert shown["paused"] is True and shown["next"] is None
    before = time.time()
    assert env.run("schedule", "unpause", "p").code == 0
    c, store = _store(env)
    try:
        got = store.schedule("p")
        assert got["paused"] is False and got["checked"] >= before        # what was due while paused is not
    finally:
        c.close()
    assert env.run("schedule", "remove", "p").code == 0
    assert "p" not in [s["name"] for s in env.run("schedule", "list", "--json").json()]


@pytest.mark.timeout(300)
def test_missed_while_everything_was_down_fires_once_on_restart_or_is_skipped(env):
    """`cmq down`, two days of due times pass (the checked times move back), `cmq up`:
    the catchup=once schedule fires once, the catchup=skip one skips and fires nothing."""
    cron = _daily_cron(3)
    assert env.run("schedule", "add", "--on=m1", "late-once", cron, "echo late-once").code == 0
    assert env.run("schedule", "add", "--catchup=skip", "--on=m1", "late-skip", cron, "echo late-skip").code == 0
    assert env.run("down", "--grace=2", timeout=60).code == 0
    c, store = _store(env)
    try:
        for name in ("late-once", "late-skip"):
            assert store.update_schedule(name, {"checked": time.time() - 2 * 86400})
    finally:
        c.close()
    up = env.run("up", timeout=120)
    assert up.code == 0, up.err

    def both() -> tuple[dict, dict] | None:
        once, skip = _listed(env, "late-once"), _listed(env, "late-skip")
        return (once, skip) if once["fired"] and skip["skipped"] else None

    once, skip = wait_for(both, timeout=60, what="the recorder's first look after the restart")
    assert (once["fired"], once["skipped"], skip["fired"], skip["skipped"]) == (1, 0, 0, 1)
    assert skip["last_id"] is None
    w = env.run("wait", once["last_id"], timeout=120)
    assert w.code == 0 and "late-once" in w.out, w.err
    c, store = _store(env)
    try:
        assert [j.spec.command for j in store.jobs() if j.spec.command.startswith("echo late-")] == ["echo late-once"]
    finally:
        c.close()
