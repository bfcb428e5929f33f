"""Task definitions and workflow plans: pure, checked before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmqueue.config.inventory import parse as parse_inventory
from cmqueue.core.errors import ConfigError, UsageError
from cmqueue.workflow import plan as planning
from cmqueue.workflow.engine import workflow_state
from cmqueue.workflow.tasks import from_inventory, load_file

INV = parse_inventory("""
machines:
  m1: {labels: [cpu]}
  m2: {labels: [cpu]}
tasks:
  a: echo 1
  b: {command: [echo, "two words"], label: cpu, timeout: 5, retries: 1}
  c: {command: echo 3, on: m2}
  d: echo 4
""", Path("cmq.yaml"))


def test_tasks_file_decorated_plain_and_bad(tmp_path):
    f = tmp_path / "t.py"
    f.write_text("from cmqueue.workflow import task\n"
                 "@task(on='m1', timeout=3)\ndef x():\n    return 'echo x'\n"
                 "def helper():\n    return 'not a task: x is decorated'\n")
    tasks = load_file(f)
    assert list(tasks) == ["x"] and (tasks["x"].on, tasks["x"].timeout) == ("m1", 3)
    f.write_text("def y():\n    return ['printf', '%s', 'a b']\ndef _private():\n    return 1\n")
    assert load_file(f)["y"].command == "printf %s 'a b'"
    f.write_text("def z():\n    return None\n")
    with pytest.raises(UsageError, match=r"t.py: task z returned None \(NoneType\), not a command"):
        load_file(f)
    f.write_text("def z():\n    raise OSError('no data')\n")
    with pytest.raises(UsageError, match="t.py: task z raised OSError: no data"):
        load_file(f)
    with pytest.raises(UsageError, match="no such file"):
        load_file(tmp_path / "missing.py")


def test_inventory_tasks_are_checked():
    tasks = from_inventory(INV.tasks, INV.path)
    assert tasks["b"].command == "echo 'two words'" and tasks["b"].label == "cpu"
    for raw, message in [({"t": {"comand": "x"}}, "tasks.t.comand: unknown field"),
                         ({"t": {"command": ""}}, "tasks.t: command is ''"),
                         ({"t": {"command": "x", "timeout": -1}}, "tasks.t.timeout: must be a positive number"),
                         ({"t": 3}, "tasks.t: must be a command or a mapping"),
                         ({"t": {"command": "x", "creates": 3}}, "tasks.t.creates: must be a list of non-empty"),
                         ({"t": {"command": "x", "needs": ["a", ""]}}, "tasks.t.needs: must be a list of non-empty"),
                         ({"t": {"command": "x", "done_if": ""}}, "tasks.t.done_if: must be a non-empty string")]:
        with pytest.raises(ConfigError, match=message):
            from_inventory(raw, Path("cmq.yaml"))


def test_plan_of_the_example():
    tasks = from_inventory(INV.tasks, INV.path)
    plan = planning.build("(a | b | c); d; a + b + c + d", tasks, INV)
    assert list(plan.steps) == ["a", "b", "c", "d", "a + b + c + d"]
    total = plan.steps["a + b + c + d"]
    assert total.kind == "sum" and total.operands == ["a", "b", "c", "d"]
    assert total.spec.params["operands"] == {n: plan.steps[n].spec.id for n in "abcd"}
    assert plan.steps["b"].spec.target == "label:cpu" and plan.steps["c"].spec.target == "machine:m2"
    assert {s.spec.batch for s in plan.steps.values()} == {plan.id}
    assert planning.stages(plan) == [["a", "b", "c"], ["d"], ["a + b + c + d"]]
    assert planning.stages(plan, reuse={"a", "b", "c"}) == [["d"], ["a + b + c + d"]]
    assert plan.final == ["a + b + c + d"]
    assert planning.build("(a; b) | c", tasks, INV).final == ["b", "c"]
    with pytest.raises(UsageError, match="unknown task x; tasks: a, b, c, d"):
        planning.build("a; x", tasks, INV)


def test_workflow_states():
    assert workflow_state(["succeeded", "succeeded"]) == "succeeded"
    assert workflow_state(["succeeded", "running", "queued"]) == "running"
    assert workflow_state(["failed", "running"]) == "failing"
    assert workflow_state(["succeeded", "failed", "cancelled"]) == "suspended"


def test_a_step_carries_its_check_and_needs_pull_prerequisites_in():
    tasks = from_inventory({"fetch": {"command": "get", "creates": "data.csv"},
                            "train": {"command": "fit", "needs": "fetch", "inputs": ["data.csv"],
                                      "done_if": "test -s model.bin"}}, Path("cmq.yaml"))
    plan = planning.build("train", tasks, INV)
    assert plan.expr == "fetch; train" and plan.asked == "train" and plan.final == ["train"]
    assert plan.steps["fetch"].spec.params["check"] == {"creates": ["data.csv"]}
    assert plan.steps["train"].spec.params["check"] == {"inputs": ["data.csv"], "done_if": "test -s model.bin"}
    assert planning.stages(plan) == [["fetch"], ["train"]]
