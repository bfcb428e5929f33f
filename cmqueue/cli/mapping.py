"""`cmq map`: one job per argument, then a reduce of their outputs."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.live import Live
from rich.text import Text

from ..core.errors import JobFailedError, UsageError
from ..core.models import JobRecord, JobStatus
from . import output
from .common import Args, number_option, open_cluster, staging_options
from .follow import stop_waiting
from .parse import help_hint

#: Seconds between two recomputations of the partial value on screen.
PARTIAL_INTERVAL = 0.3


def _outcome(r: JobRecord) -> dict[str, Any]:
    res = r.result
    return {"job": r.id, "state": r.state.value, "machine": r.machine, "exit_code": r.exit_code,
            "stdout": res.stdout if res else "", "stdout_truncated": bool(res and res.stdout_truncated),
            "reason": r.reason, "started": r.started, "ended": r.ended}


class PartialView:
    """One live line: members done/failed/total and the reduce of what has arrived so far."""

    def __init__(self, reducer: str, members: list[str], cwd: str, enabled: bool) -> None:
        self.reducer = reducer
        self.members = members
        self.cwd = cwd
        self.live = Live(Text(""), console=output.err, refresh_per_second=8, transient=True) if enabled else None
        self._last = 0.0
        self.partial = ""

    def __enter__(self) -> PartialView:
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.__exit__(*exc)

    def update(self, records: list[JobRecord]) -> None:
        """Recompute the counts and (at most every PARTIAL_INTERVAL) the partial value."""
        if not self.live:
            return
        from ..submit import reducers

        by_id = {r.id: r for r in records}
        done = [by_id[i] for i in self.members if i in by_id and by_id[i].state.final]
        good = [r for r in done if r.state == JobStatus.SUCCEEDED]
        now = time.monotonic()
        if now - self._last >= PARTIAL_INTERVAL or len(done) == len(self.members):
            self._last = now
            try:
                value = reducers.apply(self.reducer, [_outcome(r) for r in good], self.cwd)
                self.partial = " ".join(reducers.render(value).split())
            except Exception as e:  # noqa: BLE001 - the live line shows the error, the reduce reports it
                self.partial = f"(error: {e})"
            if len(self.partial) > 60:
                self.partial = self.partial[:59] + "…"
        line = Text.assemble(("map ", "bold"), f"{len(done)}/{len(self.members)} done",
                             (f"  {len(done) - len(good)} failed" if len(done) > len(good) else "", "red"),
                             f"   {self.reducer} so far: ", (self.partial, "cyan"))
        self.live.update(line)


def cmd_map(args: Args) -> int:
    """Run one job per argument and reduce their outputs to one value.

Usage:
  cmq map [options] [--env=K=V]... [--put=LOCAL]... [--get=REMOTE]... TEMPLATE...

TEMPLATE is a command with {} placeholders (as for `cmq submit`), run once per argument
given after ::: or by --each=FILE. When every job has ended, a reduce (a Celery chord
callback, run once even when workers die or Redis restarts) turns their standard outputs,
in argument order, into one value, stored in the history and printed. While jobs run, a
live line shows the reduce of the results so far.

Reducers: sum, min, max (each job prints a number), concat (outputs joined in order),
lines (every non-empty line), json (numbers add, strings and lists concatenate, objects
merge key by key), or MODULE:FUNC / file.py:FUNC, called with the list of outputs.

A job that fails fails the reduce, which names it; --allow-failures reduces the jobs that
succeeded and lists the others.

Options:
  --reduce=R        the reducer [default: concat]
  --allow-failures  reduce what succeeded; list the jobs that did not
  --on=MACHINES     run the jobs on these machines only (a hostlist)
  --label=L         run the jobs on machines with label L
  --each=FILE       one job per line of FILE ('-' reads standard input)
  --timeout=S       kill a job after S seconds
  --retries=N       run a failed job again, up to N more times [default: 0]
  --env=K=V         set a variable in the jobs' environment (repeatable)
  --put=LOCAL       stage LOCAL[:REMOTE] into each job's directory (as for submit;
                    with LOCAL {} each job gets its own argument)
  --get=REMOTE      fetch REMOTE[:LOCAL] from each job's directory
  --results=DIR     where fetched outputs go [default: cmq-results]
  --keep            keep the jobs' directories on the machines
  --no-wait         print the map's ids and return
  --cancel-on-interrupt  a Ctrl-C cancels the map (without it, a Ctrl-C stops waiting
                    and says how to wait again or cancel; a second one within 3 s
                    cancels it)
  --json            print the value with every job's machine, exit code and time

Examples:
  cmq map --reduce=sum 'wc -l < {}' ::: /data/part-*
  cmq map --reduce=json --put=count.py --put={} 'python3 count.py {/}' ::: shards/*
"""
    import os

    from ..submit.publish import send
    from ..submit.specs import build_reduce, build_specs, parse_env, placement, read_each

    words = args["TEMPLATE"]
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise UsageError(f"no TEMPLATE given; {help_hint('map')}")
    after = args[":::"]
    if after is not None and args["--each"]:
        raise UsageError("use either ::: ARG... or --each=FILE, not both")
    arguments = after if after is not None else (read_each(args["--each"]) if args["--each"] else None)
    if arguments is None:
        raise UsageError("a map needs arguments: ::: ARG... or --each=FILE")
    reducer = args["--reduce"]
    with open_cluster(args) as c:
        where = placement(c.settings.inventory, on=args["--on"], label=args["--label"])
        if len(where.machines) > 1:
            raise UsageError(f"--on={args['--on']}: a map runs each argument once; name one machine, "
                             "or give the machines a label and use --label")
        batch, members = build_specs(" ".join(words), where, args=arguments,
                                     timeout=number_option(args, "--timeout"),
                                     retries=number_option(args, "--retries", int),
                                     env=parse_env(args["--env"]), **staging_options(args))
        rspec = build_reduce(members, reducer, allow_failures=args["--allow-failures"], cwd=os.getcwd())
        send(c.app, c.store, members, rspec)
        if args["--no-wait"]:
            if args["--json"]:
                output.print_json({"map": batch, "reduce": rspec.id, "jobs": [s.id for s in members]})
            else:
                output.out.print(f"map {batch}: {len(members)} jobs, reduce {rspec.id}")
            return 0
        ids = [s.id for s in members]
        view = PartialView(reducer, ids, os.getcwd(), enabled=not args["--json"])
        try:
            with view:
                records = c.wait([*ids, rspec.id], on_update=view.update)
        except KeyboardInterrupt:
            return stop_waiting(c, [*ids, rspec.id], batch, args["--cancel-on-interrupt"])
    return _report(batch, records, as_json=args["--json"])


def _report(batch: str, records: list[JobRecord], as_json: bool) -> int:
    *members, red = records
    res = red.result
    if as_json:
        output.print_json({
            "map": batch, "reduce": red.id, "state": red.state.value, "reason": red.reason,
            "value": res.data.get("value") if res else None,
            "skipped": res.data.get("skipped", []) if res else [],
            "members": [{"job": r.id, "state": r.state.value, "machine": r.machine, "exit_code": r.exit_code,
                         "started": r.started, "ended": r.ended,
                         "duration": (r.ended - r.started) if r.started and r.ended else None}
                        for r in members],
        })
    elif red.state == JobStatus.SUCCEEDED and res is not None:
        sys.stdout.write(res.stdout)
        sys.stdout.flush()
        for s in res.data.get("skipped", []):
            output.err.print(f"left out: job {s.get('job')} {s.get('state')} on {s.get('machine') or '-'}"
                             + (f": {s['reason']}" if s.get("reason") else ""), markup=False)
    if red.state != JobStatus.SUCCEEDED:
        if not as_json:
            output.failures([r for r in members if r.state.final and r.state != JobStatus.SUCCEEDED][:10])
        raise JobFailedError(f"map {batch}: reduce {red.id} {red.state.value}: {red.reason}", [red])
    return 0


COMMANDS: dict[str, Any] = {"map": cmd_map}
