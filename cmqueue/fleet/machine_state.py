"""Where a worker reports its machine's state (consuming, unreachable, stopped) in Redis,
and how a client reads it. Knows nothing of Celery, so clients stay light."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..core.models import JobRecord, JobStatus
from ..core.redis_batch import hgetall_many


def machine_key(machine: str) -> str:
    """Redis hash where a worker reports its machine's state."""
    return f"cmq:machine:{machine}"


def read_states(client: Any, names: Iterable[str]) -> dict[str, dict[str, str]]:
    """machine -> the fields its worker reported (machines never reported are left out)."""
    names = list(names)
    found = {}
    for name, info in zip(names, hgetall_many(client, [machine_key(n) for n in names]), strict=True):
        if info:
            found[name] = {k.decode(): v.decode() for k, v in info.items()}
    return found


def waiting_reason(machine: str, why: str) -> str:
    """The reason a job pinned to ``machine`` waits, from the error that paused it."""
    detail = why.removeprefix(f"{machine} unreachable: ").strip() or "no answer"
    return f"waiting for {machine}: unreachable: {detail}"


def pinned_machine(record: JobRecord) -> str | None:
    """The machine a job is pinned to (``--on``/``--all``), or None."""
    kind, _, name = record.spec.target.partition(":")
    return name if kind == "machine" else None


def unexplained(records: Iterable[JobRecord]) -> list[JobRecord]:
    """The queued jobs pinned to a machine whose wait has no reason yet."""
    return [r for r in records if r.state == JobStatus.QUEUED and not r.reason and pinned_machine(r)]


def explain_waiting(client: Any, records: Iterable[JobRecord]) -> None:
    """Give each queued job pinned to a machine that cannot take it now the reason it
    waits: its worker reports the machine unreachable, or no worker serves it."""
    waiting = unexplained(records)
    if not waiting:
        return
    states = read_states(client, {pinned_machine(r) for r in waiting})
    for r in waiting:
        name = pinned_machine(r)
        info = states.get(name) or {}
        if info.get("state") == "unreachable":
            r.reason = waiting_reason(name, info.get("reason", ""))
        elif info.get("state") in (None, "stopped"):
            r.reason = f"waiting for {name}: no worker serves it (start one with `cmq up`)"


def need_a_host_worker(cluster: Any, what: str) -> None:
    """ServiceError unless a worker runs on this host to take host jobs (storage
    transfers, cloud actions): the workers of the machines that run here, not agents.
    ``what`` starts the message (``--parallel and --async need``)."""
    from ..core.errors import ServiceError

    here = [m.name for m in cluster.settings.inventory.enabled() if m.mode != "agent"]
    states = read_states(cluster.redis, here) if here else {}
    if not any(s.get("state") in ("consuming", "ready") for s in states.values()):
        raise ServiceError(f"{what} a worker on this host, and none is running: "
                           + ("start them with `cmq up`" if here else
                              "the inventory has no machine (ssh or local) whose worker would run the jobs"))


def unfinished_on(records: list[JobRecord], names: list[str], label_only_on_vms: bool, label: str) -> list[JobRecord]:
    """The records among ``records`` that ran, or are bound to run, on the VMs ``names``
    (or on ``label``, when only those VMs carry it)."""
    targets = {f"machine:{n}" for n in names}
    if label_only_on_vms:
        targets.add(f"label:{label}")
    return [r for r in records if r.machine in names or r.spec.target in targets]


def refuse_unfinished(cluster: Any, names: list[str], label: str, instead: str) -> None:
    """UsageError when jobs for the machines ``names`` (which carry ``label``) are queued,
    running or retrying; the message ends with ``instead`` (``or delete with --force``)."""
    from ..core.errors import UsageError

    if not names:
        return
    cluster.refresh()
    records = [r for s in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING)
               for r in cluster.store.jobs(state=s)]
    others = [m for m in cluster.settings.inventory.enabled() if label in m.labels and m.name not in names]
    pending = unfinished_on(records, names, label_only_on_vms=not others, label=label)
    if pending:
        ids = ", ".join(r.id for r in pending[:5]) + (", ..." if len(pending) > 5 else "")
        raise UsageError(f"{len(pending)} unfinished jobs need the VMs ({ids}): wait for them "
                         f"(`cmq wait`), cancel them (`cmq cancel`), or {instead}")
