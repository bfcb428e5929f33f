"""A workflow's story, one line per step event: as it happens (`cmq run --narrate`,
`cmq resume --narrate`) or from the history (`cmq show WF --narrate`). ``--verbose``
adds each step's output when it ends, every line tagged with the step and machine.

    14:02:11.204  fetch   m1  running    curl -fsSO https://example.org/data.csv
    14:02:12.871  fetch   m1  succeeded  exit 0 in 1.7s
    14:02:12.903  train   m2  checking   creates out/model.bin; else: python3 train.py
    14:02:12.990  train   m2  skipped    done: out/model.bin exists; output of job j-…

A step with a check is "checking" when its job starts: then "skipped", or it runs and
ends "succeeded" (saying why it ran) or "failed".
"""

from __future__ import annotations

import time
from typing import Any

from ..core.models import Event, JobRecord, JobStatus
from ..workflow import goals
from . import output


def _short(text: str, width: int = 60) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= width else s[: width - 1] + "…"


class Narrator:
    """Prints the events of a workflow's jobs once each, in the order they happened.
    ``steps``: job id → step name (every job the workflow ever had, for a replay)."""

    def __init__(self, store: Any, steps: dict[str, str], verbose: bool = False) -> None:
        self.store = store
        self.steps = steps
        self.verbose = verbose
        self.printed: dict[str, int] = {}
        self.seen: dict[str, tuple[str, float | None]] = {}
        self.width = max([len(n) for n in steps.values()] + [4])

    def update(self, records: list[JobRecord]) -> None:
        """Print the events of the jobs that changed since the last call (live use)."""
        fresh: list[tuple[Event, JobRecord]] = []
        for rec in records:
            mark = (rec.state.value, rec.updated)
            if self.seen.get(rec.id) == mark:
                continue
            self.seen[rec.id] = mark
            events = self.store.events(rec.id)
            fresh += [(e, rec) for e in events[self.printed.get(rec.id, 0):]]
            self.printed[rec.id] = len(events)
        for event, rec in sorted(fresh, key=lambda pair: pair[0].ts or 0):
            self.line(event, rec)

    def told(self, records: list[JobRecord]) -> None:
        """Count the events of ``records`` as printed (steps a resumed workflow reuses)."""
        for rec in records:
            self.seen[rec.id] = (rec.state.value, rec.updated)
            self.printed[rec.id] = len(self.store.events(rec.id))

    def replay(self, records: list[JobRecord]) -> None:
        """Print every event of ``records``, oldest first (`cmq show --narrate`)."""
        self.update(records)

    def line(self, event: Event, rec: JobRecord) -> None:
        """One event as a line (and, with verbose, the output of a final one)."""
        step = self.steps.get(event.job, event.job)
        data = event.data or {}
        state = event.state.value
        reason = str(data.get("reason") or "")
        if event.state == JobStatus.SUCCEEDED and goals.was_skipped(reason):
            state, detail = "skipped", reason[len("skipped: "):]
        elif event.state == JobStatus.RUNNING and rec.spec.params.get("check"):
            check = rec.spec.params["check"]
            parts = [f"creates {' '.join(check['creates'])}" if check.get("creates") else "",
                     f"inputs {' '.join(check['inputs'])}" if check.get("inputs") else "",
                     f"done_if {check['done_if']}" if check.get("done_if") else ""]
            state, detail = "checking", f"{', '.join(p for p in parts if p)}; else: {rec.spec.command}"
        elif event.state == JobStatus.RUNNING:
            detail = ("reduce " if rec.spec.kind == "reduce" else "") + rec.spec.command
        elif event.state == JobStatus.SUCCEEDED:
            took = (data["ended"] - data["started"]) if data.get("ended") and data.get("started") else None
            detail = f"exit {data.get('exit_code', 0)}" + (f" in {output.seconds(took)}" if took is not None else "")
            why = (data.get("data") or {}).get("ran_because")
            if why:
                detail += f" (ran: {why})"
        elif event.state == JobStatus.QUEUED:
            detail = reason or ("forced: its check was not run" if rec.spec.params.get("forced") else "")
        else:
            detail = reason or (f"exit {data['exit_code']}" if data.get("exit_code") is not None else "")
        stamp = time.strftime("%H:%M:%S", time.localtime(event.ts)) + f".{int((event.ts % 1) * 1000):03d}"
        output.out.print(f"{stamp}  {step:<{self.width}}  {event.machine or '-':<8} {state:<10} "
                         f"{_short(detail, 160)}".rstrip(), markup=False, highlight=False)
        if self.verbose and event.state.final and data.get("stdout"):
            for text in str(data["stdout"]).rstrip("\n").splitlines():
                output.out.print(f"  {step}@{event.machine or '-'} | {text}", markup=False, highlight=False)
