"""Storage transfers as jobs on the queue (`cmq storage --parallel=N`): the files of one
command split into N jobs of about equal bytes, each a job in the history with its own
retries, run by a worker on this host (queue ``cmq.storage``).

A job that runs again (a retry, or a message redelivered after a worker died) first
looks whether each file is already at its destination with the same SHA-256, and moves
only the others; a sync job always does.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..core.models import JobResult, JobSpec, new_id
from ..queue import routing
from .ops import SAME, Providers, Step, compare, run_steps, to_sync, verified_counts, verified_summary

#: The ``kind`` of a storage transfer job.
KIND = "storage"


def split(steps: list[Step], parts: int) -> list[list[Step]]:
    """``steps`` in at most ``parts`` groups of about equal bytes (largest file first into
    the lightest group), each group in the original order."""
    parts = max(1, min(parts, len(steps)))
    groups: list[list[int]] = [[] for _ in range(parts)]
    weights = [0] * parts
    for i in sorted(range(len(steps)), key=lambda i: -steps[i].size):
        lightest = weights.index(min(weights))
        groups[lightest].append(i)
        weights[lightest] += steps[i].size + 1
    return [[steps[i] for i in sorted(g)] for g in groups if g]


def useful_parallel(steps: list[Step], parallel: int, inventory: Any) -> int:
    """How many jobs ``steps`` go as, for ``--parallel=parallel``: at most one per CPU of
    this host when every file goes between this host and folder services (type local),
    where nothing travels and more jobs only share the same CPUs (and per-job costs)."""
    def here(service: str) -> bool:
        return not service or inventory.storage[service].type == "local"

    if all(here(s.source) and here(s.dest) for s in steps):
        return max(1, min(parallel, os.cpu_count() or 1))
    return parallel


def build(steps: list[Step], parallel: int, what: str, retries: int, sync: bool = False,
          batch: str | None = None) -> list[JobSpec]:
    """The job specs that move ``steps`` in ``parallel`` jobs; ``what`` describes the command."""
    from ..transfer.machine_copy import human_bytes

    batch = batch or new_id("b")
    now = time.time()
    specs = []
    for group in split(steps, parallel):
        total = sum(s.size for s in group)
        specs.append(JobSpec(id=new_id(), command=f"storage {what}: {len(group)} file(s), {human_bytes(total)}",
                             target="storage", queue=routing.queue_for_target("storage"), batch=batch,
                             retries=retries, submitted=now, kind=KIND,
                             params={"steps": [s.to_dict() for s in group], "total": total, "sync": sync}))
    return specs


def preload(inventory: Any) -> None:
    """Import the providers of ``inventory``'s services and what they import (a worker
    calls this from one thread at a time: imports in threads at once can deadlock)."""
    from . import base, local, ops, ssh  # noqa: F401

    if any(c.type not in ("local", "ssh") for c in inventory.storage.values()):
        from libcloud.storage.drivers import azure_blobs, minio, s3  # noqa: F401
        from libcloud.storage.types import ContainerDoesNotExistError  # noqa: F401

        from . import cloud  # noqa: F401


def run(spec: JobSpec, inventory: Any, machine: str, on_progress: Any = None) -> JobResult:
    """Run a storage job here: move each of its files, verified. ``on_progress`` is told
    the bytes moved so far. A failure ends the job (failed, so retried) with the file
    it stopped at; the files moved before it stay (the next attempt skips them)."""
    from ..core.errors import CmqError, ConfigError
    from .base import NotFoundError

    steps = [Step.from_dict(s) for s in spec.params.get("steps", [])]
    providers = Providers(inventory)
    started = time.time()
    moved = skipped = done = 0
    newer: list[Step] = []

    def count(n: int) -> None:
        nonlocal moved
        moved += n
        if on_progress is not None:
            on_progress(moved)

    lines: list[str] = []
    results: list[dict[str, Any]] = []
    try:
        if spec.params.get("sync"):
            todo, skipped, newer = to_sync(providers, steps)
        elif spec.attempt > 1:                 # a retry: what the last attempt stored stays
            verdicts = compare(providers, steps)
            todo = [s for s, v in zip(steps, verdicts, strict=True) if v != SAME]
            skipped = len(steps) - len(todo)
        else:
            todo = steps
        lines += [f"left alone, newer at the destination: {s.describe()}" for s in newer]
        for result in run_steps(providers, todo, count):
            done += 1
            results.append(result)
            lines.append(result["step"])
    except (CmqError, OSError) as e:           # OSError: a local file (gone since the command looked)
        why = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else str(e)
        summary = {"files": done, "skipped": skipped, "bytes": moved}
        return JobResult(job=spec.id, machine=machine, exit_code=None, started=started, ended=time.time(),
                         stdout="\n".join(lines) + ("\n" if lines else ""), reason=f"storage: {why}",
                         data={**summary, "final": isinstance(e, (NotFoundError, ConfigError, FileNotFoundError))})
    finally:
        providers.close()
    verified = verified_counts(results)
    summary = {"files": done, "skipped": skipped, "bytes": moved, "newer": len(newer), "verified": verified}
    checked = verified_summary(verified)
    tail = f"{done} file(s) moved, {skipped} already there, {moved} bytes{', ' + checked if checked else ''}\n"
    return JobResult(job=spec.id, machine=machine, exit_code=0, started=started, ended=time.time(),
                     stdout="\n".join(lines) + ("\n" if lines else "") + tail, data=summary)
