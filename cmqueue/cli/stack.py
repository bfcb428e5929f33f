"""The commands that run the stack on this host: `cmq up`, `down`, `ps`, `procfile`, and the
foreground processes `worker`, `flower`, `recorder`, `launcher`. Each docstring is the
command's usage text."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from ..config.settings import Settings
from ..core.errors import UsageError
from . import output
from .common import Args, load_settings, number_option


def cmd_up(args: Args) -> int:
    """Start what the inventory needs on this machine.

Usage:
  cmq up [options] [--ha | --tls | --no-tls]

Options:
  --ha       the embedded Redis is a Sentinel group on 127.0.0.1, to try a failover on one
             machine: a primary, a replica and three sentinels, with the generated password
             and fsync always (kept so once made; `cmq down` stops them)
  --tls      the embedded Redis serves TLS only, with a private CA made in $CMQ_HOME/tls:
             its certificate is checked, and so is each client's (this host's processes
             and agents with broker_access: tls get one); kept so until --no-tls. It
             listens on 127.0.0.1 and settings: broker_bind
  --no-tls   the embedded Redis serves plain TCP on 127.0.0.1 again

Starts Redis when the broker is local and nothing answers (or none is configured: then an
embedded Redis with a generated password and AOF persistence), worker processes that
drive the enabled ssh and local machines (settings: worker_processes; each machine at most
`slots` jobs at once), the recorder that keeps the history in step, and
Flower on 127.0.0.1:5555 (settings: flower_port; 0 for none) behind a login that is
printed when it is made (`cmq flower --show-login` shows it again). Opens the machines a
few at a time (settings: start_parallel) and waits until every one consumes its queues,
reports itself unreachable, or is found served by another controller. A broker named
as a Sentinel group (broker: {sentinels: [...], master: NAME}) is followed to its current
primary; cmq never starts one.

Example:
  cmq up && cmq submit --all --wait uptime
"""
    from ..fleet.services import Services

    settings = load_settings(args)
    services = Services(settings)
    tls = True if args.get("--tls") else False if args.get("--no-tls") else None
    url, started = services.ensure_redis(ha=bool(args.get("--ha")), tls=tls)
    from ..config.broker import parse
    from ..core.redact import redact_url
    from ..queue.broker import describe

    address, on_tls = parse(url), ""
    if address.tls:          # the query names the CA and client files: said once, shorter
        on_tls = f"; TLS, CA {address.tls_files.get('ssl_ca_certs') or 'of the system'}"
        if tls is None and not services.named_broker():
            on_tls += "; kept from `cmq up --tls`: `cmq down`, then `cmq up --no-tls` ends it"
    output.err.print(f"broker {redact_url(url.split('?')[0] if address.tls else url)} "
                     f"({'started' if started else 'already running'}{describe(url)}{on_tls})", markup=False)
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
    from ..core.errors import ServiceError
    from ..fleet.flower import login

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
    from ..fleet.services import Services

    settings = load_settings(args, check_keys=False)
    stopped = Services(settings).stop(grace=number_option(args, "--grace"))
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
    from ..fleet.services import Services

    sys.stdout.write(Services(load_settings(args, check_keys=False)).procfile())
    return 0


def cmd_ps(args: Args) -> int:
    """Show the services `cmq up` started, with pid and uptime.

Usage:
  cmq ps [options] [--json]

Options:
  --json   print JSON
"""
    from ..fleet.services import Services

    settings = load_settings(args, check_keys=False)
    rows = Services(settings).table()
    output.print_group_primary(settings)
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
    from ..core.hostlist import HostlistError, expand_list
    from ..fleet.worker_process import chooser, run_fleet
    from ..queue.celery_app import create_app

    settings = load_settings(args)
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
    from ..fleet.flower import login, serve

    settings = load_settings(args, check_keys=False)
    if args["--show-login"]:
        user, password, _ = login(settings, create=False)
        output.out.print(f"{user}:{password}", markup=False)      # as curl -u wants it
        return 0
    from ..core.errors import ServiceError
    from ..core.redact import redact_url
    from ..fleet.local_servers import ping
    from ..queue.celery_app import create_app

    problem = ping(settings.require_broker())
    if problem:
        raise ServiceError(f"flower: broker {redact_url(settings.broker)} does not answer ({problem}); "
                           "start it with `cmq up`")
    port = number_option(args, "--port", int) or int(settings.get("flower_port")) or 5555

    def announce(url: str, user: str) -> None:
        output.err.print(f"flower on {url} (user {user}; its password: `cmq flower --show-login`); "
                         "Ctrl-C stops it", markup=False)

    serve(create_app(settings), settings, port, address=args["--address"], announce=announce)
    return 0


def cmd_recorder(args: Args) -> int:
    """Keep the history store in step with the event stream, put the messages of
workers that died back on their queues, send the reduce of a map whose members all
ended when the broker lost it, and fire the schedules (`cmq schedule`) that are due
(started by `cmq up`).

Usage:
  cmq recorder [options]
"""
    import redis

    from ..core.redact import redact_url
    from ..history import open_store
    from ..history.waiting import Waiter
    from ..queue.broker import connect
    from ..queue.lease import Lease, recorder_lease

    settings = load_settings(args, check_keys=False)
    client = connect(settings.require_broker())
    lease = Lease(client, recorder_lease(settings.history), what=f"recorder of {redact_url(settings.history)}")
    lease.take()                                 # one recorder per history store
    lease.hold(on_error=lambda e: print(f"recorder: cannot renew its lease: {e}", file=sys.stderr, flush=True))
    from ..queue.orphans import sweep_forever
    from ..queue.rescue import rescue_forever

    sweep_forever(settings.require_broker(), on_error=lambda e: print(f"recorder: sweep: {e}", file=sys.stderr,
                                                                       flush=True))
    rescue_forever(settings, interval=float(settings.get("rescue_interval")), grace=float(settings.get("rescue_grace")),
                   on_error=lambda e: print(f"recorder: rescue: {e}", file=sys.stderr, flush=True))
    from ..schedules.runner import start as start_schedules

    start_schedules(open_store(settings.history), client, lambda: load_settings(args, check_keys=False),
                    say=lambda m: print(f"recorder: {m}", file=sys.stderr, flush=True))
    waiter = Waiter(open_store(settings.history), client, settings.get("event_stream"))
    while True:
        try:
            waiter.follow()
        except redis.RedisError as e:
            print(f"recorder: broker error: {e}; retrying", file=sys.stderr, flush=True)
            time.sleep(1)


def cmd_launcher(args: Args) -> int:
    """Keep Celery, redis-py and rich imported and start commands by forking (started by
`cmq up`; the `cmq` command uses it when it runs: see cmqueue/cli/launcher.py).

Usage:
  cmq launcher [options]
"""
    from ..config.settings import home_dir
    from .launcher import serve

    serve(home_dir())
    return 0


COMMANDS: dict[str, Callable[[Args], int]] = {
    "up": cmd_up, "down": cmd_down, "ps": cmd_ps, "procfile": cmd_procfile, "worker": cmd_worker,
    "flower": cmd_flower, "recorder": cmd_recorder, "launcher": cmd_launcher,
}
