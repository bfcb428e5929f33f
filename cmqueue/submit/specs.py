"""Turn what the user asked for into job specs: where they run (placement), their commands
(placeholders filled, quoted), their staging, their transfers and the reduce of a map.
Publishing them is :mod:`cmqueue.submit.publish`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.inventory import Inventory
from ..core.errors import MissingError, UsageError
from ..core.models import JobSpec, new_id
from ..queue import routing
from ..transfer import staging
from . import placeholders


@dataclass
class Placement:
    """Where jobs go: pinned machines (one job each), a label, or any machine; or
    ``spread``: each job pinned to one of these machines, in turn (``--where``)."""

    machines: list[str] = field(default_factory=list)
    label: str | None = None
    spread: list[str] = field(default_factory=list)

    def targets(self) -> list[str]:
        """Job targets: ``machine:<m>`` per machine, or one ``label:<l>`` / ``any``
        (spread: every machine it may pin a job to)."""
        if self.machines or self.spread:
            return [f"machine:{m}" for m in self.machines or self.spread]
        if self.label:
            return [f"label:{self.label}"]
        return ["any"]


def placement(inventory: Inventory, on: str | None = None, label: str | None = None,
              everywhere: bool = False) -> Placement:
    """Check a target choice against the inventory and return it as a Placement."""
    if sum(bool(x) for x in (on, label, everywhere)) > 1:
        raise UsageError("choose one of --on, --label and --all")
    if everywhere:
        names = [m.name for m in inventory.enabled()]
        if not names:
            raise UsageError(f"{inventory.path.name}: no enabled machine")
        return Placement(machines=names)
    if on:
        chosen = inventory.select(on)
        off = [m.name for m in chosen if not m.enabled]
        if off:
            raise UsageError(f"machine {off[0]} is disabled (enabled: false) in {inventory.path.name}")
        return Placement(machines=[m.name for m in chosen])
    if label:
        inventory.with_label(label)
        return Placement(label=label)
    if not inventory.enabled():
        raise UsageError(f"{inventory.path.name}: no enabled machine to run jobs on")
    return Placement()


def read_each(path: str) -> list[str]:
    """Arguments from a file, one per line (blank lines skipped); '-' reads stdin."""
    import sys

    try:
        text = sys.stdin.read() if path == "-" else Path(path).expanduser().read_text()
    except OSError as e:
        raise UsageError(f"--each={path}: {e.strerror}") from None
    return [line for line in text.splitlines() if line.strip()]


def build_specs(command: str, where: Placement, args: Sequence[str] | None = None,
                timeout: float | None = None, retries: int = 0,
                env: dict[str, str] | None = None, puts: Sequence[str] = (), gets: Sequence[str] = (),
                keep: bool = False, results: str | Path | None = None) -> tuple[str, list[JobSpec]]:
    """A batch id and one spec per (argument x target); no argument list: one per target.

    ``puts``/``gets`` (``LOCAL[:REMOTE]`` / ``REMOTE[:LOCAL]``, placeholders allowed) make
    each job run in a directory of its own with those inputs staged and outputs fetched
    (default into ``results/<job>/``, results defaulting to ./cmq-results)."""
    if not command.strip():
        raise UsageError("the command is empty")
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout}")
    if retries < 0:
        raise UsageError(f"--retries must be 0 or more, got {retries}")
    batch = new_id("b")
    if args is not None and not args:
        raise UsageError("no arguments after ::: (or the --each file is empty)")
    items: list[tuple[str | None, int]] = [(None, 1)] if args is None else [(a, i + 1) for i, a in enumerate(args)]
    staged = bool(puts or gets or keep)
    hasher = staging.Hasher()
    results_dir = Path(results or "cmq-results").expanduser().resolve()
    many = len(items) * (1 if where.spread else len(where.targets())) > 1
    now = time.time()
    specs = []
    for i, (arg, seq) in enumerate(items):
        cmd = command if arg is None else placeholders.render(command, arg, seq)
        targets = [f"machine:{where.spread[i % len(where.spread)]}"] if where.spread else where.targets()
        for target in targets:
            spec = JobSpec(id=new_id(), command=cmd, target=target, queue=routing.queue_for_target(target),
                           batch=batch, timeout=timeout, retries=retries, env=dict(env or {}), submitted=now)
            if staged:
                spec.params = staging.plan(spec.id, arg, seq, list(puts), list(gets), keep, results_dir,
                                           hasher, many).params()
            specs.append(spec)
    if staged:
        _mark_shared_inputs(specs)
    return batch, specs


def _mark_shared_inputs(specs: list[JobSpec]) -> None:
    """Tell each job which of its inputs other machines of the batch need too, and how
    many machines may (``params["shared"]``): inputs large enough to relay between
    machines. Jobs pinned to machines count once a machine; others, once a job."""
    from ..transfer.relay_plan import RELAY_MIN_BYTES

    where: dict[str, set[str]] = {}
    for spec in specs:
        for sha in {sha for _, sha, size, _ in spec.params.get("inputs", []) if int(size) >= RELAY_MIN_BYTES}:
            where.setdefault(sha, set()).add(spec.target if spec.target.startswith("machine:") else spec.id)
    users = {sha: len(places) for sha, places in where.items()}
    for spec in specs:
        shared = {sha: users[sha] for _, sha, _, _ in spec.params.get("inputs", []) if users.get(sha, 0) > 1}
        if shared:
            spec.params["shared"] = shared


#: Extra attempts a transfer gets before it counts as failed.
TRANSFER_RETRIES = 2


def split_remote(spec: str, what: str) -> tuple[str, str]:
    """``'MACHINES:PATH'`` to (hostlist, path); a clear error when there is no machine."""
    machines, sep, path = spec.partition(":")
    if not sep or not machines:
        raise UsageError(f"{what} {spec!r}: expected MACHINES:PATH (for example m1:data/ or node[1-4]:in)")
    return machines, path


def build_transfers(inventory: Inventory, kind: str, machines: str, source: str, dest: str,
                    recursive: bool = False, retries: int = TRANSFER_RETRIES,
                    relay: str = "auto") -> tuple[str, list[JobSpec]]:
    """One put or get spec per machine of the hostlist ``machines``.

    put: ``source`` is local (it must exist), ``dest`` the remote path; ``relay`` (a mode of
    :mod:`cmqueue.transfer.relay_plan`) lets the machines reached over ssh pass one file
    on to each other. get: ``source`` is remote and ``dest`` local; from several machines
    each lands in ``dest/<machine>/``.
    """
    from ..transfer import relay_plan
    from ..transfer.machine_copy import local_size

    relay_plan.check_mode(relay)

    chosen = placement(inventory, on=machines).machines
    batch = new_id("b")
    if kind == "put":
        local = Path(source).expanduser().resolve()
        if not local.exists():
            raise MissingError(f"{source}: no such file or directory")
        if local.is_dir() and not recursive:
            raise UsageError(f"{source} is a directory; use --recursive")
        total, _ = local_size(local)
        params = [{"source": str(local), "dest": dest, "recursive": recursive, "total": total,
                   "fanout": len(chosen)} for _ in chosen]
        words = [f"put {local} -> {m}:{dest or '.'}" for m in chosen]
    else:
        local = Path(dest or ".").expanduser().resolve()
        several = len(chosen) > 1
        targets = [local / m if several else local for m in chosen]
        if several:
            for t in targets:
                t.mkdir(parents=True, exist_ok=True)
        slash = "/" if (dest or "").endswith("/") and not several else ""    # a file goes inside
        params = [{"source": source, "dest": f"{t}{slash}", "recursive": recursive} for t in targets]
        words = [f"get {m}:{source} -> {t}" for m, t in zip(chosen, targets, strict=True)]
    now = time.time()
    specs = [JobSpec(id=new_id(), command=w, target=f"machine:{m}", queue=routing.machine_queue(m), batch=batch,
                     retries=retries, submitted=now, kind=kind, params=p)
             for m, w, p in zip(chosen, words, params, strict=True)]
    if kind == "put":
        _plan_relay(inventory, specs, chosen, relay, total, local.is_file())
    return batch, specs


def _plan_relay(inventory: Inventory, specs: list[JobSpec], chosen: list[str], mode: str, size: int,
                is_file: bool) -> None:
    """Give the puts to machines reached over ssh the batch's relay plan (when ``mode``,
    resolved for this payload, relays at all)."""
    from ..transfer import relay_plan

    remote = [m for m in chosen if inventory.machines[m].mode == "ssh"]
    mode = relay_plan.choose(mode, len(remote), size, is_file)
    if mode == "off":
        return
    zones = {m: inventory.machines[m].zone for m in remote}
    feeders = relay_plan.plan(remote, mode, zones)
    jobs = {s.target.partition(":")[2]: s.id for s in specs}
    plan = {"mode": mode, "feeders": feeders, "jobs": {m: jobs[m] for m in remote}}
    for s in specs:
        if s.target.partition(":")[2] in feeders:
            s.params["relay"] = plan


def build_reduce(members: list[JobSpec], reducer: str, allow_failures: bool = False,
                 cwd: str | None = None) -> JobSpec:
    """The spec of the reduce that follows ``members`` (checked now: a reducer that cannot
    be imported is a usage error before anything is sent)."""
    from . import reducers

    if not members:
        raise UsageError("a map needs at least one job")
    cwd = cwd or os.getcwd()
    reducers.check(reducer, cwd)
    return JobSpec(id=new_id("r"), command=f"reduce {reducer} of {len(members)} jobs", target="any",
                   queue=routing.queue_for_target("any"), batch=members[0].batch, kind="reduce",
                   params={"reducer": reducer, "allow_failures": allow_failures, "cwd": cwd,
                           "members": len(members)})


#: What a variable name of a job's environment may be.
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def parse_env(pairs: Iterable[str]) -> dict[str, str]:
    """``['K=V', ...]`` to a dict; a clear error for a malformed pair."""
    import re

    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not re.match(ENV_NAME, key):
            raise UsageError(f"--env={pair}: expected NAME=VALUE with a valid variable name")
        env[key] = value
    return env


def summary(specs: list[JobSpec]) -> dict[str, Any]:
    """What a submit prints with --json."""
    return {"batch": specs[0].batch if specs else None,
            "jobs": [{"id": s.id, "target": s.target, "command": s.command} for s in specs]}
