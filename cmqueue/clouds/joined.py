"""VMs that joined the fleet (`cmq cloud boot --join`): machines in the companion file
beside the inventory (``cmq.yaml`` -> ``cmq.clouds.yaml``), which cmq reads with it and
the running workers notice (they watch the inventory and its companions).

Each VM is an ssh machine on its forwarded port, its host key checked against the one
pinned when it booted (``HostKeyAlias`` = its name), labelled with its cloud.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from ..config.inventory import companion_path
from ..core.files import write_private

HEAD = ("# Written by `cmq cloud boot --join`; `cmq cloud delete` removes its VMs from it.\n"
        "# cmq reads it with the inventory beside it.\n")


def machine_entry(record: dict[str, Any], key: Path, known_hosts: Path, slots: int) -> dict[str, Any]:
    """The inventory entry of a booted VM from its record (``ssh``: ``user@host:port``)."""
    user, _, address = str(record["ssh"]).partition("@")
    host, _, port = address.rpartition(":")
    return {"host": host, "port": int(port), "user": user, "identity": str(key), "slots": slots,
            "labels": [record["cloud"]], "host_jobs": False,
            "ssh_options": {"HostKeyAlias": record["name"], "UserKnownHostsFile": str(known_hosts)}}


@contextmanager
def _locked(path: Path):
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return {}
    return dict(raw.get("machines") or {})


def _write(path: Path, machines: dict[str, Any]) -> None:
    if machines:
        write_private(path, HEAD + yaml.safe_dump({"machines": machines}, sort_keys=False))
    else:
        path.unlink(missing_ok=True)


def add(inventory: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Add (or replace) machines ``entries`` in the companion file of ``inventory``."""
    path = companion_path(inventory, "clouds")
    with _locked(path):
        _write(path, {**_read(path), **entries})


def remove(inventory: Path, names: list[str]) -> list[str]:
    """Remove machines ``names`` from the companion file; those that were there."""
    path = companion_path(inventory, "clouds")
    with _locked(path):
        machines = _read(path)
        gone = [n for n in names if machines.pop(n, None) is not None]
        if gone:
            _write(path, machines)
    return gone
