"""`cmq machines facts` and `cmq submit --where`: the command line's side of
:mod:`cmqueue.facts` (gathering, showing, choosing machines by facts)."""

from __future__ import annotations

import time
from typing import Any

from ..core.errors import UsageError
from ..facts.gather import Gathered, fresh, gather, known_names
from ..facts.probe import BUILTIN
from ..facts.select import candidates, placement, select
from ..submit.specs import Placement
from . import output
from .common import Args, number_option, open_cluster


def _age(ts: float | None) -> str:
    if ts is None:
        return "-"
    age = max(0.0, time.time() - ts)
    return f"{age:.0f}s ago" if age < 120 else f"{age / 60:.0f}m ago" if age < 7200 else f"{age / 3600:.0f}h ago"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def machines_facts(args: Args) -> int:
    """`cmq machines facts [NAMES]`: gather (or with --cached, read) and print the facts.
    Exits 1 when a machine did not answer."""
    timeout = number_option(args, "--timeout")
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    with open_cluster(args) as c:
        inv = c.settings.inventory
        machines = [m.name for m in (inv.select(args["NAMES"]) if args["NAMES"] else inv.enabled())]
        if args["--cached"]:
            got = Gathered(facts=c.store.facts(machines))
        elif args["--max-age"] is not None:
            got = fresh(c, machines, max_age=number_option(args, "--max-age"), timeout=timeout)
        else:
            got = gather(c, machines, timeout=timeout)
        names = [n for n in known_names(inv) if n in BUILTIN or any(
            r["facts"] and n in r["facts"] for r in got.facts.values())]
        rows = got.rows(machines)
    if args["--json"]:
        output.print_json(rows)
    else:
        header = ["machine", *names, "gathered"]
        cells = []
        for r in rows:
            if r["facts"] is None:
                cells.append([r["machine"], *["-"] * len(names), r["error"] or "no facts yet"])
            else:
                stale = f" ({r['error']})" if r["error"] else ""
                cells.append([r["machine"], *(_cell(r["facts"].get(n)) for n in names), _age(r["gathered"]) + stale])
        output.plain_rows([header, *cells])
    return 1 if got.errors else 0


def where_placement(c: Any, args: Args) -> Placement:
    """The placement of `cmq submit --where=EXPR` (with --on, --label or --all as filters);
    says on stderr which machines matched. NoMatchError (exit 2) when none did."""
    inv = c.settings.inventory
    among = candidates(inv, on=args["--on"], label=args["--label"], everywhere=args["--all"])
    chosen = select(c, args["--where"], among=among)
    where = placement(inv, chosen, label=args["--label"], pinned=bool(args["--on"] or args["--all"]))
    how = (" (one job each)" if where.machines else f" (label {where.label})" if where.label
           else " (jobs spread over them, pinned in turn)" if where.spread else " (any machine)")
    output.err.print(chosen.summary() + how, markup=False, highlight=False)
    return where
