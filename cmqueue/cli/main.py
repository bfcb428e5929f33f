"""cmq — run shell jobs on a fleet of machines through Celery queues on Redis.

Usage:
  cmq [options] <command> [<args>...]
  cmq (-h | --help)
  cmq --version

Commands:
  up         start Redis if needed, one worker per machine, and the recorder
  down       stop exactly what `cmq up` started
  ps         show the services `cmq up` started
  procfile   print a Procfile for the stack (honcho start)
  worker     run the worker of one machine in the foreground
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
  run        run a workflow: (a | b | c); d; a + b + c + d
  plan       show what a workflow would do, running nothing
  workflows  list workflows
  show       a workflow's tree with each step's state and result
  resume     run a workflow's failed and unfinished steps again
  retry      run one step of a workflow again
  vagrant    boot N Vagrant VMs as machines vm1..vmN; status, halt, destroy
  demo       start a loopback cluster and run a demo job across it

Options:
  -c FILE --config=FILE  inventory file (default: $CMQ_CONFIG, else ~/.cloudmesh/cmq.yaml)
  --broker=URL           broker URL (overrides the inventory and the embedded Redis)
  --debug                show tracebacks of errors
  -h --help              show this help
  --version              show the version

`cmq COMMAND --help` shows the usage of one command.
Exit codes: 0 ok, 1 a job failed, 2 usage or configuration error, 3 a service is down,
130 interrupted.
"""

from __future__ import annotations

import sys
import traceback

from docopt import DocoptExit, docopt

from .. import __version__
from ..errors import CmqError
from . import commands


def split_triple_colon(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Split ``argv`` at the first ``:::`` (GNU parallel's argument separator)."""
    if ":::" in argv:
        i = argv.index(":::")
        return argv[:i], argv[i + 1:]
    return argv, None


def leading_options(argv: list[str], takes_value: set[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` into the options before the first positional word, and the rest.

    ``submit`` needs this: everything from COMMAND on belongs to the command, even words
    that look like options (``cmq submit ls -l``).
    """
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return argv[:i], argv[i + 1:]
        if not word.startswith("-") or word == "-":
            break
        i += 2 if word in takes_value else 1
    return argv[:i], argv[i:]


SUBMIT_VALUE_OPTIONS = {"--on", "--label", "--each", "--timeout", "--retries", "--env", "-c", "--config",
                        "--broker", "--reduce", "--put", "--get", "--results"}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cmq``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[: argv.index(":::")] if ":::" in argv else "--debug" in argv
    try:
        top = docopt(__doc__, argv=argv, options_first=True, version=f"cmq {__version__}")
        name = top["<command>"]
        func = commands.COMMANDS.get(name)
        if func is None:
            raise DocoptExit(f"cmq: unknown command {name!r}; see `cmq --help`")
        sub_argv, after = split_triple_colon([name, *top["<args>"]])
        doc = func.__doc__ or ""
        if name in ("submit", "map"):
            opts, words = leading_options(sub_argv[1:], SUBMIT_VALUE_OPTIONS)
            sub_argv = [name, *opts, "--", *words]
        args = docopt(doc + commands.GLOBAL_OPTIONS, argv=sub_argv)
        for key in ("--config", "--broker", "--debug"):
            args[key] = args.get(key) or top.get(key)
        args[":::"] = after
        return int(func(args) or 0)
    except DocoptExit as e:
        print(str(e), file=sys.stderr)
        return 2
    except CmqError as e:
        if debug:
            traceback.print_exc()
        print(f"cmq: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cmq: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - last resort: one line unless --debug
        if debug:
            traceback.print_exc()
        else:
            print(f"cmq: internal error: {type(e).__name__}: {e} (run with --debug for details)",
                  file=sys.stderr)
        return 1
