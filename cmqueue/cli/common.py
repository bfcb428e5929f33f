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
    """Refuse to queue storage jobs that no worker would take: the workers of the
    machines that run here (not agents) consume the queue of host jobs."""
    from ..errors import ServiceError
    from ..machine_state import read_states

    here = [m.name for m in cluster.settings.inventory.enabled() if m.mode != "agent"]
    states = read_states(cluster.redis, here) if here else {}
    if not any(s.get("state") in ("consuming", "ready") for s in states.values()):
        raise ServiceError("--parallel and --async need a worker on this host, and none is running: "
                           + ("start them with `cmq up`" if here else
                              "the inventory has no machine (ssh or local) whose worker would run the jobs"))


def unfinished_on(records: list[Any], names: list[str], label_only_on_vms: bool, label: str) -> list[Any]:
    """The records among ``records`` that ran, or are bound to run, on the VMs ``names``
    (or on ``label``, when only those VMs carry it)."""
    targets = {f"machine:{n}" for n in names}
    if label_only_on_vms:
        targets.add(f"label:{label}")
    return [r for r in records if r.machine in names or r.spec.target in targets]


def refuse_unfinished(args: Args, names: list[str], what: str, label: str) -> None:
    """UsageError when jobs for the VMs ``names`` (machines carrying ``label``) are
    queued, running or retrying."""
    if not names:
        return
    from ..models import JobStatus
    from .commands import _cluster

    with _cluster(args, check_keys=False) as c:
        c.refresh()
        records = [r for s in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING)
                   for r in c.store.jobs(state=s)]
        others = [m for m in c.settings.inventory.enabled() if label in m.labels and m.name not in names]
    pending = unfinished_on(records, names, label_only_on_vms=not others, label=label)
    if pending:
        ids = ", ".join(r.id for r in pending[:5]) + (", ..." if len(pending) > 5 else "")
        raise UsageError(f"{len(pending)} unfinished jobs need the VMs ({ids}): wait for them "
                         f"(`cmq wait`), cancel them (`cmq cancel`), or {what} with --force")
