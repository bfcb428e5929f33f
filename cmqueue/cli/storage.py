"""`cmq storage`: files on the storage services of the inventory."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Any

from ..core.errors import UsageError
from . import output
from .common import Args, load_settings, need_a_worker, number_option, output_format, print_rows


def cmd_storage(args: Args) -> int:
    """Files on storage services: a folder, a machine's directory, S3, Azure Blob, any libcloud driver.

Usage:
  cmq storage [options] [--storage=SERVICE] [--parallel=N] create dir DIRECTORY
  cmq storage [options] [--storage=SERVICE] [--parallel=N] put SOURCE DESTINATION [--recursive] [--relay=MODE]
  cmq storage [options] [--storage=SERVICE] [--parallel=N] get SOURCE DESTINATION [--recursive]
  cmq storage [options] [--storage=SERVICE] [--parallel=N] list [SOURCE] [--recursive] [--output=OUTPUT]
  cmq storage [options] [--storage=SERVICE] [--parallel=N] delete SOURCE
  cmq storage [options] [--storage=SERVICE] search DIRECTORY FILENAME [--recursive] [--output=OUTPUT]
  cmq storage [options] [--storage=SERVICE] [--parallel=N] sync SOURCE DESTINATION [--name=NAME] [--async]
  cmq storage [options] [--storage=SERVICE] sync status [--name=NAME] [--output=OUTPUT]
  cmq storage [options] config list [--output=OUTPUT]
  cmq storage [options] [--parallel=N] copy SOURCE DESTINATION [--recursive] [--relay=MODE]

Options:
  --storage=SERVICE  the service of paths given without SERVICE: (default: the only one)
  --parallel=N       files moved at once [default: 1]
  -r --recursive     a directory and everything in it
  --output=OUTPUT    table, json or csv [default: table]
  --name=NAME        the name of a sync, to follow it by (default: sync)
  --async            send the sync's jobs to the queue, print their batch id, return
  --relay=MODE       to several machine services: auto, off, chain or tree:K [default: auto]

Services are named in the inventory's storage: section:
  storage:
    box:  {type: local, directory: /srv/data}
    node: {type: ssh, machine: node01, directory: store}
    s3:   {type: s3, endpoint: http://127.0.0.1:8333, bucket: data, key: KEY, secret: TBD}
    blob: {type: azure, container: data, key: ACCOUNT, secret_file: ~/.cloudmesh/azure.secret}
A secret TBD is asked for on the terminal, hidden; a secret_file must be private (0600).

SERVICE:PATH names a path on any service, / its root. For put, SOURCE is a local path and
DESTINATION a service path; for get the other way round; copy goes between services. A
DESTINATION ending in / (or an existing directory) receives SOURCE under its own name; a
directory copied with --recursive gives its contents to DESTINATION, empty directories
included (a directory marker, `dir/`, on an object store). Every file is verified before
it counts as stored: by the SHA-256 cmq keeps with it (or computes at its source); a file
another tool stored, by the MD5 the service keeps, else by reading it twice; the summary
says which. Its time travels with it, in the form rclone reads. sync copies what
is missing at DESTINATION or whose content (SHA-256) differs there and is older, and
leaves a destination file that is newer alone (it says so); either
side of sync may be a local path (one without SERVICE:).

sync compares here first, and only what differs goes on. With --parallel=N (N > 1)
or --async, the files go as N jobs of about equal bytes to the queue of host jobs
(cmq.host), where the workers `cmq up` started move them; each job is in the history
(`cmq status`), retried twice, and a job that runs again moves only what is not there.
Files that go between this host and a folder service (type local) go as one job per
CPU of this host at most: nothing travels, and more jobs only share the same CPUs.
A TBD secret cannot be asked for in a worker: give those services a secret_file.

put and copy may name several machine services (type ssh) as DESTINATION, by a hostlist
(`'node[1-8]:images/'`): each file of 4 MiB or more then crosses this host's link once per
zone, and the machines relay it to each other (see `cmq put`); a line per destination
says who fed its copy.
On object stores a directory is the prefix of the names under it: `create dir` keeps
nothing there.

Examples:
  cmq storage --storage=box put -r results/ runs/2026-11
  cmq storage list box:runs --recursive --output=json
  cmq storage copy box:runs/a.csv s3:archive/
  cmq storage put image.qcow2 'node[1-8]:images/'
  cmq storage search s3:archive '*.csv' --recursive
"""
    from ..storage.ops import Providers

    settings = load_settings(args, check_keys=False)
    if args["config"]:
        return _config_list(settings, output_format(args))
    inventory = settings.inventory
    default = _default_service(inventory, args["--storage"])
    if args["sync"] and args["status"]:
        return _sync_status(settings, args["--name"], output_format(args))
    parallel = number_option(args, "--parallel", int)
    if parallel is None or parallel < 1:
        raise UsageError(f"--parallel={args['--parallel']}: must be 1 or more")
    providers = Providers(inventory)
    try:
        if args["create"]:
            return _create_dir(providers, args["DIRECTORY"], default)
        if args["list"]:
            return _list(providers, args["SOURCE"] or "/", default, args["--recursive"], output_format(args))
        if args["search"]:
            return _search(providers, args, default, output_format(args))
        if args["delete"]:
            return _delete(providers, args["SOURCE"], default)
        return _copy(providers, args, default, parallel, settings)
    finally:
        providers.close()


def _default_service(inventory: Any, given: str | None) -> str | None:
    if given:
        if given not in inventory.storage:
            known = ", ".join(inventory.storage) or "(none: add a storage: section)"
            raise UsageError(f"--storage={given}: no such service in {inventory.path.name}; services: {known}")
        return given
    return next(iter(inventory.storage)) if len(inventory.storage) == 1 else None


def _config_list(settings: Any, fmt: str) -> int:
    rows = [c.public() for c in settings.inventory.storage.values()]
    columns = ["name", "type", "where", "key", "secret"]
    for r in rows:
        if r["type"] == "ssh":
            r["where"] = f"{r.get('machine')}:{r.get('directory') or '.'}"
        else:
            server = r.get("endpoint") or r.get("region") or r.get("driver", "")
            r["where"] = r.get("directory") or " ".join(x for x in (server, r.get("container", "")) if x)
    print_rows(rows, columns, fmt)
    return 0


def _entry_rows(entries: list[Any]) -> list[dict[str, Any]]:
    return [{**e.to_dict(), "size": e.size if not e.is_dir else None,
             "modified": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.mtime)) if e.mtime else None}
            for e in entries]


def _list(providers: Any, text: str, default: str | None, recursive: bool, fmt: str) -> int:
    from ..storage.ops import place

    where = place(text, default)
    entries = providers(where.service).list_details(where.path, recursive=recursive)
    rows = _entry_rows(entries)
    print_rows(rows, ["name", "type", "size", "modified"] + (["sha256"] if fmt != "table" else []), fmt)
    return 0


def _search(providers: Any, args: Args, default: str | None, fmt: str) -> int:
    from ..storage.ops import place, search

    where = place(args["DIRECTORY"], default)
    found = search(providers(where.service), where.path, args["FILENAME"], args["--recursive"])
    print_rows(_entry_rows(found), ["name", "size", "modified"] + (["sha256"] if fmt != "table" else []), fmt)
    return 0 if found else 1


def _create_dir(providers: Any, text: str, default: str | None) -> int:
    from ..storage.ops import place

    where = place(text, default)
    if not where.path:
        raise UsageError(f"{text}: the root of a service exists already")
    made = providers(where.service).mkdir(where.path)
    note = "" if made else " (an object store: a directory exists by the files under it; nothing was kept)"
    output.err.print(f"{where}: directory ready{note}", markup=False, highlight=False)
    return 0


def _delete(providers: Any, text: str, default: str | None) -> int:
    from ..storage.ops import place

    where = place(text, default)
    if not where.path:
        raise UsageError(f"{text}: names the root of the service; delete what is in it by name")
    count = providers(where.service).delete(where.path)
    output.err.print(f"{where}: deleted ({count} file{'s' if count != 1 else ''})", markup=False, highlight=False)
    return 0


def _copy(providers: Any, args: Args, default: str | None, parallel: int, settings: Any) -> int:
    from ..storage import fanout
    from ..storage.ops import place, plan, run_steps, to_sync, verified_counts, verified_summary
    from ..transfer.machine_copy import human_bytes

    sync = bool(args["sync"])
    several = fanout.services(args["DESTINATION"], settings.inventory) if args["put"] or args["copy"] else None
    if several is not None:
        return _fan_out(providers, args, default, parallel, settings, *several)
    source = place(args["SOURCE"], default, local=bool(args["put"] or sync))
    dest = place(args["DESTINATION"], default, local=bool(args["get"] or sync))
    if args["put"] and source.service is not None:
        raise UsageError(f"put: {args['SOURCE']} must be a local path (copy goes between services)")
    if args["get"] and dest.service is not None:
        raise UsageError(f"get: {args['DESTINATION']} must be a local path (copy goes between services)")
    if args["copy"] and (source.service is None or dest.service is None):
        raise UsageError("copy: both sides are SERVICE:PATH (put and get move local files)")
    name = _sync_name(args) if sync else None
    queued = parallel > 1 or bool(args["--async"])
    steps = plan(providers, source, dest, recursive=bool(args["--recursive"] or sync))
    t0 = time.monotonic()
    files, skipped, moved, newer = 0, 0, 0, 0
    verified: dict[str, int] = {}
    if sync:                                  # (queued sync jobs look again: the files may change)
        steps, skipped, left = to_sync(providers, steps)
        newer = len(left)
        for s in left:
            output.err.print(f"left alone, newer at the destination: {s.describe()}", markup=False, highlight=False)
    what = next(w for w in ("put", "get", "copy", "sync") if args[w])
    if queued and steps:
        _no_questions(settings.inventory, {s.source for s in steps} | {s.dest for s in steps})
        label = f"{what}{f' {name}' if name else ''} {source} -> {dest}"
        files, more_same, moved, more_newer, verified = _run_queued(settings, steps, parallel, label, name,
                                                                    bool(args["--async"]))
        skipped, newer = skipped + more_same, newer + more_newer
        if args["--async"]:
            return 0
    elif args["--async"]:
        output.err.print(f"sync {name}: nothing to move ({skipped} file(s) already there)", markup=False,
                         highlight=False)
        return 0
    else:
        with _bytes_view(what, sum(s.size for s in steps)) as on_bytes:
            results = run_steps(providers, steps, on_bytes)
        moved, files, verified = sum(r["bytes"] for r in results), len(steps), verified_counts(results)
    took = time.monotonic() - t0
    rate = f", {human_bytes(moved / took)}/s" if took > 0 and moved else ""
    there = f" ({skipped} already there)" if skipped else ""
    if newer:
        there += f" ({newer} left alone: newer at the destination)"
    checked = verified_summary(verified)
    output.err.print(f"{files} file{'s' if files != 1 else ''}, {human_bytes(moved)} in {took:.1f}s{rate}{there}"
                     f" ({source} -> {dest}{', ' + checked if checked else ''})", markup=False, highlight=False)
    return 0


def _fan_out(providers: Any, args: Args, default: str | None, parallel: int, settings: Any,
             services: list[str], path: str) -> int:
    """put or copy to several machine services, relayed (see :mod:`cmqueue.storage.fanout`)."""
    from ..storage import fanout
    from ..storage.ops import Place, place, plan, verified_counts, verified_summary
    from ..transfer.machine_copy import human_bytes

    if parallel > 1:
        raise UsageError(f"--parallel: not with several destinations ({args['DESTINATION']})")
    source = place(args["SOURCE"], default, local=bool(args["put"]))
    if args["put"] and source.service is not None:
        raise UsageError(f"put: {args['SOURCE']} must be a local path (copy goes between services)")
    if args["copy"] and source.service is None:
        raise UsageError("copy: both sides are SERVICE:PATH (put and get move local files)")
    first = place(f"{services[0]}:{path}", None)
    steps = plan(providers, source, first, recursive=bool(args["--recursive"]))
    t0 = time.monotonic()

    def said(dest: str, r: dict[str, Any]) -> None:
        fed = f" from {r['fed_by']}" if r.get("fed_by") else ""
        note = f" ({r['note']})" if r.get("note") else ""
        output.err.print(f"{r['step']}: {human_bytes(r['bytes'])} by {r['how']}{fed}{note}", markup=False,
                         highlight=False)

    results = fanout.run(providers, steps, services, args["--relay"] or "auto", on_copy=said,
                         stall=float(settings.get("relay_stall")))
    took = time.monotonic() - t0
    moved = sum(r["bytes"] for r in results)
    files = sum(1 for r in results if r.get("how") != "mkdir")
    checked = verified_summary(verified_counts(results))
    dest = Place(",".join(services), path)
    output.err.print(f"{files} file{'s' if files != 1 else ''}, {human_bytes(moved)} in {took:.1f}s "
                     f"({source} -> {dest}{', ' + checked if checked else ''})", markup=False, highlight=False)
    return 0


@contextmanager
def _bytes_view(what: str, total: int):
    """A bar with bytes and rate on a terminal while files move here; yields the callback
    told each chunk's size (None when there is no terminal)."""
    if not sys.stderr.isatty() or not total:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

    with Progress(TextColumn(what), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn(),
                  console=output.err, transient=True) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n: progress.advance(task, n)


def _no_questions(inventory: Any, services: set[str]) -> None:
    """Refuse to queue work on a service whose secret is asked for (a worker cannot ask)."""
    from ..storage.config import ASK

    for name in sorted(x for x in services if x):
        if inventory.storage[name].secret == ASK:
            raise UsageError(f"storage service {name} has secret TBD, which a worker cannot ask for; give it a "
                             "secret_file, or run without --parallel and --async")


def _sync_name(args: Args) -> str:
    import re

    name = args.get("--name") or "sync"
    if not re.match(r"^[A-Za-z0-9_]+$", name):
        raise UsageError(f"--name={name}: a sync name uses letters, digits and '_'")
    return name


def _run_queued(settings: Any, steps: list[Any], parallel: int, what: str, sync_name: str | None,
                detach: bool) -> tuple[int, int, int, int, dict[str, int]]:
    """Send ``steps`` as ``parallel`` jobs on the queue of host jobs and (unless ``detach``)
    wait for them; (files moved, files already there, bytes moved, files left alone as
    newer at the destination, how many were verified each way). The workers `cmq up`
    started run them."""
    from ..api.cluster import Cluster
    from ..core.defaults import STORAGE_RETRIES
    from ..core.errors import JobFailedError
    from ..core.models import JobStatus, new_id
    from ..storage import jobs

    batch = f"sync-{sync_name}-{new_id('')}" if sync_name else None
    parallel = jobs.useful_parallel(steps, parallel, settings.inventory)
    specs = jobs.build(steps, parallel, what, retries=STORAGE_RETRIES, sync=sync_name is not None, batch=batch)
    with Cluster(settings) as c:
        need_a_worker(c)
        c.send_specs(specs)
        if detach:
            sys.stdout.write(f"{specs[0].batch}\n")
            sys.stdout.flush()
            output.err.print(f"sync {sync_name}: {len(specs)} job(s) sent; follow it with "
                             f"`cmq storage sync status --name={sync_name}`", markup=False, highlight=False)
            return 0, 0, 0, 0, {}
        view = output.TransferView(specs, c.redis, enabled=output.stdout_is_terminal() or sys.stderr.isatty())
        with view:
            records = c.wait([s.id for s in specs], on_update=view.update, on_tick=view.tick)
    bad = [r for r in records if r.state != JobStatus.SUCCEEDED]
    if bad:
        output.failures(bad)
        raise JobFailedError(f"{len(bad)} of {len(records)} storage job(s) failed (`cmq status` shows them; "
                             "running the command again moves only what is missing)", bad)
    data = [(r.result.data or {}) if r.result else {} for r in records]
    verified: dict[str, int] = {}
    for d in data:
        for kind, n in (d.get("verified") or {"sha256": int(d.get("files", 0))}).items():
            verified[kind] = verified.get(kind, 0) + int(n)
    return (sum(int(d.get("files", 0)) for d in data), sum(int(d.get("skipped", 0)) for d in data),
            sum(int(d.get("bytes", 0)) for d in data), sum(int(d.get("newer", 0)) for d in data), verified)


def _sync_status(settings: Any, name: str | None, fmt: str) -> int:
    """The sync runs (newest last), or those of sync ``name``: their jobs' states and what moved."""
    from ..api.cluster import Cluster

    with Cluster(settings, trust_recorder=True) as c:
        c.refresh()
        records = [r for r in c.store.jobs(last=SYNC_SCAN) if r.spec.kind == "storage"
                   and r.spec.batch.startswith(f"sync-{name}-" if name else "sync-")]
    runs: dict[str, dict[str, Any]] = {}
    for r in records:
        run = runs.setdefault(r.spec.batch, {"sync": r.spec.batch.split("-")[1], "batch": r.spec.batch,
                                             "what": r.spec.command.split(": ")[0].removeprefix("storage sync "),
                                             "jobs": 0, "succeeded": 0, "failed": 0, "pending": 0,
                                             "files": 0, "skipped": 0, "bytes": 0, "submitted": r.spec.submitted})
        run["jobs"] += 1
        state = r.state.value
        run["succeeded" if state == "succeeded" else "pending" if not r.state.final else "failed"] += 1
        data = (r.result.data or {}) if r.result else {}
        for k in ("files", "skipped", "bytes"):
            run[k] += int(data.get(k, 0) or 0)
    rows = sorted(runs.values(), key=lambda x: x["submitted"] or 0)
    for row in rows:
        row["state"] = ("running" if row["pending"] else "failed" if row["failed"] else "done")
        stamp = row["submitted"]
        row["submitted"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else None
    if not rows:
        raise UsageError(f"no sync {'called ' + name + ' ' if name else ''}in the history")
    print_rows(rows, ["sync", "state", "jobs", "files", "skipped", "bytes", "submitted", "what", "batch"], fmt)
    return 0


#: Newest jobs of the history `sync status` looks through.
SYNC_SCAN = 20000


COMMANDS: dict[str, Any] = {"storage": cmd_storage}
