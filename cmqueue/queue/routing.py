"""Queue names and which queues a machine's worker consumes.

``cmq.m.<machine>`` holds jobs pinned to one machine, ``cmq.l.<label>`` jobs for any
machine with a label, ``cmq.any`` untargeted jobs, ``cmq.host`` host jobs (storage transfers, cloud actions:
done in a worker process here, not on a machine). A machine's worker consumes its own
queue, its labels' queues and the shared queue, so untargeted work goes to whichever
machine frees a slot first.
"""

from __future__ import annotations

from kombu import Queue

from ..config.inventory import Inventory, Machine
from ..core.defaults import HOST_QUEUE, SHARED_QUEUE


def machine_queue(name: str) -> str:
    """Queue of jobs pinned to machine ``name``."""
    return f"cmq.m.{name}"


def label_queue(label: str) -> str:
    """Queue of jobs for any machine with ``label``."""
    return f"cmq.l.{label}"


#: Targets of host jobs: storage transfers and cloud actions.
HOST_TARGETS = ("storage", "cloud")


def queue_for_target(target: str) -> str:
    """Queue for a job target: ``machine:<name>``, ``label:<name>`` or ``any``."""
    kind, _, name = target.partition(":")
    if kind == "machine":
        return machine_queue(name)
    if kind == "label":
        return label_queue(name)
    if target == "any":
        return SHARED_QUEUE
    if target in HOST_TARGETS:
        return HOST_QUEUE
    raise ValueError(f"bad job target {target!r}")


def worker_queues(machine: Machine) -> list[str]:
    """Queues the worker of ``machine`` consumes, own queue first; host jobs last (unless
    the machine says ``host_jobs: false``, as joined cloud VMs do),
    and not on an agent (it runs on another host, where the controller's files are not)."""
    queues = [machine_queue(machine.name), *(label_queue(lb) for lb in machine.labels), SHARED_QUEUE]
    return queues if machine.mode == "agent" or not machine.host_jobs else [*queues, HOST_QUEUE]


def all_queues(inventory: Inventory) -> list[Queue]:
    """Every queue the inventory implies, as kombu Queues (for ``task_queues``)."""
    names: list[str] = []
    for m in inventory.machines.values():
        for q in worker_queues(m):
            if q not in names:
                names.append(q)
    for q in (SHARED_QUEUE, HOST_QUEUE):
        if q not in names:
            names.append(q)
    return [Queue(n, routing_key=n) for n in names]
