"""The store interface every history backend implements (one contract test covers all)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from ..core.errors import UnknownJobError
from ..core.models import Event, JobRecord, JobStatus, next_state


def job_changes(current: JobStatus, ev: Event) -> dict[str, Any] | None:
    """The job fields an event changes (``result`` as a dict), or None when it does not
    apply (see :func:`cmqueue.core.models.next_state`). Shared by every backend."""
    new = next_state(current, ev.state)
    if new is None:
        return None
    d = ev.data
    sets: dict[str, Any] = {"state": new.value, "updated": ev.ts, "attempt": ev.attempt,
                            "reason": d.get("reason", "")}
    if ev.machine:
        sets["machine"] = ev.machine
    if new == JobStatus.RUNNING:
        sets["started"] = ev.ts
        sets["ended"] = None
    if "exit_code" in d:
        sets["exit_code"] = d["exit_code"]
        sets["result"] = d
        sets["started"] = d.get("started")
        sets["ended"] = d.get("ended")
    if new.final and "ended" not in sets:
        sets["ended"] = ev.ts
    return sets


def cache_change(ev: Event) -> dict[str, Any] | None:
    """The input-cache change an event carries (staged jobs), if any."""
    cache = (ev.data.get("data") or {}).get("cache")
    return cache if isinstance(cache, dict) and cache.get("machine") else None


class HistoryStore(ABC):
    """Persistent record of jobs and of the events that moved them.

    Events are applied by :meth:`apply`, which also remembers the stream id it reached
    (the cursor) in the same transaction, so applying the same events twice changes
    nothing.
    """

    @abstractmethod
    def add(self, records: Iterable[JobRecord]) -> None:
        """Insert new jobs (state queued); each gets a 'queued' event."""

    @abstractmethod
    def apply(self, events: list[Event], cursor: str | None = None) -> int:
        """Apply ``events`` in order; with ``cursor``, skip those at or before the stored
        cursor and store ``cursor`` as the new one. Returns how many changed a job."""

    @abstractmethod
    def cursor(self) -> str:
        """Stream id of the last applied stream event ('' when none)."""

    @property
    def identity(self) -> str:
        """A name of this store, the same in every process that uses it (the event
        stream is trimmed by what each store applied: see :mod:`.readers`)."""
        return f"{type(self).__name__}-{id(self)}"

    @abstractmethod
    def get(self, job_id: str) -> JobRecord | None:
        """The job with exactly this id, or None."""

    def get_many(self, ids: list[str]) -> list[JobRecord]:
        """The jobs with these ids that exist (order not guaranteed)."""
        return [r for r in (self.get(i) for i in ids) if r is not None]

    @abstractmethod
    def by_prefix(self, prefix: str, limit: int = 2) -> list[JobRecord]:
        """Jobs whose id starts with ``prefix`` (at most ``limit``)."""

    @abstractmethod
    def batch_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Ids of batches starting with ``prefix`` (at most ``limit``)."""

    @abstractmethod
    def batch(self, batch_id: str) -> list[JobRecord]:
        """Jobs submitted together under ``batch_id``, in submission order."""

    @abstractmethod
    def jobs(self, state: JobStatus | None = None, last: int | None = None) -> list[JobRecord]:
        """Jobs, oldest first; only ``state`` if given; only the newest ``last`` if given."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (states with none are left out)."""

    @abstractmethod
    def events(self, job_id: str) -> list[Event]:
        """Every event of one job, in the order applied."""

    @abstractmethod
    def cache_update(self, machine: str, added: list[list] = (), used: list[str] = (), evicted: list[str] = (),
                     ts: float | None = None) -> None:
        """Record inputs cached on ``machine`` ([sha, size] pairs), used again, or evicted."""

    @abstractmethod
    def cache_entries(self, machine: str | None = None) -> list[dict]:
        """Cached inputs (machine, sha, size, added, last_used), least recently used first."""

    @abstractmethod
    def add_workflow(self, workflow: dict, steps: list[dict]) -> None:
        """Record a new workflow (id, expr, source, created, reducer, final) and its steps
        (name, kind, seq, spec, operands, job)."""

    @abstractmethod
    def set_step_jobs(self, workflow: str, jobs: dict[str, dict]) -> None:
        """Point steps at new jobs: {step name: {"job": id, "spec": spec dict, "operands": ...}}."""

    @abstractmethod
    def workflow(self, workflow_id: str) -> dict | None:
        """The workflow with its steps (in order), or None."""

    @abstractmethod
    def workflows(self, last: int | None = None) -> list[dict]:
        """Workflows without their steps, oldest first (only the newest ``last``)."""

    @abstractmethod
    def workflow_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Ids of workflows starting with ``prefix``."""

    @abstractmethod
    def step_successes(self, step: str, limit: int = 20) -> list[JobRecord]:
        """The latest jobs of workflow steps named ``step`` (in any workflow) that
        succeeded, newest first: what a step that is already done reuses."""

    @abstractmethod
    def set_facts(self, machine: str, ts: float, facts: dict[str, Any]) -> None:
        """Record the facts gathered on ``machine`` at ``ts`` (they replace older ones)."""

    @abstractmethod
    def facts(self, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """The latest facts of each machine (only ``names``, when given):
        ``{machine: {"ts": time gathered, "facts": {name: value}}}``."""

    @abstractmethod
    def add_schedule(self, schedule: dict) -> bool:
        """Record a new schedule (the fields of :class:`cmqueue.schedules.model.Schedule`);
        False, and nothing changes, when one of that name exists."""

    @abstractmethod
    def schedule(self, name: str) -> dict | None:
        """The schedule named ``name``, or None."""

    @abstractmethod
    def schedules(self) -> list[dict]:
        """Every schedule, by name."""

    @abstractmethod
    def update_schedule(self, name: str, changes: dict) -> bool:
        """Set the fields ``changes`` of schedule ``name``; False when there is none."""

    @abstractmethod
    def claim_schedule(self, name: str, due: float, changes: dict, count: str | None = None) -> bool:
        """Compare-and-set: when schedule ``name``'s ``checked`` time is before ``due``, set
        it to ``due``, set ``changes`` and add one to the field ``count``, and return True;
        else change nothing and return False. Of the callers that claim one due time, one
        gets True: that one fires it."""

    @abstractmethod
    def remove_schedule(self, name: str) -> bool:
        """Forget schedule ``name``; False when there was none."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def resolve(self, refs: Iterable[str]) -> list[JobRecord]:
        """Jobs named by ids, batch ids or unique id prefixes; UnknownJobError otherwise."""
        out: dict[str, JobRecord] = {}
        for ref in refs:
            rec = self.get(ref)
            if rec is not None:
                out[rec.id] = rec
                continue
            members = self.batch(ref)
            if members:
                out.update((r.id, r) for r in members)
                continue
            found = self.by_prefix(ref)
            batches = self.batch_ids(ref)
            if len(found) + len(batches) > 1:
                raise UnknownJobError(f"{ref!r} matches several jobs or batches; give more of the id")
            if found:
                out[found[0].id] = found[0]
            elif batches:
                out.update((r.id, r) for r in self.batch(batches[0]))
            else:
                raise UnknownJobError(f"no job or batch {ref!r} in the history")
        return list(out.values())
