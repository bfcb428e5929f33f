"""Goals on the loopback cluster: steps that know when they are done (creates, done_if,
inputs), prerequisites pulled in by needs, the narration, and `cmq plan`'s verdicts."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import make_env, teardown, wait_for

TASKS = '''
from cmqueue.workflow import task

@task(on="m1", creates=["goal/made"])
def make():
    return "mkdir -p goal && echo once >> goal/log && touch goal/made && echo 41"

@task(on="m1", needs=["make"])
def count():
    return "wc -l < goal/log"

@task(on="m1", needs=["count"], inputs=["goal/in.txt"])
def digest():
    return "echo ran >> goal/digest.log; wc -c < goal/in.txt"

@task(on="m1")
def change():
    return "echo more >> goal/in.txt"

@task(on="m1", done_if="exit 3")
def broken():
    return "echo never"

@task(on="m1")
def fails():
    return "exit 5"

@task(where="cpus>=1 and os!=nosuchos")
def anywhere():
    return "echo here"

@task(where="cpus>=4096")
def nowhere():
    return "echo never"

@task(on="m1", done_if="read line < goal-gate; exit 1")
def gated():
    return "touch goal-gated-ran"

@task(on="m2", done_if="test -e goal-m2")
def marker():
    return "touch goal-m2"
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cenv = make_env(tmp_path_factory.mktemp("goals"), machines=2, slots=2, first=235)
    yield cenv
    teardown(cenv)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    path = tmp_path_factory.mktemp("goal-tasks") / "tasks.py"
    path.write_text(TASKS)
    return path


def _run(env, tasks, *args: str):
    r = env.run("run", f"--tasks={tasks}", *args, timeout=240)
    assert r.code == 0, r.out + r.err
    return r


def _lines(out: str, step: str) -> list[list[str]]:
    """The narration lines of ``step`` after it was queued, as words (time, step,
    machine, state, ...)."""
    return [line.split() for line in out.splitlines()
            if len(line.split()) > 3 and line.split()[1] == step and line.split()[3] != "queued"]


def test_a_done_step_is_skipped_its_value_reused_and_needs_run_first(env, tasks):
    workdir = env.workdir("m1")
    first = _run(env, tasks, "--narrate", "count")
    # needs: make ran, then count; narrated as it happened, in that order
    assert [line.split()[3] for line in first.out.splitlines()[:2]] == ["queued", "queued"], first.out
    make_states = [w[3] for w in _lines(first.out, "make")]
    count_states = [w[3] for w in _lines(first.out, "count")]
    assert make_states == ["checking", "succeeded"], first.out
    assert count_states == ["running", "succeeded"], first.out
    assert first.out.index(" make ") < first.out.index(" count "), first.out
    assert first.out.rstrip().splitlines()[-1].strip() == "1"
    assert (workdir / "goal" / "log").read_text() == "once\n"

    second = _run(env, tasks, "--narrate", "--verbose", "count")
    make_lines = _lines(second.out, "make")
    assert [w[3] for w in make_lines] == ["checking", "skipped"], second.out
    assert "goal/made exists" in " ".join(make_lines[1]), second.out
    assert (workdir / "goal" / "log").read_text() == "once\n"        # appended once, not twice
    assert "count@m1 | 1" in second.out                                # --verbose: the step's output
    # the skipped step's earlier output is its value: 41 (reused) + 1
    third = _run(env, tasks, "--wait", "make; count; make + count")
    assert third.out.strip() == "42"
    # --force runs it whatever the check says
    _run(env, tasks, "--wait", "--force=make", "make")
    assert (workdir / "goal" / "log").read_text() == "once\nonce\n"


def test_show_narrates_from_the_history_and_marks_skipped_steps(env, tasks):
    r = _run(env, tasks, "--json", "--wait", "count")
    wf = json.loads(r.out)
    by_name = {s["name"]: s for s in wf["steps"]}
    assert by_name["make"]["skipped"] and by_name["make"]["reason"].startswith("skipped: done")
    assert not by_name["count"]["skipped"]
    shown = env.run("show", "--narrate", wf["workflow"], timeout=60)
    assert shown.code == 0, shown.err
    assert [w[3] for w in _lines(shown.out, "make")] == ["checking", "skipped"]
    assert [w[3] for w in _lines(shown.out, "count")] == ["running", "succeeded"]
    tree = env.run("show", wf["workflow"], timeout=60)
    assert "skipped" in tree.out and "goal/made exists" in tree.out


def test_inputs_skip_while_their_digests_match_an_earlier_success(env, tasks):
    (env.workdir("m1") / "goal").mkdir(exist_ok=True)
    (env.workdir("m1") / "goal" / "in.txt").write_text("abc\n")
    log = env.workdir("m1") / "goal" / "digest.log"
    _run(env, tasks, "--wait", "digest")
    assert log.read_text() == "ran\n"
    again = _run(env, tasks, "--narrate", "digest")
    lines = _lines(again.out, "digest")
    assert [w[3] for w in lines] == ["checking", "skipped"] and "inputs unchanged since job" in " ".join(lines[1])
    assert log.read_text() == "ran\n"
    _run(env, tasks, "--wait", "change")
    changed = _run(env, tasks, "--narrate", "digest")
    assert [w[3] for w in _lines(changed.out, "digest")] == ["checking", "succeeded"], changed.out
    assert "inputs changed since job" in changed.out and "goal/in.txt" in changed.out
    assert log.read_text() == "ran\nran\n"


def test_a_check_that_cannot_run_fails_the_step(env, tasks):
    r = env.run("run", f"--tasks={tasks}", "--json", "--wait", "broken", timeout=240)
    assert r.code == 1, r.out + r.err
    (step,) = json.loads(r.out)["steps"]
    assert step["state"] == "failed"
    assert step["reason"].startswith("check failed: done_if `exit 3` exited 3"), step["reason"]


def test_plan_runs_the_checks_and_says_done_or_would_run(env, tasks):
    (env.workdir("m2") / "goal-m2").unlink(missing_ok=True)
    r = env.run("plan", f"--tasks={tasks}", "--json", "marker", timeout=120)
    assert r.code == 0, r.err
    (step,) = json.loads(r.out)["steps"]
    assert step["verdict"] == "run" and "`test -e goal-m2` exited 1" in step["why"], step
    (env.workdir("m2") / "goal-m2").touch()
    r = env.run("plan", f"--tasks={tasks}", "marker", timeout=120)
    assert r.code == 0, r.err
    assert "done" in r.out and "exited 0" in r.out, r.out
    forced = env.run("plan", f"--tasks={tasks}", "--force-all", "--json", "marker", timeout=120)
    (step,) = json.loads(forced.out)["steps"]
    assert step["forced"] and "verdict" not in step


def test_needs_order_and_refusals_in_plan(env, tasks):
    r = env.run("plan", f"--tasks={tasks}", "--no-checks", "--json", "digest", timeout=60)
    assert r.code == 0, r.err
    view = json.loads(r.out)
    assert view["order"] == [["make"], ["count"], ["digest"]]
    assert view["asked"] == "digest" and view["expr"] == "make; count; digest"
    bad = env.run("plan", f"--tasks={tasks}", "--no-checks", "count | make", timeout=60)
    assert bad.code == 0                       # a set of targets: needs order them
    bad = env.run("plan", f"--tasks={tasks}", "--no-checks", "count; make", timeout=60)
    assert bad.code == 2 and "count needs make" in bad.err and "Traceback" not in bad.err


def test_edit_changes_a_suspended_step_and_resume_runs_the_new_version(env, tasks):
    r = env.run("run", f"--tasks={tasks}", "--json", "--wait", "marker; fails", timeout=240)
    assert r.code == 1
    wf = json.loads(r.out)["workflow"]
    busy = env.run("edit", wf, "nosuch", "--command=true", timeout=60)
    assert busy.code == 2 and "has no task step 'nosuch'" in busy.err
    none = env.run("edit", wf, "fails", timeout=60)
    assert none.code == 2 and "nothing to change" in none.err
    edited = env.run("edit", wf, "fails", "--command=echo fixed", "--on=m2", timeout=60)
    assert edited.code == 0, edited.err
    assert "command 'exit 5' → 'echo fixed'" in edited.out and "'machine:m1' → 'machine:m2'" in edited.out
    resumed = env.run("resume", "--narrate", wf, timeout=240)
    assert resumed.code == 0, resumed.out + resumed.err
    lines = _lines(resumed.out, "fails")
    assert lines[-1][2:4] == ["m2", "succeeded"], resumed.out
    assert resumed.out.rstrip().splitlines()[-1] == "fixed"
    shown = json.loads(env.run("show", "--json", wf, timeout=60).out)
    step = {s["name"]: s for s in shown["steps"]}["fails"]
    assert step["command"] == "echo fixed" and step["edits"][0]["changed"]["command"] == ["exit 5", "echo fixed"]
    assert not _lines(resumed.out, "marker")                 # what succeeded is not run again


def test_where_places_a_step_on_machines_whose_facts_match(env, tasks):
    r = _run(env, tasks, "--json", "--wait", "anywhere")
    (step,) = json.loads(r.out)["steps"]
    assert step["state"] == "succeeded" and step["result"] == "here\n" and step["machine"] in ("m1", "m2")
    planned = json.loads(env.run("plan", f"--tasks={tasks}", "--json", "anywhere", timeout=120).out)
    assert planned["steps"][0]["where"] == "any: m1,m2"            # every machine matches: any of them
    none = env.run("run", f"--tasks={tasks}", "--wait", "nowhere", timeout=120)
    assert none.code == 2 and none.err.startswith("cmq: task nowhere: no machine matches --where 'cpus>=4096'")
    assert "cpus=" in none.err and "Traceback" not in none.err


def _opened(fifo) -> bool:
    """Open the FIFO ``fifo`` for writing and close it (its reader reads the end), when a
    reader waits on it."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    os.close(fd)
    return True


def test_a_step_cancelled_while_its_check_runs_does_not_run(env, tasks):
    workdir = env.workdir("m1")
    gate = workdir / "goal-gate"
    gate.unlink(missing_ok=True)
    os.mkfifo(gate)
    wf = env.run("run", f"--tasks={tasks}", "gated", timeout=60).out.strip()
    job = json.loads(env.run("show", "--json", wf, timeout=60).out)["steps"][0]["job"]
    wait_for(lambda: json.loads(env.run("status", "--json", job, timeout=60).out)[0]["state"] == "running",
             timeout=60, what="the step's check to start")
    assert env.run("cancel", wf, timeout=60).code == 0
    wait_for(lambda: _opened(gate), timeout=60, what="the check to read its gate")
    wait_for(lambda: json.loads(env.run("status", "--json", job, timeout=60).out)[0]["state"] == "cancelled",
             timeout=60, what="the step to end cancelled")
    assert not (workdir / "goal-gated-ran").exists()
