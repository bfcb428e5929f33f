"""Helpers several commands share: the --output format, the rows of a listing, and the
checks made before work goes to the queue."""

from __future__ import annotations

import csv
import sys
from typing import Any

from ..errors import UsageError
from . import output
from .commands import Args

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
    :func:`cmqueue.machine_state.need_a_host_worker`)."""
    from ..machine_state import need_a_host_worker

    need_a_host_worker(cluster, "--parallel and --async need")


def refuse_unfinished(args: Args, names: list[str], what: str, label: str) -> None:
    """UsageError when jobs for the VMs ``names`` (machines carrying ``label``) are
    queued, running or retrying (``what`` them with --force instead)."""
    if not names:
        return
    from ..machine_state import refuse_unfinished as refuse
    from .commands import _cluster

    with _cluster(args, check_keys=False) as c:
        refuse(c, names, label, f"{what} with --force")
