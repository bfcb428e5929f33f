"""`cmq schedule`: batches and workflows fired by a cron expression (the recorder fires
them; see cmqueue.schedules). The docstring is the command's usage text."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..core.errors import CmqError, MissingError, UsageError
from . import output
from .common import Args, load_settings, number_option, open_cluster
from .parse import help_hint


def cmd_schedule(args: Args) -> int:
    """Fire a command (a normal batch) or a workflow at the times a cron expression gives.

Usage:
  cmq schedule add [options] [--env=K=V]... NAME CRON [--] COMMAND...
  cmq schedule add [options] --workflow=EXPR NAME CRON
  cmq schedule list [options] [--json]
  cmq schedule remove [options] NAME
  cmq schedule pause [options] NAME
  cmq schedule unpause [options] NAME

CRON has five fields: minute hour day-of-month month day-of-week (0-6, 0 = Sunday, or
mon..sun), each with *, lists, ranges and /steps: '*/15 * * * *', '0 3 * * mon-fri'. The
fields are read in UTC (settings: schedule_timezone, an IANA name). As in celery's
crontab, a day of month and a day of week given together must both match.

The recorder that `cmq up` starts fires the schedules: each firing is a batch sent as
`cmq submit` sends it (with --on, --label or --all, --timeout, --retries, --env), or a
workflow started as `cmq run` starts it (the tasks file is read at each firing, from the
absolute path given here: a file gone by then makes the firing fail, with the reason).
A due time fires once, even with two recorders. Due times missed while nothing ran fire
once when the recorder is back (--catchup=once), or not at all (--catchup=skip: a firing
more than a minute late is skipped). `pause` stops the firings; `unpause` starts them
again from now (what was due while paused does not fire). `cmq resume` is about
workflows, not schedules.

`list` shows each schedule's next due time, its last firing (its due time, the batch or
workflow it made and that one's state) and whether it is paused.

Options:
  --on=MACHINES     the command runs on each of these machines (a hostlist)
  --label=L         the command runs on any one machine with label L
  --all             the command runs on every enabled machine
  --timeout=S       kill the command after S seconds
  --retries=N       run a failed command again, up to N more times [default: 0]
  --env=K=V         a variable of the command's environment (repeatable)
  --workflow=EXPR   fire the workflow EXPR ('(a | b); c'), instead of a command
  --tasks=FILE      the workflow's Python tasks file (the inventory's tasks: are there too)
  --catchup=WHEN    once or skip: what missed due times do [default: once]
  --json            print JSON

Examples:
  cmq schedule add nightly '0 3 * * *' --all 'apt-get -qq update'
  cmq schedule add report '*/30 * * * *' --workflow='(fetch_a | fetch_b); merge' --tasks=pipeline.py
  cmq schedule list
  cmq schedule pause nightly && cmq schedule unpause nightly
"""
    if args["add"]:
        return _add(args)
    if args["list"]:
        return _list(args)
    name = args["NAME"]
    if args["remove"]:
        return _change(args, name, "removed", lambda store: store.remove_schedule(name))
    if args["pause"]:
        return _change(args, name, "paused", lambda store: store.update_schedule(name, {"paused": True}))
    if args["unpause"]:
        def unpause(store: Any) -> bool:
            found = store.schedule(name)
            return found is not None and store.update_schedule(
                name, {"paused": False, "checked": max(float(found.get("checked") or 0.0), time.time())})
        return _change(args, name, "unpaused (fires from now on)", unpause)
    raise UsageError(f"schedule: say what to do; {help_hint('schedule')}")


class UnknownScheduleError(UsageError):
    """No schedule has the name given."""

    http_status = 404


def _notify(c: Any) -> None:
    """Wake the recorder (it looks within a few seconds anyway)."""
    from ..schedules.runner import notify

    try:
        notify(c.redis)
    except CmqError:
        pass                                         # no broker now: the store has it


def _add(args: Args) -> int:
    from ..schedules.cron import parse, when
    from ..schedules.model import Schedule, check_catchup, check_name

    name = check_name(args["NAME"])
    tz = load_settings(args, check_keys=False).get("schedule_timezone")
    cron = parse(args["CRON"], tz)
    catchup = check_catchup(args["--catchup"] or "once")
    with open_cluster(args) as c:
        if args["--workflow"]:
            if args["COMMAND"]:
                raise UsageError("give either COMMAND or --workflow=EXPR, not both")
            given = [o for o in ("--on", "--label", "--all", "--timeout", "--env") if args[o]]
            if given or args["--retries"] not in (None, "0"):
                raise UsageError(f"{(given or ['--retries'])[0]} is for a command; a workflow's tasks say where "
                                 "they run")
            tasks = ""
            if args["--tasks"]:
                path = Path(args["--tasks"]).expanduser()
                if not path.is_file():
                    raise MissingError(f"--tasks={args['--tasks']}: no such file")
                tasks = str(path.resolve())
            c.workflows.plan(args["--workflow"], c.tasks(tasks or None), source=tasks)   # checks the names
            s = Schedule(name, cron.text, "workflow", expr=args["--workflow"], tasks=tasks, catchup=catchup)
        else:
            from ..submit.specs import build_specs, parse_env, placement

            command = " ".join(args["COMMAND"])
            env = parse_env(args["--env"])
            retries = number_option(args, "--retries", int) or 0
            timeout = number_option(args, "--timeout")
            where = placement(c.settings.inventory, on=args["--on"], label=args["--label"], everywhere=args["--all"])
            build_specs(command, where, timeout=timeout, retries=retries, env=env)          # checks, sends nothing
            s = Schedule(name, cron.text, "command", command=command, on=args["--on"], label=args["--label"],
                         all=bool(args["--all"]), timeout=timeout, retries=retries, env=env, catchup=catchup)
        s.created = s.checked = time.time()
        if not c.store.add_schedule(s.to_dict()):
            raise UsageError(f"schedule {name} exists; `cmq schedule remove {name}` first")
        _notify(c)
    output.out.print(f"schedule {name}: {s.what}; next {when(cron.next_after(s.checked), cron.tz)} {tz}",
                     markup=False, highlight=False)
    return 0


def _change(args: Args, name: str, done: str, change: Any) -> int:
    with open_cluster(args, check_keys=False) as c:
        if not change(c.store):
            raise UnknownScheduleError(f"no schedule {name!r}; `cmq schedule list` shows them")
        _notify(c)
    output.out.print(f"schedule {name} {done}", markup=False, highlight=False)
    return 0


def _list(args: Args) -> int:
    from ..schedules.cron import when, zone
    from ..schedules.views import COLUMNS, rows

    with open_cluster(args, check_keys=False, listing=True) as c:
        tz = c.settings.get("schedule_timezone")
        found = rows(c, tz, time.time())
    if args["--json"]:
        output.print_json(found)
        return 0
    if not found:
        output.out.print("no schedules; add one with `cmq schedule add NAME CRON COMMAND`", markup=False)
        return 0
    z = zone(tz)
    rows_out = [[f"{c} ({tz})" if c in ("next", "last") else c for c in COLUMNS]]
    for r in found:
        state = r["last_state"] + (f" ({r['last_error']})" if r["last_error"] else "")
        rows_out.append([r["name"], r["cron"], when(r["next"], z) or "-", when(r["last_due"], z) or "-",
                         r["last_id"] or "-", state or "-", "paused" if r["paused"] else "-", r["what"]])
    output.plain_rows(rows_out)
    return 0


COMMANDS: dict[str, Any] = {"schedule": cmd_schedule}
