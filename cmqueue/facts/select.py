"""Choosing machines by their facts (``--where``), and where jobs go when a choice is made.

:func:`where_machines` is what any caller needs (the command line, a workflow step's
``where:``): the names of the machines whose latest facts match an expression, stale
facts gathered first. :func:`select` gives the same with what a message needs, and
:func:`placement` turns a choice into a :class:`cmqueue.submit.specs.Placement`:

- with ``--on`` or ``--all``: one job on each chosen machine that matches;
- else, when the matching machines are all the enabled ones: any machine (``any`` queue);
- when they are exactly the machines of a label (the ``--label`` given, or any): that label;
- otherwise the jobs are spread over the matching machines, each pinned to one, round robin.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config.inventory import Inventory
from ..core.errors import UsageError
from ..core.hostlist import fold
from ..submit.specs import Placement
from ..submit.specs import placement as plain
from . import where as lang
from .gather import fresh, known_names

#: Names listed one by one in a message (more are folded into a hostlist).
LISTED = 8


class NoMatchError(UsageError):
    """``--where`` matches none of the machines it was given: nothing runs. The message
    says which value each machine had."""

    http_status = 409


def _names(names: Sequence[str]) -> str:
    return ",".join(names) if len(names) <= LISTED else fold(list(names))


@dataclass
class Selection:
    """The machines an expression chose among ``considered``, with the facts it saw."""

    expr: str
    considered: list[str]
    matched: list[str]
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)   #: machine -> {"ts", "facts"}
    errors: dict[str, str] = field(default_factory=dict)             #: machine -> why it has no facts
    names: list[str] = field(default_factory=list)                   #: the fact names the expression uses

    def summary(self) -> str:
        """``where mem_gb>=8 and os==debian: m1,m3 (2 of 4)``."""
        return f"where {self.expr}: {_names(self.matched) or 'none'} ({len(self.matched)} of {len(self.considered)})"

    def why(self) -> str:
        """Why nothing matched: the value of each name on each machine (alike ones folded)."""
        seen: dict[str, list[str]] = {}
        for m in self.considered:
            have = self.facts.get(m)
            if have is None:
                text = "no facts" + (f" ({self.errors[m]})" if m in self.errors else "")
            else:
                text = " ".join(f"{n}={_shown(have['facts'].get(n))}" for n in self.names)
            seen.setdefault(text, []).append(m)
        parts = [f"{_names(ms)}: {text}" for text, ms in seen.items()]
        return f"no machine matches --where {self.expr!r}; " + "; ".join(parts)


def _shown(value: Any) -> str:
    return "null" if value is None else str(value)


def select(cluster: Any, expr: str, among: Sequence[str] | None = None,
           timeout: float | None = None) -> Selection:
    """Which of ``among`` (default: every enabled machine) match ``expr``, by their latest
    facts (gathered first when missing or older than the setting facts_max_age).
    ``cluster`` is a :class:`cmqueue.api.cluster.Cluster`. A wrong expression raises
    :class:`cmqueue.facts.where.WhereError` before anything is gathered."""
    inv: Inventory = cluster.settings.inventory
    tree = lang.parse(expr, known=known_names(inv))
    machines = list(among) if among is not None else [m.name for m in inv.enabled()]
    got = fresh(cluster, machines, timeout=timeout)
    matched = [m for m in machines if m in got.facts and tree.evaluate(got.facts[m]["facts"])]
    return Selection(expr=str(tree), considered=machines, matched=matched, facts=got.facts,
                     errors=got.errors, names=lang.names(tree))


def where_machines(cluster: Any, expr: str, among: Sequence[str] | None = None,
                   timeout: float | None = None) -> list[str]:
    """The names of the machines among ``among`` (default: every enabled one) whose latest
    facts match ``expr``, in inventory order (stale facts gathered first; see :func:`select`)."""
    return select(cluster, expr, among=among, timeout=timeout).matched


def candidates(inventory: Inventory, on: str | None = None, label: str | None = None,
               everywhere: bool = False) -> list[str]:
    """The machines a ``--where`` chooses among, for ``--on``, ``--label`` or ``--all``
    (checked as :func:`cmqueue.submit.specs.placement` checks them)."""
    chosen = plain(inventory, on=on, label=label, everywhere=everywhere)
    if chosen.machines:
        return chosen.machines
    if label:
        return [m.name for m in inventory.with_label(label)]
    return [m.name for m in inventory.enabled()]


def placement(inventory: Inventory, chosen: Selection, label: str | None = None, pinned: bool = False) -> Placement:
    """Where jobs go once ``chosen`` is known (see the module's docstring); ``pinned``:
    ``--on``/``--all`` were given. NoMatchError when nothing matched."""
    matched = chosen.matched
    if not matched:
        raise NoMatchError(chosen.why())
    if pinned:
        return Placement(machines=list(matched))
    same = set(matched)
    if not label and same == {m.name for m in inventory.enabled()}:
        return Placement()
    labels = inventory.labels
    if label and same == set(labels.get(label, ())):
        return Placement(label=label)
    if not label:
        for name, members in labels.items():
            if same == set(members):
                return Placement(label=name)
    start = random.randrange(len(matched))
    return Placement(spread=matched[start:] + matched[:start])
