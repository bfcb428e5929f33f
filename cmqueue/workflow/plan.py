"""From an expression and task definitions to steps (each a job spec), and from steps to
Celery canvas: ``|`` is a group, ``;`` a chain, ``+`` a group of what has not run yet
followed by a reduce (Celery turns a group followed by a task into a chord).

A step is one run of one task, or one ``+``. Steps that already succeeded (a resumed
workflow) are left out of the canvas; their results are handed to the ``+`` that needs
them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from ..config.inventory import Inventory
from ..core.errors import UsageError
from ..core.models import JobSpec, new_id
from ..queue import routing
from .expr import Name, Node, Par, Seq, Sum, names, parse
from .needs import expand
from .tasks import TaskDef


@dataclass
class Step:
    """One step: a task's run (``kind='task'``) or a ``+`` (``kind='sum'``)."""

    name: str
    kind: str
    seq: int
    spec: JobSpec
    operands: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """What the history store keeps of it."""
        return {"name": self.name, "kind": self.kind, "seq": self.seq, "spec": self.spec.to_dict(),
                "operands": self.operands, "job": self.spec.id}


@dataclass
class Plan:
    """A workflow's tree and steps, in the order they first appear."""

    id: str
    expr: str
    tree: Node
    steps: dict[str, Step]
    final: list[str]
    reducer: str = "add"
    source: str = ""
    asked: str = ""

    def record(self) -> dict[str, Any]:
        """The workflow row of the history store (``expr``: what runs, with the
        prerequisites that ``needs:`` pulled in)."""
        return {"id": self.id, "expr": self.expr, "source": self.source, "created": time.time(),
                "reducer": self.reducer, "final": self.final}


def operands(node: Node) -> list[str]:
    """The steps whose results ``node`` stands for: a name its run, a sum its ``+`` step,
    a sequence its last item, a parallel group all of its items."""
    if isinstance(node, Name):
        return [node.name]
    if isinstance(node, Sum):
        return [str(node)]
    if isinstance(node, Seq):
        return operands(node.items[-1])
    return [s for i in node.items for s in operands(i)]


def _task_spec(t: TaskDef, wf: str, inventory: Inventory) -> JobSpec:
    from ..submit.specs import build_specs, placement

    where = placement(inventory, on=t.on, label=t.label)
    if len(where.machines) > 1:
        raise UsageError(f"task {t.name}: on={t.on} names {len(where.machines)} machines; a step runs once "
                         "(give the machines a label)")
    _, (spec,) = build_specs(t.command, where, timeout=t.timeout, retries=t.retries, puts=t.puts, gets=t.gets)
    spec.batch = wf
    spec.params = {**spec.params, "workflow": wf, "step": t.name}
    if t.check():
        spec.params["check"] = t.check()
    return spec


def sum_spec(wf: str, name: str, reducer: str, operand_jobs: dict[str, str],
             known: dict[str, dict] | None = None, cwd: str | None = None) -> JobSpec:
    """The job spec of a ``+`` step."""
    return JobSpec(id=new_id("r"), command=name, target="any", queue=routing.queue_for_target("any"), batch=wf,
                   kind="reduce", params={"reducer": reducer, "workflow": wf, "step": name,
                                          "operands": operand_jobs, "known": known or {},
                                          "cwd": cwd or os.getcwd()})


def build(text: str, tasks: dict[str, TaskDef], inventory: Inventory, reducer: str = "add",
          source: str = "") -> Plan:
    """Parse ``text`` and make a step (with a job spec) for every task run and every ``+``.
    Unknown task names are listed with the ones that exist; nothing is sent."""
    from ..submit import reducers

    asked = parse(text)
    unknown = [n for n in names(asked) if n not in tasks]
    if unknown:
        known = ", ".join(sorted(tasks)) or "(none: give --tasks=FILE or a tasks: map in the inventory)"
        raise UsageError(f"unknown task{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; tasks: {known}")
    reducers.check(reducer)
    tree = expand(asked, tasks)
    wf = new_id("w")
    steps: dict[str, Step] = {}

    def walk(node: Node) -> None:
        if isinstance(node, Name):
            if node.name not in steps:
                steps[node.name] = Step(node.name, "task", len(steps), _task_spec(tasks[node.name], wf, inventory))
            return
        for item in node.items:
            walk(item)
        if isinstance(node, Sum) and str(node) not in steps:
            ops = [s for i in node.items for s in operands(i)]
            steps[str(node)] = Step(str(node), "sum", len(steps),
                                    sum_spec(wf, str(node), reducer, {o: steps[o].spec.id for o in ops}), ops)

    walk(tree)
    return Plan(id=wf, expr=str(tree) if tree is not asked else text, tree=tree, steps=steps,
                final=operands(asked), reducer=reducer, source=source, asked=text)


def stages(plan: Plan, reuse: set[str] = frozenset()) -> list[list[str]]:  # type: ignore[assignment]
    """The order steps start in: lists of steps that start together (for `cmq plan`)."""
    out: list[list[str]] = []
    seen = set(reuse)

    def walk(node: Node, depth: int) -> int:
        """Lay ``node`` out from stage ``depth``; returns the stage after it."""
        if isinstance(node, Name):
            if node.name in seen:
                return depth
            seen.add(node.name)
            while len(out) <= depth:
                out.append([])
            out[depth].append(node.name)
            return depth + 1
        if isinstance(node, Seq):
            for item in node.items:
                depth = walk(item, depth)
            return depth
        ends = [walk(item, depth) for item in node.items]
        end = max([depth, *ends])
        if isinstance(node, Sum) and str(node) not in seen:
            seen.add(str(node))
            while len(out) <= end:
                out.append([])
            out[end].append(str(node))
            end += 1
        return end

    walk(plan.tree, 0)
    return [s for s in out if s]


def canvas(plan: Plan, app: Any, reuse: set[str] = frozenset()) -> Any:  # type: ignore[assignment]
    """The Celery signature that runs every step not in ``reuse`` in the tree's order
    (None when nothing is left to run)."""
    from celery import chain, group

    run_task = app.tasks["cmq.run"]
    reduce_task = app.tasks["cmq.reduce"]
    seen = set(reuse)

    def sig_of(step: Step) -> Any:
        s = step.spec
        if step.kind == "sum":
            return reduce_task.si([], spec=s.to_dict()).set(task_id=s.id, queue=s.queue, routing_key=s.queue)
        return run_task.si(spec=s.to_dict()).set(task_id=s.id, queue=s.queue, routing_key=s.queue)

    def combine(parts: list[Any], how: Any) -> Any:
        parts = [p for p in parts if p is not None]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else how(*parts) if how is chain else how(parts)

    def walk(node: Node) -> Any:
        if isinstance(node, Name):
            if node.name in seen:
                return None
            seen.add(node.name)
            return sig_of(plan.steps[node.name])
        if isinstance(node, Seq):
            return combine([walk(i) for i in node.items], chain)
        runs = combine([walk(i) for i in node.items], group)
        if isinstance(node, Par) or str(node) in seen:
            return runs
        seen.add(str(node))
        add = sig_of(plan.steps[str(node)])
        return add if runs is None else chain(runs, add)

    return walk(plan.tree)
