"""The data that travels: job specs, job states, results and events."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field, is_dataclass
from enum import Enum
from typing import Any, Self


class JobStatus(str, Enum):
    """Where a job is in its life. The last four are final."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def final(self) -> bool:
        """True for succeeded, failed, cancelled and lost."""
        return self in FINAL_STATES

    def __str__(self) -> str:
        return self.value


FINAL_STATES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.LOST})
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id(prefix: str = "") -> str:
    """A short id whose first characters are random (so a short prefix names one job, as
    in git), then 8 base-36 chars of the time in ms (so ids never repeat)."""
    ms = int(time.time() * 1000)
    stamp = ""
    for _ in range(8):
        ms, r = divmod(ms, 36)
        stamp = _ALPHABET[r] + stamp
    head = "".join(secrets.choice(_ALPHABET) for _ in range(6))
    return f"{prefix}{head}{stamp}"


#: Characters of an id shown in listings (after a one-letter prefix such as ``b``): the
#: random ones, so two ids made at the same time still differ there.
SHORT_ID = 6


def short_id(job_id: str) -> str:
    """The short form of an id shown in listings: its first SHORT_ID characters (a batch,
    reduce or workflow id keeps its one-letter prefix in front)."""
    keep = SHORT_ID + (1 if job_id[:1] in ("b", "r", "w") and len(job_id) == 15 else 0)
    return job_id[:keep]


class PlainData:
    """Dataclasses that travel as plain dicts (message bodies, events, JSON)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field: nested dataclasses, dicts and lists are copied (as
        ``dataclasses.asdict`` does), the values in them are not (they are plain data);
        ``asdict`` deep-copies each value, a tenth of a second for a job of 1,000 files."""
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = cls.__dataclass_fields__  # type: ignore[attr-defined]
        return cls(**{k: v for k, v in data.items() if k in names})


def _plain(value: Any) -> Any:
    """``value`` with every dataclass in it as a dict, and its dicts and lists copied."""
    kind = type(value)
    if kind is dict:
        return {k: _plain(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return kind(_plain(v) for v in value)
    if kind in _LEAVES:
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


_LEAVES = frozenset({str, int, float, bool, type(None)})


@dataclass
class JobSpec(PlainData):
    """What to run, where and how: the message a worker receives.

    ``target`` is ``machine:<name>``, ``label:<name>`` or ``any``; ``queue`` is the Celery
    queue that target maps to (see :mod:`cmqueue.queue.routing`). ``kind`` is ``job`` (a shell
    command), ``put``/``get`` (a transfer, ``params`` says what) or ``reduce``; ``params``
    also carries a job's staging (``puts``, ``gets``, ``keep``, ``results``).
    """

    id: str
    command: str
    target: str = "any"
    queue: str = ""
    batch: str = ""
    timeout: float | None = None
    retries: int = 0
    env: dict[str, str] = field(default_factory=dict)
    attempt: int = 1
    reroutes: int = 0
    submitted: float = field(default_factory=time.time)
    submitter: str = field(default_factory=lambda: f"{os.uname().nodename}:{os.getpid()}")
    kind: str = "job"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobResult(PlainData):
    """How a run ended: exit code, output tails, times and where it ran."""

    job: str
    machine: str
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    started: float | None = None
    ended: float | None = None
    reason: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    log_host: str = ""
    stdout_log: str = ""
    stderr_log: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.exit_code == 0

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, when both are known."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


@dataclass
class JobRecord:
    """A job as the history store knows it: its spec, state and last result."""

    spec: JobSpec
    state: JobStatus = JobStatus.QUEUED
    machine: str | None = None
    exit_code: int | None = None
    reason: str = ""
    started: float | None = None
    ended: float | None = None
    updated: float = field(default_factory=time.time)
    result: JobResult | None = None

    @property
    def id(self) -> str:
        """The job id."""
        return self.spec.id

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return {
            "id": self.id, "batch": self.spec.batch, "kind": self.spec.kind, "command": self.spec.command,
            "target": self.spec.target, "state": self.state.value, "machine": self.machine,
            "exit_code": self.exit_code, "reason": self.reason, "started": self.started,
            "ended": self.ended, "attempt": self.spec.attempt, "submitted": self.spec.submitted,
            "duration": (self.ended - self.started) if self.started and self.ended else None,
            "stdout": self.result.stdout if self.result else "",
            "stderr": self.result.stderr if self.result else "",
            "reran_after": self.result.data.get("reran_after") if self.result else None,
        }


@dataclass
class Event:
    """One change of a job's state, as carried on the event stream.

    ``id`` is the stream entry id (``<ms>-<seq>``); ``data`` holds the result for final
    states and the reason for retrying ones.
    """

    job: str
    state: JobStatus
    ts: float
    machine: str | None = None
    attempt: int = 1
    data: dict[str, Any] = field(default_factory=dict)
    id: str = ""


def stream_id_key(entry_id: str) -> tuple[int, int]:
    """Sort key of a Redis stream id ``'<ms>-<seq>'``."""
    if not entry_id:
        return (0, 0)
    ms, _, seq = entry_id.partition("-")
    return (int(ms), int(seq or 0))


def next_state(current: JobStatus, new: JobStatus) -> JobStatus | None:
    """The state after applying an event with ``new`` to a job in ``current``.

    Returns None when the event does not apply: a final state never changes again, and
    a queued event never undoes running/retrying.
    """
    if current.final:
        return None
    if new == JobStatus.QUEUED and current != JobStatus.QUEUED:
        return None
    return new
