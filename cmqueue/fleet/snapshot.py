"""Snapshots of the cluster: for `cmq top`, machines with slots used and free, the depth
of every queue, and the jobs running now. Reads the broker and the history store."""

from __future__ import annotations

import time
from typing import Any

from ..core.defaults import HOST_QUEUE, SHARED_QUEUE
from ..core.models import JobStatus
from ..queue import routing
from .machine_state import machine_key, read_states
from .services import Services

#: kombu's Redis transport keeps a queue's messages of priority N in "<queue>\x06\x16N".
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_depths(client: Any, queues: list[str]) -> dict[str, int]:
    """Messages waiting in each queue (all priority levels)."""
    pipe = client.pipeline(transaction=False)
    for q in queues:
        for suffix in _PRIORITY_SUFFIXES:
            pipe.llen(q + suffix)
    counts = pipe.execute()
    n = len(_PRIORITY_SUFFIXES)
    return {q: sum(counts[i * n:(i + 1) * n]) for i, q in enumerate(queues)}


def snapshot(cluster: Any) -> dict[str, Any]:
    """Machines, queues and running jobs, now."""
    inv = cluster.settings.inventory
    cluster.refresh()
    running = cluster.store.jobs(state=JobStatus.RUNNING)
    per_machine: dict[str, int] = {}
    for r in running:
        if r.machine:
            per_machine[r.machine] = per_machine.get(r.machine, 0) + 1
    client = cluster.redis
    pipe = client.pipeline(transaction=False)
    for m in inv.machines.values():
        pipe.hgetall(machine_key(m.name))
    states = pipe.execute()
    queues = [routing.machine_queue(m.name) for m in inv.machines.values()]
    queues += [routing.label_queue(lb) for lb in inv.labels] + [SHARED_QUEUE, HOST_QUEUE]
    depths = queue_depths(client, queues)
    machines = []
    for m, info in zip(inv.machines.values(), states, strict=True):
        info = {k.decode(): v.decode() for k, v in info.items()}
        used = per_machine.get(m.name, 0)
        machines.append({"machine": m.name, "state": info.get("state", "no worker") if m.enabled else "disabled",
                         "slots": m.slots, "used": used, "free": max(0, m.slots - used),
                         "queued": depths[routing.machine_queue(m.name)], "labels": list(m.labels),
                         "reason": info.get("reason", "")})
    now = time.time()
    return {
        "time": now, "machines": machines,
        "queues": [{"queue": q, "waiting": n} for q, n in depths.items()],
        "running": [{"job": r.id, "machine": r.machine, "for": round(now - r.started, 1) if r.started else None,
                     "command": r.spec.command} for r in running],
    }


def machine_rows(settings: Any) -> list[dict[str, Any]]:
    """Each machine of the inventory as `cmq machines --json` and the API show it: its
    settings, its worker's state (``-`` when none reported), and for an agent whether
    it joined."""
    live = _worker_states(settings)
    joined = Services(settings).records().get("agents") or {}
    rows = []
    for m in settings.inventory.machines.values():
        row = m.to_dict()
        row["worker"] = live.get(m.name, {}).get("state", "-")
        if m.mode == "agent":
            row["joined"] = m.name in joined
        rows.append(row)
    return rows


def _worker_states(settings: Any) -> dict[str, dict[str, str]]:
    """What each machine's worker reported, read from the broker (nothing when it is down)."""
    if not settings.broker:
        return {}
    import redis

    try:
        from ..queue.broker import connect

        client = connect(settings.broker, socket_connect_timeout=1, socket_timeout=1)
        return read_states(client, settings.inventory.machines)
    except (redis.RedisError, OSError):
        return {}
