"""A schedule's fields, how they are checked, and what is due at a given time.

``checked`` is the time up to which the schedule's due times have been dealt with (fired
or skipped); it starts at the schedule's creation, and at the moment it is unpaused. A
firing moves it forward by compare-and-set in the store, which is what makes a due time
fire once (see :meth:`cmqueue.history.base.HistoryStore.claim_schedule`).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..core.errors import UsageError
from .cron import Cron

#: What a schedule does about due times that passed while nothing fired them.
CATCHUP = ("once", "skip")
#: A schedule's name: letters, digits, ``.``, ``_``, ``-``; a letter or digit first.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class Schedule:
    """One schedule as the history store keeps it."""

    name: str
    cron: str
    kind: str                                   #: ``command`` or ``workflow``
    command: str = ""
    on: str | None = None                       #: placement of a command, as `cmq submit` takes it
    label: str | None = None
    all: bool = False
    timeout: float | None = None
    retries: int = 0
    env: dict[str, str] = field(default_factory=dict)
    expr: str = ""                              #: a workflow's expression
    tasks: str = ""                             #: the absolute path of its tasks file
    catchup: str = "once"
    paused: bool = False
    created: float = 0.0
    checked: float = 0.0                        #: due times up to here are dealt with
    last_due: float | None = None               #: the due time of the last firing
    last_fired: float | None = None             #: when it fired
    last_id: str | None = None                  #: the batch or workflow it made
    last_error: str = ""                        #: why the last firing failed ('' when it did not)
    fired: int = 0
    skipped: int = 0                            #: due times skipped (``catchup: skip``)

    def to_dict(self) -> dict[str, Any]:
        """The fields as the store keeps them."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schedule:
        """A schedule from what the store kept (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def what(self) -> str:
        """What a firing does, in one line."""
        if self.kind == "workflow":
            return f"workflow {self.expr} (tasks {self.tasks})"
        where = (f"--on={self.on}" if self.on else f"--label={self.label}" if self.label
                 else "--all" if self.all else "")
        return f"{where} {self.command}".strip()


def check_name(name: str) -> str:
    """``name`` when it may name a schedule; UsageError otherwise."""
    if not NAME.fullmatch(name):
        raise UsageError(f"schedule name {name!r}: use letters, digits, '.', '_' and '-' "
                         "(a letter or digit first, at most 64)")
    return name


def check_catchup(value: str) -> str:
    """``value`` when it is one of :data:`CATCHUP`; UsageError otherwise."""
    if value not in CATCHUP:
        raise UsageError(f"--catchup={value}: must be one of {', '.join(CATCHUP)}")
    return value


@dataclass(frozen=True)
class Decision:
    """What one look at a schedule at time ``now`` found."""

    fire: float | None = None                   #: the due time to fire now
    skip: float | None = None                   #: the due time up to which to skip, firing nothing
    next: float = math.inf                      #: the next due time after this look


def decide(schedule: Schedule, cron: Cron, now: float, late: float) -> Decision:
    """What is due at ``now``: the latest due time after ``checked``, fired once however
    many passed. With ``catchup: skip``, a due time more than ``late`` seconds ago was
    missed and is skipped. A paused schedule has nothing due."""
    if schedule.paused:
        return Decision()
    due = cron.latest_due(schedule.checked, now)
    following = cron.next_after(max(now, schedule.checked))
    if due is None:
        return Decision(next=following)
    if schedule.catchup == "skip" and now - due > late:
        return Decision(skip=due, next=following)
    return Decision(fire=due, next=following)
