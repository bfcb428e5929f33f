"""`cmq pool`: content-addressed files on the storage services, with a local cache."""

from __future__ import annotations

from typing import Any

from ..core.errors import UsageError
from . import output
from .common import Args, output_format, print_rows
from .parse import help_hint


def cmd_pool(args: Args) -> int:
    """Files kept by their SHA-256 on storage services, with a local cache of fixed size.

Usage:
  cmq pool [options] upload FILE... [--services=LIST]
  cmq pool [options] download HASH [DESTINATION]
  cmq pool [options] warm HASH...
  cmq pool [options] exists HASH
  cmq pool [options] list [--output=OUTPUT]
  cmq pool [options] usage

Options:
  --services=LIST    services to store uploads on, comma-separated (default: the first
                     storage service of the inventory)
  --cache=DIR        the local cache (default: <cmq home>/pool-cache)
  --capacity=SIZE    the cache's size, such as 2G [default: 1G]
  --output=OUTPUT    table, json or csv [default: table]

`upload` prints each file's SHA-256, the name it has in the pool; the same content is
stored once. `download` prints the path of the file in the cache (or copies it to
DESTINATION), verified; `warm` brings files into the cache; `exists` exits 0 when the
pool has the file. The cache drops the least recently used files to make room; a file
larger than the whole cache is moved but not cached, and the command says so.

Examples:
  h=$(cmq pool upload model.bin) && cmq pool download "$h" /tmp/model.bin
"""
    from ..storage.pool import Pool

    services = [s for s in (args.get("--services") or "").split(",") if s] or None
    with Pool(cache_dir=args.get("--cache"), capacity=args.get("--capacity") or "1G", services=services,
              config=args.get("--config")) as pool:
        if args["upload"]:
            for f in args["FILE"]:
                print(pool.upload(f), flush=True)
                _say_not_cached(pool, f)
        elif args["download"]:
            print(pool.download(args["HASH"][0], args["DESTINATION"]))
            _say_not_cached(pool, args["HASH"][0])
        elif args["warm"]:
            missed = 0
            for h in args["HASH"]:
                if not pool.warm_up(h):
                    missed += 1
                    _say_not_cached(pool, h)
            return 1 if missed else 0
        elif args["exists"]:
            return 0 if pool.exists(args["HASH"][0]) else 1
        elif args["list"]:
            fmt = output_format(args)
            rows = [{**r, "services": ",".join(r["services"]), "cached": "yes" if r["cached"] else ""}
                    for r in pool.hashes()]
            print_rows(rows, ["sha256", "size", "services", "cached"], fmt)
        elif args["usage"]:
            used = pool.cache.used()
            print(f"{used} of {pool.cache.capacity} bytes cached ({pool.usage_ratio():.0%}) in {pool.cache.directory}")
        else:
            raise UsageError(f"pool: say what to do; {help_hint('pool')}")
    return 0


def _say_not_cached(pool: Any, what: str) -> None:
    if pool.not_cached:
        output.err.print(f"pool: {what}: not cached: {pool.not_cached}", markup=False, highlight=False)


COMMANDS: dict[str, Any] = {"pool": cmd_pool}
