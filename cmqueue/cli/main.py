"""cmq — run shell jobs on a fleet of machines through Celery queues on Redis.

Usage:
  cmq [options] <command> [<args>...]
  cmq (-h | --help)
  cmq --version

Commands:
  up         start Redis if needed, the worker processes that drive the machines, the recorder
  down       stop exactly what `cmq up` started
  ps         show the services `cmq up` started
  procfile   print a Procfile for the stack (honcho start)
  worker     run a worker process in the foreground (for all machines or --machines=HOSTLIST)
  flower     run Flower (the web view) in the foreground; --show-login
  machines   list the machines; `cmq machines check` probes them
  submit     submit jobs (one command, per machine, or per argument)
  status     show the state of jobs
  jobs       list jobs from the history
  logs       print a job's output
  cancel     cancel jobs or workflows (running jobs are killed on their machine)
  wait       wait for jobs, with a progress bar
  top        watch machines, slots, queues and running jobs
  map        one job per argument, then reduce their outputs to one value
  put        copy a local file or tree to machines (verified)
  get        copy a file or tree from machines (verified)
  cache      show or clear the machines' input caches
  storage    files on storage services: put, get, list, copy, sync, search
  vdir       the virtual directory: names over files on the storage services
  pool       files kept by their SHA-256 on storage services, with a local cache
  cloud      the clouds of the inventory (libcloud compute drivers)
  serve      the REST API and the web console (tokens: `cmq serve token create NAME`)
  shell      the commands at a prompt (history, completion), or from a script
  run        run a workflow: (a | b | c); d; a + b + c + d
  plan       show what a workflow would do, running nothing
  workflows  list workflows
  show       a workflow's tree with each step's state and result
  resume     run a workflow's failed and unfinished steps again
  retry      run one step of a workflow again
  edit       change a step of a suspended workflow (command, target, timeout)
  schedule   fire a command or a workflow at cron times: add, list, remove, pause, unpause
  vagrant    boot N Vagrant VMs as machines vm1..vmN; status, halt, destroy
  demo       start a loopback cluster and run a demo job across it

Options:
  -c FILE --config=FILE  inventory file (default: $CMQ_CONFIG, else ~/.cloudmesh/cmq.yaml)
  --broker=URL           broker URL (default: $CMQ_BROKER, else the inventory's broker:, else
                         the one `cmq up` recorded)
  --history=URL          history store (default: $CMQ_HISTORY, else the inventory's history:,
                         else SQLite in cmq's home)
  --debug                show tracebacks of errors
  -h --help              show this help
  --version              show the version

`cmq COMMAND --help` shows the usage of one command.
Exit codes: 0 ok, 1 a job failed, 2 usage or configuration error, 3 a service is down,
130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

from docopt import DocoptExit

from .. import __version__
from ..core.errors import CmqError, UsageError
from .parse import (
    did_you_mean,
    explain,
    help_hint,
    leading_options,
    parse,
    refuse_abbreviations,
    refuse_trailing_options,
    split_triple_colon,
    value_options,
)

#: Commands whose first positional word starts a shell command (the rest is its words).
SHELL_COMMANDS = ("submit", "map")

#: The module of cmqueue.cli that defines each command: only the one run is imported.
COMMAND_MODULES: dict[str, str] = {
    **dict.fromkeys(("up", "down", "ps", "worker", "recorder", "launcher", "flower", "procfile"), "stack"),
    "machines": "machines",
    **dict.fromkeys(("submit", "status", "jobs", "logs", "cancel", "wait"), "jobs"),
    "top": "top",
    "demo": "demo",
    **dict.fromkeys(("put", "get", "cache"), "data"),
    "map": "mapping",
    **dict.fromkeys(("run", "plan", "workflows", "show", "resume", "retry", "edit"), "workflows"),
    "vagrant": "vagrant",
    "storage": "storage",
    "vdir": "vdir",
    "pool": "pool",
    "cloud": "cloud",
    "serve": "serve",
    "shell": "shell",
    "schedule": "schedules",
}


def command(name: str) -> Any:
    """The function of command ``name`` (its docstring is its usage), or None."""
    module = COMMAND_MODULES.get(name)
    if module is None:
        return None
    return importlib.import_module(f"{__package__}.{module}").COMMANDS[name]


def _run(argv: list[str]) -> int:
    from docopt import docopt

    from .argv import command_word

    word = command_word(argv)
    refuse_abbreviations(__doc__ or "", argv[: argv.index(word)] if word in argv else argv, "cmq")
    try:
        top = docopt(__doc__, argv=argv, options_first=True, version=f"cmq {__version__}")
    except DocoptExit as e:
        raise UsageError(explain(e, __doc__, "cmq", argv).removeprefix("cmq: ")) from None
    name = top["<command>"]
    func = command(name)
    if func is None:
        public = [c for c in COMMAND_MODULES if c not in ("recorder", "launcher")]
        raise UsageError(f"unknown command {name!r}{did_you_mean(name, public)}; {help_hint()}")
    sub_argv, after = split_triple_colon([name, *top["<args>"]])
    from .common import GLOBAL_OPTIONS

    doc = (func.__doc__ or "") + GLOBAL_OPTIONS
    if name in SHELL_COMMANDS:
        opts, words, verbatim = leading_options(sub_argv[1:], value_options(doc))
        if not verbatim:
            refuse_trailing_options(name, words, after, doc)
        sub_argv = [name, *opts, "--", *words]
    args = parse(doc, sub_argv, name)
    for key in ("--config", "--broker", "--history", "--debug"):
        args[key] = args.get(key) or top.get(key)
    args[":::"] = after
    return int(func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cmq``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[: argv.index(":::")] if ":::" in argv else "--debug" in argv
    try:
        try:
            code = _run(argv)
        except SystemExit:                   # --help, --version: printed, not yet written
            sys.stdout.flush()
            raise
        sys.stdout.flush()                   # here, where a reader that went away is caught
        return code
    except CmqError as e:
        if debug:
            traceback.print_exc()
        print(f"cmq: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cmq: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`cmq jobs | head -1`): end quietly, as git does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as e:  # noqa: BLE001 - last resort: one line unless --debug
        if debug:
            traceback.print_exc()
        else:
            print(f"cmq: internal error: {type(e).__name__}: {e} (run with --debug for details)",
                  file=sys.stderr)
        return 1
