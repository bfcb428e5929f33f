"""Workflows end to end on the loopback cluster: order, sum, suspend, resume."""

from __future__ import annotations

import json
import os
import signal
import uuid

import pytest

from tests.conftest import make_env, teardown, wait_for

TASKS = '''
LOG = "{log}"

def _step(name, value, secs):
    return (f"echo {{name}} start $(date +%s.%N) >> {{LOG}}; sleep {{secs}}; "
            f"echo {{name}} end $(date +%s.%N) >> {{LOG}}; echo {{value}}")

def a(): return _step("a", 1, 1)
def b(): return _step("b", 2, 1)
def c(): return _step("c", 3, 1)
def d(): return _step("d", 4, 0.2)
def words(): return "echo hello"
def flaky(): return f"echo flaky start 0 >> {{LOG}}; test -e {{LOG}}.fixed"
def notacommand(): return 42
'''


def _tasks(tmp_path, tag):
    log = f"/tmp/cmq-wf-{tag}.log"
    path = tmp_path / "tasks.py"
    path.write_text(TASKS.format(log=log))
    return path, log


def _events(log):
    out = {}
    for line in open(log).read().splitlines():
        name, what, ts = line.split()
        out.setdefault(name, {}).setdefault(what, []).append(float(ts))
    return out


def _open_gate(gate) -> None:
    """Let a step blocked reading the FIFO ``gate`` go on (nothing when none reads it)."""
    try:
        fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:                       # no reader (the step was killed, or not started)
        return
    os.close(fd)


def test_the_example_runs_in_order_and_adds_the_four_results(cmq, tmp_path):
    tag = uuid.uuid4().hex[:8]
    tasks, log = _tasks(tmp_path, tag)
    tasks.write_text(tasks.read_text().replace("def notacommand(): return 42\n", ""))
    r = cmq.run("run", f"--tasks={tasks}", "--wait", "--json", "(a | b | c); d; a + b + c + d", timeout=180)
    assert r.code == 0, r.err
    out = r.json()
    assert (out["state"], out["value"]) == ("succeeded", 10)
    ev = _events(log)
    assert {k: len(v["start"]) for k, v in ev.items()} == {"a": 1, "b": 1, "c": 1, "d": 1}   # each ran once
    ends = [ev[x]["end"][0] for x in "abc"]
    starts = [ev[x]["start"][0] for x in "abc"]
    assert max(starts) < min(ends)                   # a, b and c overlapped: they ran in parallel
    assert ev["d"]["start"][0] > max(ends)           # d started after all three ended
    steps = {s["name"]: s for s in out["steps"]}
    assert steps["a + b + c + d"]["result"] == 10 and steps["d"]["result"].strip() == "4"
    shown = cmq.run("show", out["workflow"])
    assert shown.code == 0 and "succeeded" in shown.out and "value: 10" in shown.out
    listed = cmq.run("workflows", "--json").json()
    assert any(w["workflow"] == out["workflow"] and w["state"] == "succeeded" for w in listed)
    os.unlink(log)


def test_plan_shows_order_and_reuse_and_runs_nothing(cmq, tmp_path):
    tasks, log = _tasks(tmp_path, uuid.uuid4().hex[:8])
    tasks.write_text(tasks.read_text().replace("def notacommand(): return 42\n", ""))
    before = len(cmq.run("workflows", "--json", "--last=1000").json())
    r = cmq.run("plan", f"--tasks={tasks}", "--json", "(a | b | c); d; a + b + c + d")
    assert r.code == 0, r.err
    p = r.json()
    assert p["order"] == [["a", "b", "c"], ["d"], ["a + b + c + d"]]
    assert p["final"] == ["a + b + c + d"]
    where = {s["name"]: s["where"] for s in p["steps"]}
    assert where["a"].startswith("any: m1,m2,m3")
    text = cmq.run("plan", f"--tasks={tasks}", "(a | b | c); d; a + b + c + d").out
    assert "reused" in text and "1. a | b | c" in text
    assert len(cmq.run("workflows", "--json", "--last=1000").json()) == before
    assert not os.path.exists(log)


@pytest.mark.parametrize("expr, code, message", [
    ("(a | | b)", 2, "expression:1:6: expected a task name after '|', found '|'"),
    ("", 2, "expression:1:1: empty expression"),
    ("a; nosuch + other", 2, "unknown tasks nosuch, other; tasks: a, b, c, d, flaky, words"),
])
def test_bad_expressions_start_nothing(cmq, tmp_path, expr, code, message):
    tasks, _ = _tasks(tmp_path, "x")
    tasks.write_text(tasks.read_text().replace("def notacommand(): return 42\n", ""))
    before = len(cmq.run("workflows", "--json", "--last=1000").json())
    r = cmq.run("run", f"--tasks={tasks}", expr)
    assert (r.code, r.err.strip()) == (code, f"cmq: {message}")
    assert len(cmq.run("workflows", "--json", "--last=1000").json()) == before


def test_a_task_that_returns_no_command_is_refused(cmq, tmp_path):
    tasks, _ = _tasks(tmp_path, "y")
    r = cmq.run("run", f"--tasks={tasks}", "a")
    assert r.code == 2
    assert "tasks.py: task notacommand returned 42 (int), not a command" in r.err


def test_a_failed_step_suspends_and_resume_runs_only_what_did_not_succeed(cmq, tmp_path):
    tag = uuid.uuid4().hex[:8]
    tasks, log = _tasks(tmp_path, tag)
    tasks.write_text(tasks.read_text().replace("def notacommand(): return 42\n", ""))
    r = cmq.run("run", f"--tasks={tasks}", "--wait", "--json", "a; flaky; d; a + d", timeout=180)
    assert r.code == 1
    out = r.json()
    assert out["state"] == "suspended"
    states = {s["name"]: s["state"] for s in out["steps"]}
    assert states == {"a": "succeeded", "flaky": "failed", "d": "cancelled", "a + d": "cancelled"}
    d = next(s for s in out["steps"] if s["name"] == "d")
    assert "not started: workflow" in d["reason"] and "step flaky failed" in d["reason"]
    assert "d" not in _events(log)                       # d never started
    open(f"{log}.fixed", "w").close()
    r = cmq.run("resume", "--wait", "--json", out["workflow"], timeout=180)
    assert r.code == 0, r.err
    again = r.json()
    assert (again["state"], again["value"]) == ("succeeded", 5)
    ev = _events(log)
    assert len(ev["a"]["start"]) == 1                    # the succeeded step was not run again
    assert len(ev["flaky"]["start"]) == 2 and len(ev["d"]["start"]) == 1
    r = cmq.run("retry", "--wait", out["workflow"], "d", timeout=180)
    assert r.code == 0, r.err
    assert len(_events(log)["d"]["start"]) == 2 and len(_events(log)["a"]["start"]) == 1
    for p in (log, f"{log}.fixed"):
        os.unlink(p)


def test_python_api(cmq, tmp_path):
    tasks, log = _tasks(tmp_path, uuid.uuid4().hex[:8])
    tasks.write_text(tasks.read_text().replace("def notacommand(): return 42\n", ""))
    with cmq.cluster_api() as c:
        wf = c.run("words + words; d", tasks=str(tasks))
        assert wf.wait(timeout=120).strip() == "4"
        assert c.run("words + b", tasks={"words": "echo hi"} | {"b": "echo there"}).wait(timeout=120) == "hi\nthere\n"
    os.unlink(log)


def test_worker_killed_mid_workflow_then_resume_runs_no_succeeded_step_again(tmp_path):
    env = make_env(tmp_path, machines=2, slots=2, first=97,
                   settings={"visibility_timeout": 4, "restore_interval": 1, "claim_ttl": 3})
    try:
        log = str(tmp_path / "wf.log")
        marker = tmp_path / "b.marker"
        tasks = tmp_path / "tasks.py"
        tasks.write_text(f'''
LOG = "{log}"
def a(): return f"echo a start 0 >> {{LOG}}; echo 1"
def b(): return (f"echo b start 0 >> {{LOG}}; if [ -e {marker} ] && [ ! -e {marker}.ok ]; then exit 1; fi; "
                 f"touch {marker}; sleep 4; echo 2")
def c(): return f"echo c start 0 >> {{LOG}}; echo 3"
''')
        r = env.run("run", f"--tasks={tasks}", "a; b; c; a + b + c")
        assert r.code == 0, r.err
        wf = r.out.strip()
        wait_for(lambda: os.path.exists(log) and "b start" in open(log).read(), timeout=60, what="b to start")
        for rec in json.loads((env.home / "services.json").read_text())["workers"].values():
            os.kill(rec["pid"], signal.SIGKILL)              # every worker dies while b runs
        assert env.run("up").code == 0                       # they come back, as after a crash
        # b's message comes back after the visibility timeout; its second run finds the marker
        # and fails, which suspends the workflow: c and the sum do not start.
        shown = wait_for(lambda: (lambda o: o if o["state"] == "suspended" else None)(
            env.run("show", "--json", wf).json()), timeout=40, what="the workflow to be suspended")
        assert {s["name"]: s["state"] for s in shown["steps"]}["a"] == "succeeded"
        (tmp_path / "b.marker.ok").touch()
        # Everything restarts before the resume: workers, Redis (AOF) and the CLI.
        assert env.run("down", "--grace=2").code == 0
        env.redis.stop()
        env.redis.start()
        assert env.run("up").code == 0
        r = env.run("resume", "--wait", "--json", wf, timeout=180)
        assert r.code == 0, r.err
        assert r.json()["value"] == 6
        runs = [line.split()[0] for line in open(log).read().splitlines()]
        assert runs.count("a") == 1 and runs.count("c") == 1 and runs.count("b") >= 3
    finally:
        teardown(env)


def test_cancel_a_workflow(cmq, tmp_path):
    tasks, log = _tasks(tmp_path, uuid.uuid4().hex[:8])
    # Step a holds until the test opens the gate (a FIFO): the cancel comes while it runs,
    # however slow this machine is.
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    tasks.write_text(tasks.read_text().replace("def notacommand(): return 42\n", "").replace(
        'def a(): return _step("a", 1, 1)', f'def a(): return "timeout 30 cat {gate} > /dev/null; echo 1"'))
    wf = cmq.run("run", f"--tasks={tasks}", "a; d").out.strip()
    r = cmq.run("cancel", wf)
    _open_gate(gate)
    assert r.code == 0 and f"workflow {wf} suspended" in r.err, r.err
    shown = wait_for(lambda: (lambda o: o if o["state"] == "suspended" else None)(
        cmq.run("show", "--json", wf).json()), timeout=60, what="the workflow to be suspended")
    assert {s["name"]: s["state"] for s in shown["steps"]}["d"] == "cancelled"
    assert "d" not in (_events(log) if os.path.exists(log) else {})
    # Cancelling it again, or a workflow that succeeded, says it ended and changes nothing.
    again = cmq.run("cancel", wf)
    assert again.code == 0 and f"workflow {wf} already ended (suspended): nothing to cancel" in again.err
    done = cmq.run("run", f"--tasks={tasks}", "--wait", "--json", "words", timeout=180).json()["workflow"]
    r = cmq.run("cancel", done)
    assert r.code == 0 and f"workflow {done} already ended (succeeded): nothing to cancel" in r.err
    assert cmq.run("show", "--json", done).json()["state"] == "succeeded"
    if os.path.exists(log):
        os.unlink(log)
