"""Workflows as plain data, for `--json` output and the API alike: a workflow with its
steps and value, its tree, a plan, the list of workflows."""

from __future__ import annotations

from typing import Any

from .goals import was_skipped


def where(c: Any, spec: Any) -> str:
    """Where a step's job may run, in words (``node1``, ``label gpu: g1,g2``, ``any: ...``)."""
    inv = c.settings.inventory
    kind, _, name = spec.target.partition(":")
    if kind == "machine":
        return name
    if kind == "label":
        return f"label {name}: " + ",".join(inv.labels.get(name, []))
    return "any: " + ",".join(m.name for m in inv.enabled())


def tree(node: Any) -> dict[str, Any]:
    """An expression tree as nested dicts: ``{"step": name}`` for a task, else
    ``{"kind": "seq"|"par"|"sum", "step": name of a sum, "items": [...]}``."""
    from .expr import Name, Par, Seq

    if isinstance(node, Name):
        return {"kind": "task", "step": node.name}
    kind = "seq" if isinstance(node, Seq) else "par" if isinstance(node, Par) else "sum"
    out: dict[str, Any] = {"kind": kind, "items": [tree(item) for item in node.items]}
    if kind == "sum":
        out["step"] = str(node)
    return out


def _command(step: Any) -> str | None:
    """A task step's command: as its spec says (edited, when it was), else as its job ran."""
    if step.kind != "task":
        return None
    if step.spec and step.spec.get("command"):
        return step.spec["command"]
    return step.record.spec.command if step.record else None


def summary(c: Any, wf: dict, steps: list[Any], state: str) -> dict[str, Any]:
    """A workflow, its state and value, and each step's job, machine, times and result."""
    from .expr import parse

    wfs = c.workflows
    return {
        "workflow": wf["id"], "expr": wf["expr"], "state": state, "created": wf.get("created"),
        "value": wfs.value(wf, steps) if state == "succeeded" else None,
        "tree": tree(parse(wf["expr"])),
        "steps": [{"name": s.name, "kind": s.kind, "state": s.state, "job": s.record.id if s.record else None,
                   "command": _command(s),
                   "edits": (s.spec or {}).get("params", {}).get("edits", []),
                   "machine": s.record.machine if s.record else None,
                   "exit_code": s.record.exit_code if s.record else None,
                   "started": s.record.started if s.record else None, "ended": s.record.ended if s.record else None,
                   "reason": s.record.reason if s.record else "",
                   "skipped": bool(s.record and was_skipped(s.record.reason)),
                   "result": (s.record.result.data.get("value", s.record.result.stdout)
                              if s.record and s.record.result else None)} for s in steps],
    }


def plan_view(c: Any, plan: Any) -> dict[str, Any]:
    """What a workflow would do: its tree, the order steps start in, each step's command
    and where it may run."""
    from .plan import stages

    return {"expr": str(plan.tree), "order": stages(plan), "final": plan.final, "tree": tree(plan.tree),
            "asked": plan.asked or plan.expr,
            "steps": [{"name": s.name, "kind": s.kind, "command": s.spec.command,
                       "where": where(c, s.spec) if s.kind == "task" else "any",
                       "operands": s.operands, "forced": bool(s.spec.params.get("forced")),
                       "check": {k: v for k, v in (s.spec.params.get("check") or {}).items() if k != "earlier"}}
                      for s in plan.steps.values()]}


def rows(c: Any, last: int | None) -> list[dict[str, Any]]:
    """The newest ``last`` workflows (oldest first): id, state, expression, steps done."""
    wfs = c.workflows
    out = []
    for w in c.store.workflows(last=last):
        wf = c.store.workflow(w["id"])
        steps = wfs.steps(wf)
        out.append({"workflow": w["id"], "state": wfs.state(wf, steps), "expr": w["expr"],
                    "steps": len(steps), "succeeded": sum(s.state == "succeeded" for s in steps),
                    "created": w["created"]})
    return out
