"""`cmq vdir`: the virtual directory over the storage services."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import output
from .common import Args, load_settings, output_format, print_rows


def cmd_vdir(args: Args) -> int:
    """One tree of names over files kept on the storage services, with replicas.

Usage:
  cmq vdir [options] mkdir DIR
  cmq vdir [options] cd [DIR]
  cmq vdir [options] pwd
  cmq vdir [options] ls [DIR] [--output=OUTPUT]
  cmq vdir [options] add FILEENDPOINT DIR_AND_NAME
  cmq vdir [options] delete DIR_OR_NAME [--purge]
  cmq vdir [options] status DIR_OR_NAME [--verify] [--output=OUTPUT]
  cmq vdir [options] get NAME DESTINATION
  cmq vdir [options] replicate NAME SERVICE...
  cmq vdir [options] prefer NAME SERVICE

Options:
  --output=OUTPUT  table, json or csv [default: table]
  --purge          also delete the replicas on their services
  --verify         compute each replica's SHA-256 where the service does not keep it

Names live in the history store's database (SQLite, or MongoDB); a relative name is
taken from the working directory, which `cd` changes and which lasts between commands.
`add SERVICE:PATH NAME` records a file that is on a service (its SHA-256 is computed
there); a NAME that is a directory receives it under its own name. Another copy of the
same content becomes a replica; different content that is newer updates every replica,
and older content is refused as a conflict. `get` reads the preferred replica (or the
next that works) and checks its SHA-256; given a directory, it gets every file under it.
`replicate` copies a file to more services as {dirname}/{basename}; `prefer` picks the
replica a name resolves to. A name may also be given as {service}/{dirname}/{basename},
one replica. `delete` forgets names (the files stay on their services unless --purge).

Examples:
  cmq vdir mkdir /proj/raw && cmq vdir cd /proj/raw
  cmq vdir add box:incoming/a.csv a.csv
  cmq vdir replicate a.csv s3 && cmq vdir prefer a.csv s3
  cmq vdir get /proj/raw/a.csv ./a.csv
"""
    settings = load_settings(args, check_keys=False)
    with _vdir(settings) as v:
        if args["mkdir"]:
            output.err.print(f"vdir {v.mkdir(args['DIR'])}: directory ready", markup=False, highlight=False)
        elif args["cd"]:
            print(v.cd(args["DIR"]))
        elif args["pwd"]:
            print(v.cwd)
        elif args["ls"]:
            dirs, files = v.ls(args["DIR"])
            rows = [{"name": d.rsplit("/", 1)[-1] + "/", "type": "dir", "path": d} for d in dirs]
            rows += [_file_row(f) for f in files]
            fmt = output_format(args)
            print_rows(rows, ["name", "type", "size", "modified", "preferred", "replicas"] +
                  (["sha256", "path"] if fmt != "table" else []), fmt)
        elif args["add"]:
            record, done = v.add(args["FILEENDPOINT"], args["DIR_AND_NAME"])
            output.err.print(f"vdir {record['path']}: {done} ({len(record['replicas'])} replica(s), "
                             f"preferred {record['preferred']})", markup=False, highlight=False)
        elif args["delete"]:
            count = v.delete(args["DIR_OR_NAME"], purge=args["--purge"])
            kept = "" if args["--purge"] else "; the files stay on their services"
            output.err.print(f"vdir {v.path(args['DIR_OR_NAME'])}: forgotten ({count} file(s){kept})",
                             markup=False, highlight=False)
        elif args["status"]:
            return _status(v, args)
        elif args["get"]:
            path = v.path(args["NAME"])
            if v.db.has_dir(path) and v.db.file(path) is None:
                got = v.get_tree(args["NAME"], Path(args["DESTINATION"]))
                total = sum(r["size"] for r, _ in got)
                output.err.print(f"vdir {path}: {len(got)} file(s), {total} bytes, sha256 verified",
                                 markup=False, highlight=False)
            else:
                record, service = v.get(args["NAME"], Path(args["DESTINATION"]))
                output.err.print(f"vdir {record['path']}: {record['size']} bytes from {service}, sha256 verified",
                                 markup=False, highlight=False)
        elif args["replicate"]:
            record = v.replicate(args["NAME"], args["SERVICE"])
            where = ", ".join(r["service"] for r in record["replicas"])
            output.err.print(f"vdir {record['path']}: replicas on {where}", markup=False, highlight=False)
        elif args["prefer"]:
            record = v.prefer(args["NAME"], args["SERVICE"][0])
            output.err.print(f"vdir {record['path']}: resolves to {record['preferred']}", markup=False, highlight=False)
    return 0


def _file_row(f: dict[str, Any]) -> dict[str, Any]:
    return {"name": f["path"].rsplit("/", 1)[-1], "type": "file", "size": f["size"],
            "modified": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f["mtime"])) if f["mtime"] else None,
            "preferred": f["preferred"], "replicas": ",".join(r["service"] for r in f["replicas"]),
            "sha256": f["sha256"], "path": f["path"]}


def _status(v: Any, args: Args) -> int:
    info = v.status(args["DIR_OR_NAME"], verify=args["--verify"])
    fmt = output_format(args)
    if fmt == "json":
        output.print_json(info)
        return 0
    if info["type"] == "dir":
        print_rows([info], ["path", "type", "files", "bytes", "replicas"], fmt)
        return 0
    rows = [{"path": info["path"], "service": r["service"], "name": r["name"], "size": r["size"],
             "preferred": "yes" if r["preferred"] else "", "state": r["state"]} for r in info["replicas"]]
    print_rows(rows, ["path", "service", "name", "size", "preferred", "state"], fmt)
    return 0 if all(r["state"].startswith("ok") for r in info["replicas"]) else 1


@contextmanager
def _vdir(settings: Any):
    from ..history import open_store
    from ..storage.ops import Providers
    from ..storage.vdir import VirtualDirectory
    from ..storage.vdir_store import backend_for

    store = open_store(settings.history)
    providers = Providers(settings.inventory)
    try:
        yield VirtualDirectory(backend_for(store), providers, settings.home)
    finally:
        providers.close()
        store.close()


COMMANDS: dict[str, Any] = {"vdir": cmd_vdir}
