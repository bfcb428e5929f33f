"""Who feeds whom in a relay: the shape (chain or tree) chosen for one payload and a set
of machines, and the way around a machine that failed.

A plan maps every machine to its feeder: another machine, or :data:`CONTROLLER` (this
host, over its own link). Machines of one zone (the inventory's ``zone:``) feed only
each other: each zone gets its own copy over the controller's link.

Modes (``--relay``):
  off       every machine is fed by the controller (a direct copy each, as before)
  chain     per zone, a pipelined chain: the controller feeds the first machine, each
            machine feeds the next while it receives. Every machine sends once, so the
            time is about one copy plus a little per hop.
  tree:K    per zone, a tree in which every machine feeds up to K others: fewer hops
            (log_K of the machines) for K times the sending on each relay's link.
  auto      chain (tree:2 past :data:`AUTO_CHAIN_MAX` machines), where relaying can
            pay: off for one machine, for a payload under :data:`RELAY_MIN_BYTES` and
            for directories. (A zone of one machine is fed
            by the controller; machines run from this host, ``mode: local``, are left
            out of relays by their callers: they read the controller's disk already.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..core.errors import UsageError

#: The feeder that is this host.
CONTROLLER = "controller"
#: Below this many bytes, auto sends direct copies: a relay's setup (an ssh session and
#: a listening port per machine) costs more than it saves.
RELAY_MIN_BYTES = 4 << 20
#: Machines up to which auto chooses a chain; beyond, a tree in which each machine feeds
#: two (fewer hops: bench/relay.py measured 40 MB to 64 machines in 2.1-2.2x one copy's
#: time by a chain and 1.9x by tree:2, in two runs; to 32, 1.6x by a chain).
AUTO_CHAIN_MAX = 32
#: What ``--relay`` accepts.
MODES = "auto, off, chain or tree:K (K a whole number from 1 to 64)"

_MODE = re.compile(r"^(auto|off|chain|tree:([1-9][0-9]?))$")


def check_mode(mode: str, what: str = "--relay") -> str:
    """``mode`` itself when it is a relay mode, else a usage error naming ``what``."""
    m = _MODE.match(mode or "")
    if not m or (m.group(2) and int(m.group(2)) > 64):
        raise UsageError(f"{what}: {mode!r} is not a relay mode: use {MODES}")
    return mode


def choose(mode: str, machines: int, size: int, is_file: bool) -> str:
    """The mode a payload of ``size`` bytes to ``machines`` machines uses: ``auto``
    resolved (the other modes are taken as given, a directory excepted: relays carry one
    file)."""
    check_mode(mode)
    if not is_file or machines < 2:
        return "off"
    if mode == "auto":
        if size < RELAY_MIN_BYTES:
            return "off"
        return "chain" if machines <= AUTO_CHAIN_MAX else "tree:2"
    return mode


def plan(machines: Sequence[str], mode: str, zones: dict[str, str] | None = None) -> dict[str, str]:
    """{machine: feeder} for ``machines`` (in the order given) under ``mode`` (not auto)."""
    check_mode(mode)
    if mode == "auto":
        raise ValueError("resolve auto with choose() first")
    feeders: dict[str, str] = {}
    for members in group_by_zone(machines, zones or {}).values():
        if mode == "off":
            feeders.update({m: CONTROLLER for m in members})
            continue
        fan = 1 if mode == "chain" else int(mode.partition(":")[2])
        for i, m in enumerate(members):
            feeders[m] = CONTROLLER if i == 0 else members[(i - 1) // fan]
    return feeders


def group_by_zone(machines: Sequence[str], zones: dict[str, str]) -> dict[str, list[str]]:
    """Machines by zone, in the order given (machines without a zone share one)."""
    out: dict[str, list[str]] = {}
    for m in machines:
        out.setdefault(zones.get(m, ""), []).append(m)
    return out


def reroute(feeders: dict[str, str], machine: str, gone: set[str]) -> str:
    """The new feeder of ``machine`` once the machines ``gone`` cannot feed anyone: its
    nearest ancestor that is still there (it has at least what the lost feeder had, or
    will have), else the controller."""
    seen = {machine}
    up = feeders.get(machine, CONTROLLER)
    while up != CONTROLLER and (up in gone or up in seen):
        seen.add(up)
        up = feeders.get(up, CONTROLLER)
    return up


def children(feeders: dict[str, str], machine: str) -> list[str]:
    """The machines ``machine`` feeds."""
    return [m for m, f in feeders.items() if f == machine]
