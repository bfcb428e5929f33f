"""Commands that move data: put, get (and the input cache)."""

from __future__ import annotations

from typing import Any

from ..errors import JobFailedError
from ..models import JobStatus
from . import output
from .commands import Args, _cluster, _number


def _transfer(args: Args, kind: str, machines: str, source: str, dest: str) -> int:
    from ..submit import build_transfers

    with _cluster(args) as c:
        retries = _number(args, "--retries", int)
        _, specs = build_transfers(c.settings.inventory, kind, machines, source, dest,
                                   recursive=args["--recursive"], retries=retries)
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
  cmq put [options] [--recursive] [--retries=N] [--json] SRC MACHINES:DST

MACHINES is a hostlist (node[1-4],gpu1). A relative DST is under each machine's workdir
(where jobs run); a DST ending in / (or empty) receives SRC under its own name. A
directory needs --recursive; its contents become DST. rsync is used where both ends have
it, else a tar stream; each transfer is a job of its own on the machine's queue, shown
with bytes and rate while it runs, and kept in the history.

Options:
  -r --recursive   copy a directory tree
  --retries=N      attempts after a failed transfer [default: 2]
  --json           print the transfers' records as JSON

Examples:
  cmq put corpus.txt 'node[1-4]:'
  cmq put -r inputs/ node1:data/inputs
"""
    from ..submit import split_remote

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
    from ..submit import split_remote

    machines, source = split_remote(args["MACHINES:SRC"], "source")
    return _transfer(args, "get", machines, source, args["DST"] or ".")


COMMANDS: dict[str, Any] = {"put": cmd_put, "get": cmd_get}
