"""The commands about jobs: `cmq submit`, `status`, `jobs`, `logs`, `wait`, `cancel`. Each
docstring is the command's usage text."""

from __future__ import annotations

import sys
from collections.abc import Callable

from ..core.errors import UsageError
from ..core.models import JobStatus
from . import output
from .common import Args, number_option, open_cluster, staging_options
from .follow import wait_and_report
from .parse import help_hint


def cmd_submit(args: Args) -> int:
    """Submit jobs.

Usage:
  cmq submit [options] [--env=K=V]... [--put=LOCAL]... [--get=REMOTE]... COMMAND...

COMMAND's words are joined with spaces and run by the shell on the machine, in its
workdir (with --put/--get/--keep: in a directory of its own, <workdir>/jobs/<id>/,
removed afterwards unless --keep). After COMMAND, `::: ARG...` (or --each=FILE) makes one job per argument: {} is
replaced by the argument, shell-quoted; {#} by the job number; {.} {/} {//} {/.} as in
GNU parallel. Without a {} the argument is appended. Options go before COMMAND.

Options:
  --on=MACHINES   one job on each of these machines (a hostlist: node[1-3],gpu1)
  --label=L       on any one machine with label L (whichever frees a slot first)
  --all           one job on every enabled machine
  --where=EXPR    only machines whose facts match EXPR (`cmq machines facts`), such as
                  'mem_gb>=8 and os==debian' (== != < <= > >=, and, or, not, parentheses;
                  facts older than settings.facts_max_age are gathered again first). With
                  --on/--label/--all it filters those machines; alone, the jobs go to any
                  machine when all match, to a label when its machines match, else they are
                  spread over the matching machines, each pinned to one in turn. Says which
                  matched on stderr; none: nothing runs, exit 2, and it says why
  --each=FILE     one job per line of FILE ('-' reads standard input)
  --timeout=S     kill the job (its whole process tree) after S seconds
  --retries=N     run a failed job again, up to N more times [default: 0]
  --env=K=V       set a variable in the job's environment (repeatable)
  --put=LOCAL     stage LOCAL[:REMOTE] (a file or tree) into the job's directory before
                  it runs, through the machine's input cache (repeatable; {} etc. allowed)
  --get=REMOTE    fetch REMOTE[:LOCAL] from the job's directory after it ends (default
                  LOCAL: RESULTS/<job>/REMOTE; repeatable)
  --results=DIR   where fetched outputs go [default: cmq-results]
  --keep          keep the job's directory on the machine
  --wait          wait for the jobs with a progress view, then print their outputs
                  (several jobs: each line tagged with its machine, as clush does);
                  exit 1 if any failed
  -b --gather     with --wait, print identical outputs once, under the folded list of
                  machines that printed them (node[01-16] (16)), as clush -b does
  --cancel-on-interrupt  with --wait, a Ctrl-C cancels the jobs (without it, a Ctrl-C
                  stops waiting and says how to wait again or cancel; a second
                  Ctrl-C within 3 s cancels them)
  --json          print the batch and job ids (with --wait: the results) as JSON

Examples:
  cmq submit --all uname -r
  cmq submit --label=gpu --timeout=3600 --wait ./train.sh
  cmq submit --all --wait -b 'uname -r'
  cmq submit --where='mem_gb>=8 and os==debian' --wait ./train.sh
  cmq submit --wait --put={} --get={}.gz 'gzip -9c {} > {}.gz' ::: a.txt b.txt c.txt
  cmq submit --each=hosts.txt 'ping -c1 {}'
  cmq submit --put=report.py --put=data.csv --get=report.pdf --wait 'python3 report.py data.csv'
  cmq submit --on=node01 -- ls --all        # words after -- all belong to the command
"""
    from ..submit.specs import build_specs, parse_env, placement, read_each, summary

    words = args["COMMAND"]
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise UsageError(f"no COMMAND given; {help_hint('submit')}")
    command = " ".join(words)
    after = args[":::"]
    if after is not None and args["--each"]:
        raise UsageError("use either ::: ARG... or --each=FILE, not both")
    arguments = after if after is not None else (read_each(args["--each"]) if args["--each"] else None)
    retries = number_option(args, "--retries", int)
    c = open_cluster(args)
    with c:
        if args["--where"] is not None:
            from .facts import where_placement

            where = where_placement(c, args)
        else:
            where = placement(c.settings.inventory, on=args["--on"], label=args["--label"], everywhere=args["--all"])
        _, specs = build_specs(command, where, args=arguments, timeout=number_option(args, "--timeout"),
                               retries=retries, env=parse_env(args["--env"]), **staging_options(args))
        c.send_specs(specs)
        if not args["--wait"]:
            if args["--json"]:
                output.print_json(summary(specs))
            else:
                batch = specs[0].batch
                if len(specs) == 1:
                    output.out.print(specs[0].id)
                else:
                    output.out.print(f"batch {batch}: {len(specs)} jobs "
                                     f"({specs[0].id} … {specs[-1].id})")
            return 0
        return wait_and_report(c, [s.id for s in specs], as_json=args["--json"], gather=args["--gather"],
                                ref=specs[0].batch if len(specs) > 1 else specs[0].id,
                                cancel_on_interrupt=args["--cancel-on-interrupt"])


def cmd_wait(args: Args) -> int:
    """Wait for jobs (ids, batch ids or unique prefixes) with a progress view.

Usage:
  cmq wait [options] [--timeout=S] [--json] [--gather] [--cancel-on-interrupt] JOB...

Options:
  --timeout=S   give up after S seconds (exit 1)
  -b --gather   print identical outputs once, under the folded list of their machines
  --json        print the results as JSON
  --cancel-on-interrupt  a Ctrl-C cancels the jobs (without it, a Ctrl-C stops waiting;
                a second Ctrl-C within 3 s cancels them)

Prints the jobs' outputs as `cmq submit --wait` does. Exits 1 if any job did not succeed.
"""
    with open_cluster(args, check_keys=False) as c:
        records = c.status(args["JOB"])
        return wait_and_report(c, [r.id for r in records], as_json=args["--json"],
                                timeout=number_option(args, "--timeout"), gather=args["--gather"],
                                ref=" ".join(args["JOB"]), cancel_on_interrupt=args["--cancel-on-interrupt"])


def cmd_status(args: Args) -> int:
    """Show the state of jobs.

Usage:
  cmq status [options] [--json] [JOB...]

Options:
  --json   print JSON

JOB is a job id, a batch id or a unique prefix of an id. Without JOB: the jobs that are
not finished, and a count of all jobs by state.
"""
    with open_cluster(args, check_keys=False, listing=True) as c:
        if args["JOB"]:
            records = c.status(args["JOB"])
        else:
            c.refresh()
            records = sorted((r for s in JobStatus if not s.final for r in c.store.jobs(state=s)),
                             key=lambda r: r.spec.submitted)
            c.explain_waiting(records)
        if args["--json"]:
            output.print_json([r.to_dict() for r in records])
            return 0
        if records:
            output.print_jobs(records)
            _print_values(records)
        if not args["JOB"]:
            counts = c.store.counts()
            output.line("  ".join(f"{output.state_text(s)}: {n}" for s, n in sorted(counts.items()))
                        or "no jobs yet")
    return 0


def _print_values(records) -> None:
    """The value of each reduce (a map's, a workflow's `+`) among ``records``."""
    from ..submit.reducers import render

    for r in records:
        if r.result is not None and "value" in r.result.data and r.state == JobStatus.SUCCEEDED:
            text = render(r.result.data["value"])
            sep = "\n" if "\n" in text.rstrip("\n") else " "
            output.out.print(f"{r.id} value:{sep}{text.rstrip()}", markup=False, highlight=False)


def cmd_jobs(args: Args) -> int:
    """List jobs from the history, newest last.

Usage:
  cmq jobs [options] [--state=S] [--last=N] [--json]

Options:
  --state=S   only jobs in state S (queued, running, retrying, succeeded, failed,
              cancelled, lost)
  --last=N    only the newest N jobs [default: 20]
  --json      print JSON
"""
    state = None
    if args["--state"]:
        try:
            state = JobStatus(args["--state"])
        except ValueError:
            raise UsageError(f"--state={args['--state']}: not a state "
                             f"({', '.join(s.value for s in JobStatus)})") from None
    last = number_option(args, "--last", int)
    with open_cluster(args, check_keys=False, listing=True) as c:
        c.refresh()
        records = c.store.jobs(state=state, last=last)
        c.explain_waiting(records)
        if args["--json"]:
            output.print_json([r.to_dict() for r in records])
        else:
            output.print_jobs(records) if records else output.line("no jobs")
    return 0


def cmd_logs(args: Args) -> int:
    """Print a job's output (stdout, or stderr with --stderr).

Usage:
  cmq logs [options] [--stderr] JOB

Options:
  --stderr   print standard error instead of standard output

The history keeps the last part of each stream (settings.output_cap bytes); the full
output stays in the worker's log directory and is printed from there when it is on this
machine.
"""
    from ..machine.joblog import full_log

    with open_cluster(args, check_keys=False, listing=True) as c:
        (rec,) = c.status([args["JOB"]]) if args["JOB"] else []
        stream = "stderr" if args["--stderr"] else "stdout"
        res = rec.result
        if res is None:
            output.err.print(f"job {rec.id} is {rec.state.value}: no output yet"
                             + (f" ({rec.reason})" if rec.reason else ""), markup=False)
            return 0 if not rec.state.final else 1
        text = getattr(res, stream)
        truncated = getattr(res, f"{stream}_truncated")
        log = getattr(res, f"{stream}_log")
        whole = full_log(res, stream)
        if whole is not None:
            with open(whole, "rb") as f:
                while chunk := f.read(1 << 20):
                    sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            return 0
        sys.stdout.write(text)
        sys.stdout.flush()
        if truncated:
            output.err.print(f"cmq: output truncated to its last {len(text.encode())} bytes; "
                             f"full log on {res.log_host}:{log}", markup=False)
    return 0


def cmd_cancel(args: Args) -> int:
    """Cancel jobs or workflows: queued jobs never start, running ones are killed on their
machine (the whole process tree). A workflow is suspended and its unfinished steps
cancelled (`cmq resume` goes on later).

Usage:
  cmq cancel [options] [--json] JOB...

Options:
  --json   print the jobs' states after cancelling as JSON
"""
    from ..core.errors import UnknownJobError

    with open_cluster(args, check_keys=False) as c:
        jobs: list[str] = []
        for ref in args["JOB"]:
            try:
                wf = c.workflows.resolve(ref)
            except UnknownJobError:
                jobs.append(ref)                       # not a workflow: jobs (or the error)
                continue
            ended = c.workflows.state(wf)
            if ended in ("succeeded", "suspended"):
                output.err.print(f"workflow {wf['id']} already ended ({ended}): nothing to cancel", markup=False)
                continue
            c.workflows.cancel(wf["id"])
            output.err.print(f"workflow {wf['id']} suspended; its unfinished steps are cancelled", markup=False)
            jobs += [s["job"] for s in wf["steps"]]
        records = c.cancel(jobs)
        if args["--json"]:
            output.print_json([r.to_dict() for r in records])
        else:
            output.print_jobs(records)
    return 0


COMMANDS: dict[str, Callable[[Args], int]] = {
    "submit": cmd_submit, "status": cmd_status, "jobs": cmd_jobs, "logs": cmd_logs, "wait": cmd_wait,
    "cancel": cmd_cancel,
}
