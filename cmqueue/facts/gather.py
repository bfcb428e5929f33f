"""Gathering facts: one job per machine, pinned to it and sent through the queue (so agents
and VMs that only join as workers are reached too), waited for until a deadline, parsed,
and stored in the history with their time. Jobs still queued at the deadline are
cancelled: a machine that does not answer is reported, never waited for forever.

``cluster`` is a :class:`cmqueue.api.cluster.Cluster` (not imported here: the API and the
workflow engine call this module).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config.inventory import Inventory
from ..core.models import JobRecord, JobSpec, JobStatus, new_id
from ..queue import routing
from . import probe

#: Seconds a gather job may run beyond the gather's deadline before the worker kills it.
KILL_MARGIN = 5


@dataclass
class Gathered:
    """Facts of machines as the history has them after a gather, and why some have none
    from this gather."""

    facts: dict[str, dict[str, Any]] = field(default_factory=dict)   #: machine -> {"ts", "facts"}
    errors: dict[str, str] = field(default_factory=dict)             #: machine -> why it did not answer
    gathered: list[str] = field(default_factory=list)                #: machines asked this time

    def rows(self, machines: Iterable[str]) -> list[dict[str, Any]]:
        """One row per machine: ``{"machine", "gathered" (time or None), "facts", "error"}``."""
        out = []
        for m in machines:
            have = self.facts.get(m)
            out.append({"machine": m, "gathered": have["ts"] if have else None,
                        "facts": have["facts"] if have else None, "error": self.errors.get(m)})
        return out


def known_names(inventory: Inventory) -> list[str]:
    """Every fact name an expression may use: the built-ins, then the inventory's own."""
    names = dict.fromkeys(probe.BUILTIN)
    names.update(dict.fromkeys(inventory.facts))
    for m in inventory.machines.values():
        names.update(dict.fromkeys(name for name, _ in m.facts))
    return list(names)


def gather_specs(inventory: Inventory, machines: Sequence[str], deadline: float,
                 probe_limit: float) -> list[JobSpec]:
    """One gather job per machine, pinned to it, in one batch."""
    batch = new_id("b")
    now = time.time()
    return [JobSpec(id=new_id(), command=probe.script(inventory.probes(inventory.machine(m)), probe_limit),
                    target=f"machine:{m}", queue=routing.machine_queue(m), batch=batch,
                    timeout=deadline + KILL_MARGIN, submitted=now)
            for m in machines]


def _failure(rec: JobRecord, timeout: float) -> str:
    if rec.state in (JobStatus.QUEUED, JobStatus.RETRYING):
        why = f"no answer within {timeout:g} s (its gather job was cancelled)"
        return f"{why}: {rec.reason}" if rec.reason else why
    if rec.state == JobStatus.RUNNING:
        return f"gather still running after {timeout:g} s (cancelled)"
    detail = ""
    if rec.result is not None and rec.result.stderr.strip():
        detail = ": " + rec.result.stderr.strip().splitlines()[-1]
    return f"gather {rec.state.value}" + (f" (exit {rec.exit_code})" if rec.exit_code is not None else "") + \
        (f", {rec.reason}" if rec.reason and not detail else "") + detail


def gather(cluster: Any, machines: Sequence[str], timeout: float | None = None) -> Gathered:
    """Gather the facts of ``machines`` now (in parallel, through the queue), store those
    that came back, and return what the history then has. ``timeout`` (default: the
    setting facts_timeout) bounds the wait; jobs not done by then are cancelled."""
    settings = cluster.settings
    timeout = float(timeout if timeout is not None else settings.get("facts_timeout"))
    inv = settings.inventory
    names = list(dict.fromkeys(machines))
    out = Gathered(gathered=names)
    if names:
        specs = gather_specs(inv, names, timeout, float(settings.get("facts_probe_timeout")))
        cluster.send_specs(specs)
        records = {r.id: r for r in cluster.wait([s.id for s in specs], timeout=timeout)}
        late = [s.id for s in specs if s.id not in records or not records[s.id].state.final]
        if late:
            cluster.cancel(late, wait=0)
        for s in specs:
            machine = s.target.partition(":")[2]
            rec = records.get(s.id)
            if rec is not None and rec.state == JobStatus.SUCCEEDED and rec.result is not None:
                facts = probe.parse(rec.result.stdout, inv.probes(inv.machine(machine)))
                cluster.store.set_facts(machine, rec.ended or time.time(), facts)
            else:
                out.errors[machine] = _failure(rec, timeout) if rec else f"no answer within {timeout:g} s"
    out.facts = cluster.store.facts(machines)
    return out


def fresh(cluster: Any, machines: Sequence[str], max_age: float | None = None,
          timeout: float | None = None) -> Gathered:
    """The facts of ``machines``, gathering first those that have none or that are older
    than ``max_age`` seconds (default: the setting facts_max_age)."""
    max_age = float(max_age if max_age is not None else cluster.settings.get("facts_max_age"))
    have = cluster.store.facts(machines)
    oldest = time.time() - max_age
    stale = [m for m in machines if m not in have or have[m]["ts"] < oldest]
    if not stale:
        return Gathered(facts=have)
    got = gather(cluster, stale, timeout=timeout)
    got.facts = cluster.store.facts(machines)
    return got
