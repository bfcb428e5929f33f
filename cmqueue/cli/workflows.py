"""Workflow commands: run, plan, workflows, show, resume, retry."""

from __future__ import annotations

from typing import Any

from rich.tree import Tree

from ..core.errors import JobFailedError
from ..workflow.views import plan_view, summary, where
from . import output
from .common import Args, open_cluster


def _short(text: Any, width: int = 40) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= width else s[: width - 1] + "…"


def _tree(node: Any, label: Any, seen: set[str]) -> Tree:
    from ..workflow.expr import Name, Par, Seq

    tree = Tree(label(node, seen))
    if not isinstance(node, Name):
        for item in node.items:
            tree.add(_tree(item, label, seen))
        if not isinstance(node, (Seq, Par)):
            seen.add(str(node))
    return tree


def _kind(node: Any) -> str:
    from ..workflow.expr import Par, Seq

    return "in sequence (;)" if isinstance(node, Seq) else "in parallel (|)" if isinstance(node, Par) else ""


def cmd_run(args: Args) -> int:
    """Run a workflow: `|` in parallel, `;` in sequence, `+` adds results.

Usage:
  cmq run [options] [--tasks=FILE] [--reduce=R] [--wait] [--json] [--] EXPR

EXPR is an expression over task names, such as '(a | b | c); d; a + b + c + d': a, b and
c run in parallel, then d, then the four results are added (numbers add, text
concatenates, JSON lists extend, objects merge). Within one expression a name is one run
of its task. `;` binds loosest, then `|`, then `+`; parentheses group. A step that fails
suspends the workflow (later steps do not start); `cmq resume WF` goes on from there.

Tasks come from --tasks=FILE (a Python file whose functions return the shell
command to run; see cmqueue.workflow.tasks) and from the inventory's `tasks:` map.

Options:
  --tasks=FILE   a Python file of tasks
  --reduce=R     what `+` uses: add, or any reducer of `cmq map` [default: add]
  --wait         follow the steps, then print the workflow's value; exit 1 if it did not
                 succeed
  --json         print JSON

Examples:
  cmq run --tasks=pipeline.py --wait '(fetch_a | fetch_b); merge'
  cmq run --tasks=t.py --wait '(a | b | c); d; a + b + c + d'
"""
    with open_cluster(args) as c:
        tasks = c.tasks(args["--tasks"])
        wfs = c.workflows
        plan = wfs.plan(args["EXPR"], tasks, reducer=args["--reduce"], source=args["--tasks"] or "")
        wf_id = wfs.start(plan)
        if not args["--wait"]:
            if args["--json"]:
                output.print_json({"workflow": wf_id, "steps": {n: s.spec.id for n, s in plan.steps.items()}})
            else:
                output.out.print(wf_id)
            return 0
        return _follow(c, wf_id, args["--json"])


def _follow(c: Any, wf_id: str, as_json: bool) -> int:
    wfs = c.workflows
    wf = wfs.resolve(wf_id)
    view = output.ProgressView(len(wf["steps"]), enabled=not as_json)
    with view:
        steps = wfs.wait(wf, on_update=view.update)
    state = wfs.state(wf, steps)
    value = wfs.value(wf, steps) if state == "succeeded" else None
    if as_json:
        output.print_json(summary(c, wf, steps, state))
    elif state == "succeeded":
        from ..submit.reducers import render

        text = render(value)
        output.out.print(text.rstrip("\n"), markup=False, highlight=False)
    if state != "succeeded":
        bad = [s.record for s in steps if s.record and s.state != "succeeded"]
        if not as_json:
            output.failures(bad)
        raise JobFailedError(f"workflow {wf_id} {state}; `cmq resume {wf_id}` runs what did not succeed", bad)
    return 0


def cmd_plan(args: Args) -> int:
    """Show what a workflow would do, without running anything.

Usage:
  cmq plan [options] [--tasks=FILE] [--reduce=R] [--json] [--] EXPR

Prints the tree, the order in which steps start (steps on one line start together),
where each task may run, and which names are reused (a name seen again is the same run;
`+` adds results that are already there).

Tasks come from --tasks=FILE (a Python file whose functions return the shell
command to run; see cmqueue.workflow.tasks) and from the inventory's `tasks:` map.

Options:
  --tasks=FILE   a Python file of tasks
  --reduce=R     what `+` uses [default: add]
  --json         print JSON
"""
    from ..workflow.expr import Name
    from ..workflow.plan import stages

    with open_cluster(args, check_keys=False) as c:
        plan = c.workflows.plan(args["EXPR"], c.tasks(args["--tasks"]), reducer=args["--reduce"])
        order = stages(plan)
        if args["--json"]:
            output.print_json(plan_view(c, plan))
            return 0

        def label(node: Any, seen: set[str]) -> str:
            if isinstance(node, Name):
                step = plan.steps[node.name]
                again = node.name in seen
                seen.add(node.name)
                if again:
                    return f"[bold]{node.name}[/] [dim](reused: the run above)[/]"
                return (f"[bold]{node.name}[/]  [dim]{_short(step.spec.command, 50)}[/]  "
                        f"on {where(c, step.spec)}")
            kind = _kind(node)
            if kind:
                return kind
            step = plan.steps[str(node)]
            return f"[bold]+[/] {step.name}  [dim]{plan.reducer} of {', '.join(step.operands)}[/]"

        output.out.print(_tree(plan.tree, label, set()))
        output.out.print("order:")
        for i, group in enumerate(order, 1):
            output.out.print(f"  {i}. " + " | ".join(group), markup=False)
        output.out.print(f"result: {' , '.join(plan.final)}  (nothing was run)", markup=False)
    return 0


def cmd_workflows(args: Args) -> int:
    """List workflows from the history, newest last.

Usage:
  cmq workflows [options] [--last=N] [--json]

Options:
  --last=N   only the newest N [default: 20]
  --json     print JSON
"""
    from ..workflow.views import rows as workflow_rows
    from .common import number_option

    with open_cluster(args, check_keys=False) as c:
        rows = workflow_rows(c, number_option(args, "--last", int))
        if args["--json"]:
            output.print_json(rows)
            return 0
        t = output.Table(show_edge=False, header_style="bold")
        for col in ("workflow", "state", "steps", "created", "expression"):
            t.add_column(col, overflow="fold")
        for r in rows:
            t.add_row(r["workflow"], output.state_text(r["state"]), f"{r['succeeded']}/{r['steps']}",
                      output.when(r["created"]), r["expr"])
        output.out.print(t if rows else "no workflows yet")
    return 0


def cmd_show(args: Args) -> int:
    """Show a workflow: the tree with each step's state, machine, duration and result.

Usage:
  cmq show [options] [--json] WF

Options:
  --json   print JSON
"""
    from ..workflow.expr import Name, parse

    with open_cluster(args, check_keys=False) as c:
        wfs = c.workflows
        wf = wfs.resolve(args["WF"])
        steps = wfs.steps(wf)
        state = wfs.state(wf, steps)
        if args["--json"]:
            output.print_json(summary(c, wf, steps, state))
            return 0
        by_name = {s.name: s for s in steps}

        def describe(step: Any) -> str:
            r = step.record
            if r is None:
                return output.state_text("queued")
            took = output.seconds((r.ended - r.started) if r.started and r.ended else None)
            result = ""
            if r.result is not None and step.state == "succeeded":
                result = " → " + _short(r.result.data.get("value", r.result.stdout))
            elif r.reason:
                result = f"  [dim]{_short(r.reason, 70)}[/]"
            return f"{output.state_text(step.state)} on {r.machine or '-'} {took}{result}"

        def label(node: Any, seen: set[str]) -> str:
            if isinstance(node, Name):
                again = node.name in seen
                seen.add(node.name)
                return f"[bold]{node.name}[/] " + ("[dim](the run above)[/]" if again
                                                    else describe(by_name[node.name]))
            kind = _kind(node)
            return kind or f"[bold]+[/] {node}: " + describe(by_name[str(node)])

        output.out.print(f"workflow {wf['id']}: {output.state_text(state)}  {wf['expr']}", highlight=False)
        output.out.print(_tree(parse(wf["expr"]), label, set()))
        if state == "succeeded":
            from ..submit.reducers import render

            output.out.print("value: " + render(wfs.value(wf, steps)).rstrip("\n"), markup=False)
        elif state == "suspended":
            output.out.print(f"`cmq resume {wf['id']}` runs the steps that did not succeed", markup=False)
    return 0


def cmd_resume(args: Args) -> int:
    """Go on with a suspended workflow: run its failed and unfinished steps, reuse the
results of the succeeded ones.

Usage:
  cmq resume [options] [--wait] [--json] WF

Works after the controller, the workers and Redis were restarted: the workflow and its
steps are in the history store.

Options:
  --wait   follow the steps, then print the workflow's value
  --json   print JSON
"""
    with open_cluster(args) as c:
        wf_id, sent = c.workflows.resume(args["WF"])
        if not args["--wait"]:
            if args["--json"]:
                output.print_json({"workflow": wf_id, "sent": sent})
            else:
                output.out.print(f"workflow {wf_id}: " + (f"running again {', '.join(sent)}" if sent
                                                          else "every step already succeeded"), markup=False)
            return 0
        return _follow(c, wf_id, args["--json"])


def cmd_retry(args: Args) -> int:
    """Run one step of a workflow again (whatever its state), and nothing else.

Usage:
  cmq retry [options] [--wait] [--json] WF STEP

Options:
  --wait   follow the step
  --json   print JSON
"""
    with open_cluster(args) as c:
        wf_id, sent = c.workflows.resume(args["WF"], only=args["STEP"])
        if not args["--wait"]:
            output.out.print(f"workflow {wf_id}: running {', '.join(sent)} again", markup=False)
            return 0
        return _follow(c, wf_id, args["--json"])


COMMANDS: dict[str, Any] = {"run": cmd_run, "plan": cmd_plan, "workflows": cmd_workflows, "show": cmd_show,
                            "resume": cmd_resume, "retry": cmd_retry}
