"""Helpers several commands share: the --output format, the rows of a listing, and the
checks made before work goes to the queue."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from typing import Any

from ..config.settings import Settings, resolve
from ..core.errors import UsageError
from . import output

#: The options every command takes, appended to each command's usage.
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

#: A command's parsed arguments (docopt's dictionary).
Args = dict[str, Any]


def load_settings(args: Args, check_keys: bool = True) -> Settings:
    """The settings the global options of ``args`` resolve to (see :func:`cmqueue.config.settings.resolve`)."""
    return resolve(args.get("--config"), broker=args.get("--broker"), history=args.get("--history"),
                   check_keys=check_keys)


def open_cluster(args: Args, check_keys: bool = True, listing: bool = False) -> Any:
    """A :class:`~cmqueue.api.cluster.Cluster` on the settings of ``args`` (``listing``: trust
    the recorder to keep the history in step)."""
    from ..api.cluster import Cluster

    return Cluster(load_settings(args, check_keys=check_keys), trust_recorder=listing)


def number_option(args: Args, key: str, kind: Callable[[str], Any] = float) -> Any:
    """The value of option ``key`` as a ``kind`` (None when not given); UsageError naming it otherwise."""
    value = args.get(key)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        raise UsageError(f"{key}={value}: not a valid {'integer' if kind is int else 'number'}") from None


def staging_options(args: Args) -> dict[str, Any]:
    """build_specs' staging keywords from --put/--get/--keep/--results."""
    return {"puts": args.get("--put") or [], "gets": args.get("--get") or [], "keep": bool(args.get("--keep")),
            "results": args.get("--results")}


#: The formats of ``--output``.
OUTPUTS = ("table", "json", "csv")


def output_format(args: Args) -> str:
    """The ``--output`` format (table when not given); UsageError for another."""
    value = args.get("--output") or "table"
    if value not in OUTPUTS:
        raise UsageError(f"--output={value}: must be one of {', '.join(OUTPUTS)}")
    return value


def print_rows(items: list[dict[str, Any]], columns: list[str], fmt: str) -> None:
    """Print ``items`` as ``fmt``: JSON, CSV of ``columns``, or aligned plain columns."""
    if fmt == "json":
        output.print_json(items)
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        for r in items:
            writer.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
        sys.stdout.flush()
    else:
        output.plain_rows([columns, *[["-" if r.get(c) in (None, "") else str(r.get(c)) for c in columns]
                                      for r in items]])


def need_a_worker(cluster: Any) -> None:
    """Refuse to queue storage jobs that no worker would take (see
    :func:`cmqueue.fleet.machine_state.need_a_host_worker`)."""
    from ..fleet.machine_state import need_a_host_worker

    need_a_host_worker(cluster, "--parallel and --async need")


def refuse_unfinished(args: Args, names: list[str], what: str, label: str) -> None:
    """UsageError when jobs for the VMs ``names`` (machines carrying ``label``) are
    queued, running or retrying (``what`` them with --force instead)."""
    if not names:
        return
    from ..fleet.machine_state import refuse_unfinished as refuse

    with open_cluster(args, check_keys=False) as c:
        refuse(c, names, label, f"{what} with --force")
