"""Workflow commands: run, plan, workflows, show, resume, retry."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.tree import Tree

from ..core.errors import JobFailedError
from ..workflow.goals import was_skipped
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
  cmq run [options] [--tasks=FILE] [--reduce=R] [--force=STEP]... [--force-all] [--wait] [--narrate]
          [--verbose] [--json] [--] EXPR

EXPR is an expression over task names, such as '(a | b | c); d; a + b + c + d': a, b and
c run in parallel, then d, then the four results are added (numbers add, text
concatenates, JSON lists extend, objects merge). Within one expression a name is one run
of its task. `;` binds loosest, then `|`, then `+`; parentheses group. A step that fails
suspends the workflow (later steps do not start); `cmq resume WF` goes on from there.

Tasks come from --tasks=FILE (a Python file whose functions return the shell
command to run; see cmqueue.workflow.tasks) and from the inventory's `tasks:` map.

A task that needs others (`needs: [fetch, build]`) pulls them in: `cmq run train` runs
fetch, then build, then train, each in a wave after its prerequisites. A task that says
when it is done (`creates:` files, `done_if:` a command on the machine that exits 0,
`inputs:` whose SHA-256s match an earlier success) is skipped when it is: its job
succeeds at once as "skipped: done" with the reason, and reuses the output of the
earlier success. A check that cannot run fails the step.

Options:
  --tasks=FILE   a Python file of tasks
  --reduce=R     what `+` uses: add, or any reducer of `cmq map` [default: add]
  --force=STEP   run STEP even when its check says it is done (repeatable)
  --force-all    run every step, whatever the checks say
  --wait         follow the steps, then print the workflow's value; exit 1 if it did not
                 succeed
  --narrate      follow the steps printing one line per step event (time, step,
                 machine, state, command or reason) instead of the progress view
  --verbose      with --narrate, also print each step's output, tagged step@machine
  --json         print JSON

Examples:
  cmq run --tasks=pipeline.py --wait '(fetch_a | fetch_b); merge'
  cmq run --tasks=t.py --wait '(a | b | c); d; a + b + c + d'
  cmq run --tasks=pipeline.py --narrate train
"""
    with open_cluster(args) as c:
        tasks = c.tasks(args["--tasks"])
        wfs = c.workflows
        force: set[str] | bool = True if args["--force-all"] else set(args["--force"] or [])
        plan = wfs.plan(args["EXPR"], tasks, reducer=args["--reduce"], source=args["--tasks"] or "", force=force)
        wf_id = wfs.start(plan)
        if not (args["--wait"] or args["--narrate"]):
            if args["--json"]:
                output.print_json({"workflow": wf_id, "steps": {n: s.spec.id for n, s in plan.steps.items()}})
            else:
                output.out.print(wf_id)
            return 0
        return _follow(c, wf_id, args["--json"], narrate=args["--narrate"], verbose=args["--verbose"])


def _follow(c: Any, wf_id: str, as_json: bool, narrate: bool = False, verbose: bool = False,
            sent: list[str] | None = None) -> int:
    """Wait for a workflow's steps with the progress view (or, ``narrate``, telling each
    event of the steps ``sent``: all of them when None), then print its value."""
    from .narrate import Narrator

    wfs = c.workflows
    wf = wfs.resolve(wf_id)
    if narrate and not as_json:
        teller = Narrator(c.store, {s["job"]: s["name"] for s in wf["steps"]}, verbose=verbose)
        if sent is not None:                 # a resume: the steps it reuses have told their story
            teller.told(c.store.get_many([s["job"] for s in wf["steps"] if s["name"] not in sent]))
        steps = wfs.wait(wf, on_update=teller.update)
    else:
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
  cmq plan [options] [--tasks=FILE] [--reduce=R] [--force=STEP]... [--force-all] [--no-checks]
           [--check-timeout=S] [--json] [--] EXPR

Prints the tree, the order in which steps start (steps on one line start together),
where each task may run, which names are reused (a name seen again is the same run;
`+` adds results that are already there), and the prerequisites `needs:` pulled in.

A step that says when it is done (creates:, done_if:, inputs:) has its check run now, on
a machine of its target (a job of its own; nothing else runs): the plan says "done" and
why, "would run" and why, or "check failed". The check is run again when the workflow
runs, just before the step, after the steps before it.

Tasks come from --tasks=FILE (a Python file whose functions return the shell
command to run; see cmqueue.workflow.tasks) and from the inventory's `tasks:` map.

Options:
  --tasks=FILE   a Python file of tasks
  --reduce=R     what `+` uses [default: add]
  --force=STEP   show STEP as run whatever its check says (repeatable)
  --force-all    show every step as run
  --no-checks    do not run the checks (no broker or machine needed)
  --check-timeout=S  how long to wait for the checks [default: 60]
  --json         print JSON
"""
    from ..workflow.expr import Name
    from ..workflow.plan import stages
    from .common import number_option

    with open_cluster(args, check_keys=False) as c:
        force: set[str] | bool = True if args["--force-all"] else set(args["--force"] or [])
        plan = c.workflows.plan(args["EXPR"], c.tasks(args["--tasks"]), reducer=args["--reduce"], force=force)
        order = stages(plan)
        verdicts = {} if args["--no-checks"] else c.workflows.checks(
            plan, timeout=number_option(args, "--check-timeout", float))
        if args["--json"]:
            view = plan_view(c, plan)
            for step in view["steps"]:
                if step["name"] in verdicts:
                    step["verdict"], step["why"] = verdicts[step["name"]]
            output.print_json(view)
            return 0
        shown = {"done": "[green]done[/]", "run": "[yellow]would run[/]", "error": "[red]check failed[/]",
                 "unknown": "[bright_black]check unknown[/]"}

        def label(node: Any, seen: set[str]) -> str:
            if isinstance(node, Name):
                step = plan.steps[node.name]
                again = node.name in seen
                seen.add(node.name)
                if again:
                    return f"[bold]{node.name}[/] [dim](reused: the run above)[/]"
                text = (f"[bold]{node.name}[/]  [dim]{_short(step.spec.command, 50)}[/]  "
                        f"on {where(c, step.spec)}")
                if node.name in verdicts:
                    verdict, why = verdicts[node.name]
                    text += f"  {shown[verdict]}" + (f" [dim]({escape(_short(why, 70))})[/]" if why else "")
                elif step.spec.params.get("forced"):
                    text += "  [yellow]would run[/] [dim](forced)[/]"
                return text
            kind = _kind(node)
            if kind:
                return kind
            step = plan.steps[str(node)]
            return f"[bold]+[/] {step.name}  [dim]{plan.reducer} of {', '.join(step.operands)}[/]"

        output.out.print(_tree(plan.tree, label, set()))
        output.out.print("order:")
        for i, group in enumerate(order, 1):
            output.out.print(f"  {i}. " + " | ".join(group), markup=False)
        if plan.asked != plan.expr:
            output.out.print(f"with what it needs: {plan.expr}", markup=False)
        ran = " (only the checks were run)" if verdicts else " (nothing was run)"
        output.out.print(f"result: {' , '.join(plan.final)}{ran}", markup=False)
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
  cmq show [options] [--json] [--narrate [--verbose]] WF

Options:
  --json      print JSON
  --narrate   tell the workflow's story from the history: one line per event of each of
              its jobs (runs that were resumed or retried too), oldest first
  --verbose   with --narrate, also print each step's output
"""
    from ..workflow.expr import Name, parse

    with open_cluster(args, check_keys=False) as c:
        wfs = c.workflows
        wf = wfs.resolve(args["WF"])
        steps = wfs.steps(wf)
        state = wfs.state(wf, steps)
        if args["--narrate"] and not args["--json"]:
            from .narrate import Narrator

            records = c.store.batch(wf["id"])
            Narrator(c.store, {r.id: r.spec.params.get("step", r.id) for r in records},
                     verbose=args["--verbose"]).replay(records)
            output.out.print(f"workflow {wf['id']}: {state}", markup=False)
            return 0
        if args["--json"]:
            output.print_json(summary(c, wf, steps, state))
            return 0
        by_name = {s.name: s for s in steps}

        def describe(step: Any) -> str:
            r = step.record
            if r is None:
                return output.state_text("queued")
            took = output.seconds((r.ended - r.started) if r.started and r.ended else None)
            if was_skipped(r.reason):
                return f"[green]skipped[/] on {r.machine or '-'}  [dim]{escape(_short(r.reason[9:], 90))}[/]"
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
  cmq resume [options] [--wait] [--narrate] [--verbose] [--json] WF

Works after the controller, the workers and Redis were restarted: the workflow and its
steps are in the history store. A step edited with `cmq edit` runs as edited.

Options:
  --wait      follow the steps, then print the workflow's value
  --narrate   follow the steps printing one line per step event
  --verbose   with --narrate, also print each step's output
  --json      print JSON
"""
    with open_cluster(args) as c:
        wf_id, sent = c.workflows.resume(args["WF"])
        if not (args["--wait"] or args["--narrate"]):
            if args["--json"]:
                output.print_json({"workflow": wf_id, "sent": sent})
            else:
                output.out.print(f"workflow {wf_id}: " + (f"running again {', '.join(sent)}" if sent
                                                          else "every step already succeeded"), markup=False)
            return 0
        return _follow(c, wf_id, args["--json"], narrate=args["--narrate"], verbose=args["--verbose"], sent=sent)


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


def cmd_edit(args: Args) -> int:
    """Change one step of a workflow before it runs again: its command, where it runs, or
its time limit.

Usage:
  cmq edit [options] [--command=CMD] [--on=MACHINE | --label=L] [--timeout=S] [--json] WF STEP

The workflow must not be running the step's siblings (a suspended workflow, one that
failed, or one that ended). The job that ran keeps the version it ran; the step's
next run (`cmq resume WF`, or `cmq retry WF STEP` for a step that succeeded) runs the
new one, and the step records each edit (`cmq show WF --json`: edits).

Options:
  --command=CMD   the step's new shell command
  --on=MACHINE    run it on this machine
  --label=L       run it on any machine with label L
  --timeout=S     its new time limit in seconds
  --json          print the workflow and what changed as JSON

Examples:
  cmq edit w-1234 train --command='python3 train.py --lr 0.01'
  cmq edit w-1234 train --label=gpu --timeout=7200 && cmq resume --narrate w-1234
"""
    from .common import number_option

    with open_cluster(args, check_keys=False) as c:
        wf, changed = c.workflows.edit(args["WF"], args["STEP"], command=args["--command"], on=args["--on"],
                                       label=args["--label"], timeout=number_option(args, "--timeout", float))
        if args["--json"]:
            output.print_json({"workflow": wf["id"], "step": args["STEP"], "changed": changed})
            return 0
        if not changed:
            output.out.print(f"workflow {wf['id']}: step {args['STEP']} already is as given; nothing changed",
                             markup=False)
            return 0
        for key, (before, after) in changed.items():
            output.out.print(f"workflow {wf['id']}: step {args['STEP']}: {key} {before!r} → {after!r}",
                             markup=False, highlight=False)
        output.out.print(f"`cmq resume {wf['id']}` runs it as edited", markup=False)
    return 0


COMMANDS: dict[str, Any] = {"run": cmd_run, "plan": cmd_plan, "workflows": cmd_workflows, "show": cmd_show,
                            "resume": cmd_resume, "retry": cmd_retry, "edit": cmd_edit}
