"""What became of the jobs of a fault test, counted where it happened.

Every job appends its id to a run log as its first act, so the log on the machines is
the truth about how often it started. The history store (`cmq status --json`) says how
each job ended and whether cmq reported a second run (``reran_after``). A :class:`Tally`
puts both side by side; tests assert on it, and with ``CMQ_FAULT_FIGURES=FILE`` each
tally is also appended to FILE as a JSON line, from which ``bench/reliability.py``
writes the table of docs/reliability.md.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

FINAL = ("succeeded", "failed", "cancelled")


def marked(log: Path, command: str) -> str:
    """``command`` preceded by the append of the job's id to ``log`` (an absolute path)."""
    return f"echo $CMQ_JOB_ID >> {log}; {command}"


@dataclass
class Tally:
    """Counts for one fault: accepted jobs, how they ended, how often they ran."""

    fault: str
    accepted: int
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    lost: int = 0
    ran_once: int = 0
    ran_twice: int = 0
    reported: int = 0
    never_ran: int = 0
    seconds: float = 0.0
    #: Seconds from the fault to the last interrupted job starting again (None: not measured).
    recovery: float | None = None
    unreported: list[str] = field(default_factory=list)
    unaccounted: list[str] = field(default_factory=list)

    def check(self, may_fail: bool = False) -> None:
        """The target: nothing lost, every second run reported, and (unless the fault
        makes jobs fail, as a full disk does) every job succeeded."""
        assert self.lost == 0 and not self.unaccounted, self
        assert not self.unreported, self
        if not may_fail:
            assert self.succeeded == self.accepted, self

    def record(self) -> None:
        """Append this tally to ``$CMQ_FAULT_FIGURES`` when it is set."""
        path = os.environ.get("CMQ_FAULT_FIGURES")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps(asdict(self)) + "\n")


def count(fault: str, records: list[dict], log: Path, seconds: float = 0.0) -> Tally:
    """Tally ``records`` (``cmq status --json`` rows) against the run log ``log``."""
    runs = Counter(log.read_text().split()) if log.exists() else Counter()
    t = Tally(fault=fault, accepted=len(records), seconds=round(seconds, 1))
    for r in records:
        state, n = r["state"], runs.get(r["id"], 0)
        if state in FINAL:
            setattr(t, state, getattr(t, state) + 1)
        else:
            t.lost += 1
            if state != "lost":
                t.unaccounted.append(f"{r['id']} {state}")
        if n == 0:
            t.never_ran += 1
        elif n == 1:
            t.ran_once += 1
        else:
            t.ran_twice += 1
            if r.get("reran_after"):
                t.reported += 1
            else:
                t.unreported.append(r["id"])
    return t
