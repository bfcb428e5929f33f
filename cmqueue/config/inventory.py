"""The inventory: a YAML file that lists machines, how to reach them and their slots.

Loading turns the file into :class:`Inventory` (ordered :class:`Machine` entries) and
checks every field; an error names the file, the field path and what is wrong, e.g.
``cmq.yaml: machines.node3.slots: must be a positive integer, got 'four'``.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ..core import defaults
from ..core.errors import ConfigError, InsecureFileError, UnknownMachineError
from ..core.hostlist import HostlistError, expand, expand_list
from .fields import IN_STEP, NAME, fact_probes, fail, in_step, machine_fields, mapping, string, unknown_message

TOP_FIELDS = {"broker", "history", "defaults", "machines", "settings", "tasks", "storage", "clouds", "facts"}
SETTINGS_FIELDS = {
    "schedule_timezone",
    "output_cap", "visibility_timeout", "restore_interval", "claim_ttl", "connect_timeout",
    "kill_grace", "probe_interval", "max_reroutes", "control_persist", "flower_port", "broker_wait",
    "redis_fsync", "start_parallel", "worker_processes", "rescue_interval", "rescue_grace",
    "facts_max_age", "facts_timeout", "facts_probe_timeout", "replica_acks", "replica_timeout", "broker_bind",
    "relay_stall", "relay_gather",
}
REDIS_FSYNC = ("always", "everysec")
_SECRET_KEYS = re.compile(r"password|secret|token", re.I)
#: Keys that name a file holding a secret, not the secret (``password_file``, ``secret_file``).
_SECRET_FILE_KEY = re.compile(r"_file$")


@dataclass(frozen=True)
class Machine:
    """One machine of the inventory, with every field resolved (defaults applied)."""

    name: str
    host: str
    port: int | None = None
    user: str | None = None
    identity: str | None = None
    ssh_options: tuple[tuple[str, str], ...] = ()
    slots: int = defaults.SLOTS
    labels: tuple[str, ...] = ()
    workdir: str = defaults.WORKDIR
    env: tuple[tuple[str, str], ...] = ()
    mode: str = "ssh"
    enabled: bool = True
    host_key_policy: str = "strict"
    max_sessions: int = defaults.MAX_SESSIONS
    transport: str = "auto"
    transfer: str = "auto"
    cache: int = defaults.CACHE_CAPACITY
    host_jobs: bool = True               #: its slots also take host jobs (storage, cloud actions)
    facts: tuple[tuple[str, str], ...] = ()   #: its own facts: (name, shell command)
    broker_access: str = "tunnel"        #: an agent's way to the broker: ssh tunnel or tls
    zone: str = ""                       #: machines of one zone relay data to each other

    @property
    def masters(self) -> int:
        """How many ssh masters keep ``slots`` sessions under sshd's MaxSessions."""
        per_master = max(1, self.max_sessions - defaults.RESERVED_SESSIONS)
        return max(1, -(-self.slots // per_master))

    def over_ssh(self) -> Machine:
        """This machine as reached over ssh from here (an agent is, to join it)."""
        return self if self.mode == "ssh" else replace(self, mode="ssh")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return {
            "name": self.name, "host": self.host, "port": self.port, "user": self.user,
            "identity": self.identity, "ssh_options": dict(self.ssh_options),
            "slots": self.slots, "labels": list(self.labels), "workdir": self.workdir,
            "env": dict(self.env), "mode": self.mode, "enabled": self.enabled,
            "host_key_policy": self.host_key_policy, "transport": self.transport,
            "transfer": self.transfer, "cache": self.cache, "host_jobs": self.host_jobs,
            "facts": dict(self.facts), "broker_access": self.broker_access, "zone": self.zone,
        }


@dataclass
class Inventory:
    """The parsed inventory file: machines in file order plus top-level settings."""

    path: Path
    machines: dict[str, Machine]
    #: A URL, or the mapping form (read into a URL by :func:`cmqueue.config.broker.url_of`).
    broker: str | dict[str, Any] | None = None
    history: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, Any] = field(default_factory=dict)   #: name -> cmqueue.storage.config.StorageConfig
    clouds: dict[str, Any] = field(default_factory=dict)    #: name -> cmqueue.clouds.config.CloudConfig
    facts: dict[str, str] = field(default_factory=dict)     #: the facts of every machine: name -> command

    @property
    def labels(self) -> dict[str, list[str]]:
        """Label -> names of the enabled machines that carry it, in inventory order."""
        out: dict[str, list[str]] = {}
        for m in self.enabled():
            for label in m.labels:
                out.setdefault(label, []).append(m.name)
        return out

    def enabled(self) -> list[Machine]:
        """Machines with ``enabled: true``, in inventory order."""
        return [m for m in self.machines.values() if m.enabled]

    def machine(self, name: str) -> Machine:
        """The machine called ``name``; UnknownMachineError lists the known ones."""
        try:
            return self.machines[name]
        except KeyError:
            known = ", ".join(self.machines) or "(none)"
            raise UnknownMachineError(
                f"unknown machine {name!r} in {self.path.name}; machines: {known}"
            ) from None

    def select(self, expr: str) -> list[Machine]:
        """Machines named by a hostlist expression such as ``node[1-3],gpu1``."""
        try:
            names = expand_list(expr)
        except HostlistError as e:
            raise UnknownMachineError(f"--on={expr}: {e}") from None
        if not names:
            raise UnknownMachineError(f"--on={expr!r} names no machine")
        return [self.machine(n) for n in names]

    def probes(self, machine: Machine) -> dict[str, str]:
        """The user's facts gathered on ``machine``: the inventory's ``facts:``, then the
        machine's own (``machines.NAME.facts:``, which win)."""
        return {**self.facts, **dict(machine.facts)}

    def with_label(self, label: str) -> list[Machine]:
        """Enabled machines carrying ``label``; UnknownMachineError when there are none."""
        found = [m for m in self.enabled() if label in m.labels]
        if not found:
            known = ", ".join(self.labels) or "(none)"
            raise UnknownMachineError(
                f"no enabled machine has label {label!r} in {self.path.name}; labels: {known}"
            )
        return found


def _contains_secret(data: Any) -> bool:
    if isinstance(data, dict):
        for k, v in data.items():
            named = isinstance(k, str) and _SECRET_KEYS.search(k) and not _SECRET_FILE_KEY.search(k)
            if named and v and v != "TBD":   # TBD: asked for
                return True
            if _contains_secret(v):
                return True
    elif isinstance(data, list):
        return any(_contains_secret(v) for v in data)
    elif isinstance(data, str) and "://" in data:
        try:
            return bool(urlsplit(data).password)
        except ValueError:
            return False
    return False


def check_identity(machine: Machine, path: Path) -> None:
    """Refuse an identity file that is missing, unreadable or readable by others."""
    if machine.mode != "ssh" or not machine.identity:
        return
    key = Path(machine.identity).expanduser()
    where = f"machines.{machine.name}.identity"
    try:
        st = key.stat()
        with key.open("rb"):
            pass
    except OSError as e:
        raise fail(path, where, f"cannot read {key}: {e.strerror}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise fail(
            path, where,
            f"{key} is accessible by group/others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"ssh refuses such keys: chmod 600 {key}",
        )


#: Nodes an inventory may hold once its aliases (``*name``) are expanded: anchors for
#: shared defaults are fine; a "billion laughs" document is refused before anything walks it.
MAX_NODES = 100_000


def _expanded_size(data: Any, limit: int) -> int:
    """How many nodes ``data`` has with every alias expanded, counting each shared object
    once per reference without walking it again (so the count itself stays cheap)."""
    memo: dict[int, int] = {}

    def size(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key not in memo:
            memo[key] = 0                   # a cycle (not possible from safe_load) counts once
            items = list(node.items()) if isinstance(node, dict) else [(None, v) for v in node]
            total = 1
            for k, v in items:
                total += size(k) + size(v)
                if total > limit:
                    break
            memo[key] = total
        return memo[key]

    return size(data)


#: libyaml's parser when PyYAML has it (a fifth of the pure-Python one's time), same safe subset.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(text: str, path: Path) -> Any:
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or (str(e).splitlines() or ["?"])[0]
        raise ConfigError(f"{path.name}: {where}invalid YAML: {problem}") from None
    if _expanded_size(data, MAX_NODES) > MAX_NODES:
        raise ConfigError(f"{path.name}: more than {MAX_NODES} values once its aliases (*name) are expanded; "
                          "an inventory does not need that many")
    return data


def parse(text: str, path: Path) -> Inventory:
    """Parse inventory ``text`` (read from ``path``, used in messages) into an Inventory."""
    return _build(_read_yaml(text, path), path)


def _build(data: Any, path: Path) -> Inventory:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise fail(path, "", "must be a mapping with a 'machines:' section")
    unknown = set(data) - TOP_FIELDS
    if unknown:
        key = sorted(map(str, unknown))[0]
        raise fail(path, key, unknown_message("section", key, TOP_FIELDS))
    base = mapping(path, "defaults", data.get("defaults"))
    if "host" in base:
        raise fail(path, "defaults.host", "a default host makes no sense; give host per machine")
    machine_fields(path, "defaults", base, {})
    raw_machines = mapping(path, "machines", data.get("machines"))
    machines: dict[str, Machine] = {}
    for key, raw in raw_machines.items():
        key = str(key)
        where = f"machines.{key}"
        raw = mapping(path, where, raw)
        try:
            names = expand(key)
        except HostlistError as e:
            raise fail(path, where, str(e)) from None
        stepped = {k: in_step(path, where, k, raw.get(k), names) for k in IN_STEP}
        fields = machine_fields(path, where, {k: v for k, v in raw.items() if k not in IN_STEP}, base)
        for i, name in enumerate(names):
            mwhere = f"machines.{name}"
            if not NAME.match(name):
                raise fail(path, mwhere, "machine names use letters, digits, '.', '_' and '-'")
            if name in machines:
                raise fail(path, mwhere, "machine defined twice")
            host = stepped["host"][i]
            if fields["mode"] == "ssh" and host is None:
                host = name
            mine = dict(fields)
            if stepped["workdir"][i] is not None:
                mine["workdir"] = string(path, f"{where}.workdir", stepped["workdir"][i])
            machines[name] = Machine(name=name, host=str(host or "localhost"), **mine)
    settings = mapping(path, "settings", data.get("settings"))
    for k, v in settings.items():
        if k not in SETTINGS_FIELDS:
            raise fail(path, f"settings.{k}", unknown_message("setting", str(k), SETTINGS_FIELDS))
        if k == "flower_port":
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535:
                raise fail(path, f"settings.{k}", f"must be a port number (0: no Flower), got {v!r}")
        elif k in ("worker_processes", "replica_acks"):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                zero = "one per CPU" if k == "worker_processes" else "never wait"
                raise fail(path, f"settings.{k}", f"must be a whole number (0: {zero}), got {v!r}")
        elif k == "redis_fsync":
            if v not in REDIS_FSYNC:
                raise fail(path, f"settings.{k}", f"must be one of {', '.join(REDIS_FSYNC)}, got {v!r}")
        elif k == "schedule_timezone":
            if not isinstance(v, str) or not _known_zone(v):
                raise fail(path, f"settings.{k}", f"must be an IANA time zone such as UTC or Europe/Berlin, got {v!r}")
        elif k == "broker_bind":
            _check_bind(path, v)
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise fail(path, f"settings.{k}", f"must be a positive number, got {v!r}")
    broker = data.get("broker")
    if broker is not None:
        from .broker import check as check_broker

        broker = check_broker(path, broker)
    history = data.get("history")
    if history is not None:
        history = string(path, "history", history)
    tasks = mapping(path, "tasks", data.get("tasks"))
    from ..workflow.tasks import from_inventory

    from_inventory(tasks, path)          # checked now: errors name the file and the field
    storage = None
    if data.get("storage") is not None:
        from ..storage.config import parse as parse_storage

        storage = parse_storage(data["storage"], path, set(machines))
    clouds = None
    if data.get("clouds") is not None:
        from ..clouds.config import parse as parse_clouds

        clouds = parse_clouds(data["clouds"], path)
    facts = fact_probes(path, "facts", data.get("facts"))
    return Inventory(path=path, machines=machines, broker=broker, history=history, settings=settings,
                     tasks=tasks, storage=storage or {}, clouds=clouds or {}, facts=facts)


def _check_bind(path: Path, value: Any) -> None:
    """``settings: broker_bind``: one IP address of this host (not a wildcard: agents connect
    to it and the broker's certificate names it)."""
    import ipaddress

    try:
        address = ipaddress.ip_address(str(value))
    except ValueError:
        raise fail(path, "settings.broker_bind", f"must be an IP address of this host (such as 10.0.0.5), "
                                                  f"got {value!r}") from None
    if address.is_unspecified:
        raise fail(path, "settings.broker_bind", f"{value} listens everywhere; give the one address agents "
                                                  "reach (the broker's certificate names it)")


def _known_zone(name: str) -> bool:
    """Whether ``name`` is a time zone this host knows (the settings' schedule_timezone)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError):
        return False


def load(path: str | os.PathLike, check_keys: bool = True) -> Inventory:
    """Read, check and parse the inventory at ``path``.

    A file that holds secrets (a password in a URL, a key named password/secret/token)
    and is readable by group or others is refused. With ``check_keys`` every ssh
    machine's identity file must exist, be readable and be private.
    """
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{p}: inventory not found (create it, or pass --config / set CMQ_CONFIG)") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read inventory: {e.strerror}") from None
    raw = _read_yaml(text, p)
    inv = _build(raw, p)
    mode = stat.S_IMODE(p.stat().st_mode)
    if _contains_secret(raw) and mode & 0o077:
        raise InsecureFileError(
            f"{p.name}: holds secrets but is accessible by group/others "
            f"(mode {mode:04o}); run: chmod 600 {p}"
        )
    _merge_companion(inv, p)
    if check_keys:
        for m in inv.enabled():
            check_identity(m, p)
    return inv


def companion_path(path: Path, kind: str = "vagrant") -> Path:
    """The file beside the inventory ``path`` that lists machines another command added:
    ``cmq vagrant up`` (kind ``vagrant``: ``cmq.yaml`` -> ``cmq.vagrant.yaml``) or ``cmq
    cloud boot --join`` (kind ``clouds``: ``cmq.clouds.yaml``)."""
    return path.with_name(f"{path.stem}.{kind}.yaml")


#: The kinds of companion files, each with the command that writes it.
COMPANIONS = {"vagrant": "cmq vagrant up", "clouds": "cmq cloud boot --join"}


def companion_paths(path: Path) -> list[Path]:
    """Every companion file of inventory ``path`` (existing or not)."""
    return [companion_path(path, kind) for kind in COMPANIONS]


def inventory_mtime(path: Path) -> float:
    """The newest modification time of inventory ``path`` and its companion files (0
    when none exists): what changes when machines are edited, joined or removed."""
    times = [0.0]
    for p in (path, *companion_paths(path)):
        try:
            times.append(p.stat().st_mtime)
        except OSError:
            pass
    return max(times)


def _merge_companion(inv: Inventory, path: Path) -> None:
    """Add the machines of the companion files, if any, after the inventory's own."""
    for kind, writer in COMPANIONS.items():
        extra_path = companion_path(path, kind)
        try:
            text = extra_path.read_text()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise ConfigError(f"{extra_path}: cannot read: {e.strerror}") from None
        raw = _read_yaml(text, extra_path)
        if not isinstance(raw, dict) or set(raw) - {"machines"}:
            raise fail(extra_path, "", f"may hold only a 'machines:' section (it is written by `{writer}`)")
        extra = _build(raw, extra_path)
        for name, machine in extra.machines.items():
            if name in inv.machines:
                raise fail(extra_path, f"machines.{name}", f"also defined in {path.name}; rename one of them")
            inv.machines[name] = machine
