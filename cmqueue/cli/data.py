"""Commands that move data: put, get (and the input cache)."""

from __future__ import annotations

from typing import Any

from ..core.errors import JobFailedError
from ..core.models import JobStatus
from ..transfer.machine_copy import human_bytes
from . import output
from .common import Args, number_option, open_cluster


def _transfer(args: Args, kind: str, machines: str, source: str, dest: str) -> int:
    from ..submit.specs import build_transfers

    with open_cluster(args) as c:
        retries = number_option(args, "--retries", int)
        _, specs = build_transfers(c.settings.inventory, kind, machines, source, dest,
                                   recursive=args["--recursive"], retries=retries,
                                   relay=args.get("--relay") or "auto")
        c.send_specs(specs)
        view = output.TransferView(specs, c.redis, enabled=not args["--json"])
        with view:
            records = c.wait([s.id for s in specs], on_update=view.update, on_tick=view.tick)
    if args["--json"]:
        output.print_json([{**r.to_dict(), "transfer": r.result.data if r.result else {}} for r in records])
    else:
        for r in records:
            if r.state == JobStatus.SUCCEEDED and r.result:
                output.out.print(r.result.stdout.rstrip(), markup=False, highlight=False)
    bad = [r for r in records if r.state != JobStatus.SUCCEEDED]
    if bad:
        if not args["--json"]:
            output.failures(bad)
        raise JobFailedError(f"{len(bad)} of {len(records)} transfer(s) failed", bad)
    return 0


def cmd_put(args: Args) -> int:
    """Copy a local file or tree to machines, in parallel, verified by checksum.

Usage:
  cmq put [options] [--recursive] [--retries=N] [--relay=MODE] [--json] SRC MACHINES:DST

MACHINES is a hostlist (node[1-4],gpu1). A relative DST is under each machine's workdir
(where jobs run); a DST ending in / (or empty) receives SRC under its own name. A
directory needs --recursive; its contents become DST. rsync is used where both ends have
it, else a tar stream; each transfer is a job of its own on the machine's queue, shown
with bytes and rate (and the machine that feeds it) while it runs, and kept in the
history.

One file to several machines is relayed: it crosses this host's link once per zone
(the inventory's zone:), and the machines pass it on to each other while it arrives,
over connections that each take a one-time token given through this host's ssh session.
Every copy counts only once its SHA-256 matches; a machine whose relay fails or stalls
is fed by another one, or by this host, from the byte it has.

Options:
  -r --recursive   copy a directory tree
  --retries=N      attempts after a failed transfer [default: 2]
  --relay=MODE     auto, off (a direct copy each), chain, or tree:K (each machine feeds
                   up to K others); auto: for a file of 4 MiB or more, a chain
                   (tree:2 past 32 machines) [default: auto]
  --json           print the transfers' records as JSON

Examples:
  cmq put corpus.txt 'node[1-4]:'
  cmq put --relay=tree:2 image.qcow2 'node[1-32]:images/'
  cmq put -r inputs/ node1:data/inputs
"""
    from ..submit.specs import split_remote

    machines, dest = split_remote(args["MACHINES:DST"], "destination")
    return _transfer(args, "put", machines, args["SRC"], dest)


def cmd_get(args: Args) -> int:
    """Copy a file or tree from machines to this one, verified by checksum.

Usage:
  cmq get [options] [--recursive] [--retries=N] [--json] MACHINES:SRC [DST]

A relative SRC is under each machine's workdir. DST defaults to the current directory;
an existing directory receives SRC under its own name. From several machines each copy
lands in DST/<machine>/.

Options:
  -r --recursive   copy a directory tree
  --retries=N      attempts after a failed transfer [default: 2]
  --json           print the transfers' records as JSON

Examples:
  cmq get node1:results.csv .
  cmq get -r 'node[1-4]:out' collected/
"""
    from ..submit.specs import split_remote

    machines, source = split_remote(args["MACHINES:SRC"], "source")
    return _transfer(args, "get", machines, source, args["DST"] or ".")


def cmd_cache(args: Args) -> int:
    """Show or clear the input cache of the machines (what staged jobs' inputs left there).

Usage:
  cmq cache ls [options] [--json] [MACHINES]
  cmq cache usage [options] [--json] [MACHINES]
  cmq cache clear [options] [--json] [MACHINES]

An input staged with --put is kept once per machine under <workdir>/cache/<sha256>, up
to the machine's `cache:` capacity (inventory; default 10GiB), least recently used first
out. `ls` and `usage` read the history store; `clear` empties the caches over ssh, except
inputs of queued or running jobs. MACHINES is a hostlist (default: every machine).

Options:
  --json   print JSON
"""
    import time

    with open_cluster(args) as c:
        inv = c.settings.inventory
        machines = inv.select(args["MACHINES"]) if args["MACHINES"] else list(inv.machines.values())
        c.refresh()
        if args["clear"]:
            return _cache_clear(c, [m for m in machines if m.mode != "agent"], args["--json"])
        names = {m.name for m in machines}
        entries = [e for e in c.store.cache_entries() if e["machine"] in names]
        if args["ls"]:
            if args["--json"]:
                output.print_json(entries)
                return 0
            t = output.Table(show_edge=False, header_style="bold")
            for col in ("machine", "input (sha256)", "size", "cached", "last used"):
                t.add_column(col)
            for e in entries:
                t.add_row(e["machine"], e["sha"][:16], human_bytes(e["size"]),
                          time.strftime("%Y-%m-%d %H:%M", time.localtime(e["added"])),
                          time.strftime("%Y-%m-%d %H:%M", time.localtime(e["last_used"])))
            output.out.print(t if entries else "no cached inputs")
            return 0
        rows = []
        for m in machines:
            mine = [e for e in entries if e["machine"] == m.name]
            used = sum(e["size"] for e in mine)
            rows.append({"machine": m.name, "entries": len(mine), "bytes": used, "capacity": m.cache,
                         "percent": round(100 * used / m.cache, 1) if m.cache else None})
        if args["--json"]:
            output.print_json(rows)
            return 0
        t = output.Table(show_edge=False, header_style="bold")
        for col in ("machine", "inputs", "used", "capacity", "%"):
            t.add_column(col, justify="left" if col == "machine" else "right")
        for r in rows:
            t.add_row(r["machine"], str(r["entries"]), human_bytes(r["bytes"]), human_bytes(r["capacity"]),
                      f"{r['percent']}")
        output.out.print(t)
    return 0


def _cache_clear(c: Any, machines: list[Any], as_json: bool) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from ..machine.runner import control_dir
    from ..machine.ssh import control_path
    from ..transfer.machine_copy import Transfer, TransferError
    from ..transfer.staging import Stager

    def clear(m: Any) -> dict[str, Any]:
        ctl = control_path(control_dir(), m, 0) if m.mode == "ssh" else None
        try:
            removed, kept = Stager(Transfer(m, ctl), c.redis, m.cache).clear()
        except TransferError as e:
            return {"machine": m.name, "removed": 0, "kept": 0, "error": str(e)}
        c.store.cache_update(m.name, evicted=removed)
        return {"machine": m.name, "removed": len(removed), "kept": len(kept), "error": ""}

    with ThreadPoolExecutor(max_workers=min(16, max(1, len(machines)))) as pool:
        rows = list(pool.map(clear, machines))
    if as_json:
        output.print_json(rows)
    else:
        for r in rows:
            if r["error"]:
                output.err.print(f"{r['machine']}: {r['error']}", markup=False)
            else:
                output.out.print(f"{r['machine']}: removed {r['removed']} input(s)"
                                 + (f", kept {r['kept']} needed by queued or running jobs" if r["kept"] else ""))
    return 1 if any(r["error"] for r in rows) else 0


COMMANDS: dict[str, Any] = {"put": cmd_put, "get": cmd_get, "cache": cmd_cache}
