"""One file to several machine services at once: `cmq storage put FILE 'node[1-8]:images/'`
or `cmq storage copy box:img.qcow2 'node[1-8]:images/'`.

The destinations' service part is a hostlist of services of type ``ssh``. The steps are
planned once, for the first of them, by the one rule for trees; each file of 4 MiB or
more then goes to all of them through a relay (:mod:`cmqueue.transfer.relay`): it crosses
this host's link once per zone, and the machines pass it on. A file that comes from
another service than a folder of this host is read (and verified) here once first. A
destination whose relayed copy failed, and every file under the relay's threshold, is
written by its service as one copy would be.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..core.hostlist import expand_list
from ..transfer import relay_plan
from ..transfer.relay import Relay, source_sha256
from .ops import Providers, Step, make_dir, run_step

#: Told one line per destination and file: (destination service, what happened).
OnCopy = Callable[[str, dict[str, Any]], None]


def services(text: str, inventory: Any) -> tuple[list[str], str] | None:
    """(services, path) when ``text`` names several services (``node[1-8]:dir/``,
    ``a,b:dir``), each a machine's directory; None for one service."""
    head, sep, tail = text.partition(":")
    if not sep or not any(c in head for c in "[,"):
        return None
    names = expand_list(head)
    for name in names:
        config = inventory.storage.get(name)
        if config is None:
            known = ", ".join(inventory.storage) or "(none: add a storage: section)"
            raise UsageError(f"{text}: unknown storage service {name!r} in {inventory.path.name}; services: {known}")
        if config.type != "ssh":
            raise UsageError(f"{text}: {name} is a {config.type} service; several destinations are machine "
                             "directories (type: ssh)")
    if len(set(names)) != len(names):
        raise UsageError(f"{text}: a service is named twice")
    return names, tail


def run(providers: Providers, steps: list[Step], destinations: list[str], mode: str, *,
        on_copy: OnCopy | None = None, stall: float | None = None) -> list[dict[str, Any]]:
    """Run ``steps`` (planned for ``destinations[0]``) to every destination; what moved,
    per destination and step."""
    relay_plan.check_mode(mode)
    done: list[dict[str, Any]] = []
    for step in steps:
        if step.kind == "dir":
            for d in destinations:
                done.append(_told(on_copy, d, make_dir(providers, dataclasses.replace(step, dest=d))))
            continue
        with _local_copy(providers, step) as (local, mtime):
            shape = relay_plan.choose(mode, len(destinations), step.size, True)
            relayed: dict[str, Any] = {}
            if shape != "off":
                relayed = _relay(providers, step, destinations, local, mtime, shape, stall)
            for d in destinations:
                got = relayed.get(d)
                if got is not None and got.ok:
                    how = f"shared with {got.shared_with}" if got.shared_with else "relay"
                    result = {"bytes": got.bytes, "sha256": source_sha256(local), "how": how, "fed_by": got.fed_by,
                              "verified": "sha256", "step": dataclasses.replace(step, dest=d).describe()}
                else:
                    direct = dataclasses.replace(step, source="", source_path=str(local), dest=d)
                    result = run_step(providers, direct)
                    result["step"] = dataclasses.replace(step, dest=d).describe()
                    if got is not None:
                        result["note"] = f"relay failed: {got.error}"
                done.append(_told(on_copy, d, result))
    return done


def _told(on_copy: OnCopy | None, dest: str, result: dict[str, Any]) -> dict[str, Any]:
    result["dest"] = dest
    if on_copy is not None:
        on_copy(dest, result)
    return result


def _relay(providers: Providers, step: Step, destinations: list[str], local: Path, mtime: float | None,
           shape: str, stall: float | None) -> dict[str, Any]:
    """{destination: outcome (with its sha256)} of one relayed file."""
    targets = {}
    by_machine = {}
    for d in destinations:
        p = providers(d)
        if p.machine.mode != "ssh":        # run from this host: it reads the file here already
            return {}
        targets[p.machine.name] = (p.machine, p.path(step.dest_path))
        by_machine[p.machine.name] = d
    if len(targets) < len(destinations):     # two services on one machine: each writes its own
        return {}
    names = list(targets)
    feeders = relay_plan.plan(names, shape, {m: targets[m][0].zone for m in names})
    kw = {"stall": stall} if stall else {}
    outcomes = Relay(local, targets, feeders, mtime=mtime, **kw).run()
    return {by_machine[machine]: o for machine, o in outcomes.items()}


class _local_copy:  # noqa: N801 - used as a context manager, named for what it yields
    """The step's source as a file here (a service's file read once into a temporary
    file, verified) and its time."""

    def __init__(self, providers: Providers, step: Step) -> None:
        self.providers, self.step = providers, step
        self.tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> tuple[Path, float | None]:
        step = self.step
        if not step.source:
            return Path(step.source_path), os.stat(step.source_path).st_mtime
        src = self.providers(step.source)
        if getattr(src.config, "type", "") == "local":
            path = src.path(step.source_path)
            return Path(path), os.stat(path).st_mtime
        self.tmp = tempfile.TemporaryDirectory(prefix="cmq-fanout-")
        local = Path(self.tmp.name) / "file"
        entry = src.get_file(step.source_path, local)
        return local, entry.mtime or None

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
