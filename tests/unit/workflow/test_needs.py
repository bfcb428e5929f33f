"""Prerequisites: closure, waves, order checks and cycles (pure)."""

from __future__ import annotations

import pytest

from cmqueue.core.errors import UsageError
from cmqueue.workflow.expr import parse
from cmqueue.workflow.needs import closure, expand, runs_before, waves
from cmqueue.workflow.tasks import TaskDef


def _tasks(**needs: list[str]) -> dict[str, TaskDef]:
    return {n: TaskDef(name=n, command="true", needs=tuple(v)) for n, v in needs.items()}


TASKS = _tasks(fetch=[], build=["fetch"], lint=["fetch"], test=["build"], report=["test", "lint"], solo=[])


def test_closure_puts_prerequisites_first_once_each():
    assert closure(["report"], TASKS) == ["fetch", "build", "test", "lint", "report"]


def test_waves_start_a_task_after_its_latest_prerequisite():
    assert waves(closure(["report"], TASKS), TASKS) == [["fetch"], ["build", "lint"], ["test"], ["report"]]


def test_a_target_expands_to_its_waves_and_independent_tasks_stay_apart():
    assert str(expand(parse("report"), TASKS)) == "fetch; build | lint; test; report"
    assert str(expand(parse("test | solo"), TASKS)) == "fetch | solo; build; test"


def test_an_expression_without_needs_is_left_as_it_is():
    tree = parse("solo; fetch")
    assert expand(tree, TASKS) is tree


def test_prerequisites_not_named_run_before_the_expression():
    assert str(expand(parse("build; solo"), TASKS)) == "fetch; build; solo"


def test_a_named_prerequisite_must_run_before_what_needs_it():
    assert str(expand(parse("fetch; build"), TASKS)) == "fetch; build"
    with pytest.raises(UsageError, match="task build needs fetch, but in 'build; fetch'"):
        expand(parse("build; fetch"), TASKS)
    with pytest.raises(UsageError, match="task build needs fetch"):
        expand(parse("fetch + build"), TASKS)


def test_runs_before_sees_only_the_first_run_of_a_name():
    tree = parse("(a; b) | (a; c)")
    assert runs_before(tree, "a", "b")
    assert not runs_before(tree, "a", "c")          # the second `a` is the first run, reused
    assert not runs_before(tree, "b", "a")


def test_cycles_and_unknown_prerequisites_are_named():
    with pytest.raises(UsageError, match="cycle: a → b → c → a"):
        closure(["a"], _tasks(a=["b"], b=["c"], c=["a"]))
    with pytest.raises(UsageError, match="cycle: a → a"):
        closure(["a"], _tasks(a=["a"]))
    with pytest.raises(UsageError, match="task a: needs nope, which is no task"):
        closure(["a"], _tasks(a=["nope"]))
