"""The inventory: a YAML file that lists machines, how to reach them and their slots.

Loading turns the file into :class:`Inventory` (ordered :class:`Machine` entries) and
checks every field; an error names the file, the field path and what is wrong, e.g.
``cmq.yaml: machines.node3.slots: must be a positive integer, got 'four'``.
"""

from __future__ import annotations

import difflib
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

MODES = ("ssh", "local", "agent")
HOST_KEY_POLICIES = ("strict", "ask", "accept-new")
MACHINE_FIELDS = {
    "host", "port", "user", "identity", "ssh_options", "slots", "labels", "workdir",
    "env", "mode", "enabled", "host_key_policy", "max_sessions", "transport", "transfer", "cache",
    "host_jobs",
}
TRANSPORTS = ("auto", "session", "exec")
TRANSFER_METHODS = ("auto", "rsync", "tar")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B?)?\s*$", re.IGNORECASE)
TOP_FIELDS = {"broker", "history", "defaults", "machines", "settings", "tasks", "storage", "clouds"}
SETTINGS_FIELDS = {
    "output_cap", "visibility_timeout", "restore_interval", "claim_ttl", "connect_timeout",
    "kill_grace", "probe_interval", "max_reroutes", "control_persist", "flower_port", "broker_wait",
    "redis_fsync", "start_parallel", "worker_processes", "rescue_interval", "rescue_grace",
}
REDIS_FSYNC = ("always", "everysec")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LABEL = _NAME
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_KEYS = re.compile(r"password|secret|token", re.I)
# ssh options that would switch host key checking off behind the inventory's back.
_FORBIDDEN_SSH = {
    "stricthostkeychecking": {"no", "off"},
    "userknownhostsfile": {"/dev/null"},
}


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
        }


@dataclass
class Inventory:
    """The parsed inventory file: machines in file order plus top-level settings."""

    path: Path
    machines: dict[str, Machine]
    broker: str | None = None
    history: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, Any] = field(default_factory=dict)   #: name -> cmqueue.storage.config.StorageConfig
    clouds: dict[str, Any] = field(default_factory=dict)    #: name -> cmqueue.clouds.config.CloudConfig

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

    def with_label(self, label: str) -> list[Machine]:
        """Enabled machines carrying ``label``; UnknownMachineError when there are none."""
        found = [m for m in self.enabled() if label in m.labels]
        if not found:
            known = ", ".join(self.labels) or "(none)"
            raise UnknownMachineError(
                f"no enabled machine has label {label!r} in {self.path.name}; labels: {known}"
            )
        return found


def _fail(path: Path, where: str, msg: str) -> ConfigError:
    return ConfigError(f"{path.name}: {where}: {msg}" if where else f"{path.name}: {msg}")


def _positive_int(path: Path, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(path, where, f"must be a positive integer, got {value!r}")
    return value


def _string(path: Path, where: str, value: Any) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise _fail(path, where, f"must be a non-empty string, got {value!r}")
    return str(value)


def _mapping(path: Path, where: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, where, f"must be a mapping, got {type(value).__name__}")
    return value


#: Fields of a machine entry whose range expands in step with the name's
#: (``node[1-4]: {host: "10.0.0.1[1-4]", workdir: "/w/node[1-4]"}``).
IN_STEP = ("host", "workdir")


def _in_step(path: Path, where: str, key: str, value: Any, names: list[str]) -> list[Any]:
    """``value`` per machine of ``names``: a range in it expands in step with the name's,
    a value without one (or of an entry that names one machine) is the same for all."""
    if value is None or "[" not in str(value) or "[" not in where:
        return [value] * len(names)
    try:
        values = expand(str(value))
    except HostlistError as e:
        raise _fail(path, f"{where}.{key}", str(e)) from None
    if len(values) != len(names):
        what = "hosts" if key == "host" else "values"
        raise _fail(path, f"{where}.{key}", f"expands to {len(values)} {what} but the name expands to "
                                            f"{len(names)} machines")
    return values


def _ssh_options(path: Path, where: str, value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        pairs = []
        for i, item in enumerate(value):
            text = _string(path, f"{where}[{i}]", item)
            key, sep, val = text.replace("=", " ", 1).partition(" ")
            if not sep:
                raise _fail(path, f"{where}[{i}]", f"expected 'Option=value', got {text!r}")
            pairs.append((key.strip(), val.strip()))
    elif isinstance(value, dict):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        raise _fail(path, where, "must be a mapping or a list of 'Option=value'")
    for key, val in pairs:
        bad = _FORBIDDEN_SSH.get(key.lower())
        if bad and val.lower() in bad:
            raise _fail(
                path, f"{where}.{key}",
                f"{key}={val} switches host key checking off; cmq refuses it "
                "(use host_key_policy: accept-new to accept keys of new hosts)",
            )
    return tuple(pairs)


def _machine_fields(path: Path, where: str, raw: dict, base: dict) -> dict[str, Any]:
    merged = {**base, **raw}
    unknown = set(merged) - MACHINE_FIELDS
    if unknown:
        key = sorted(map(str, unknown))[0]
        raise _fail(path, f"{where}.{key}", _unknown("field", key, MACHINE_FIELDS))
    out: dict[str, Any] = {}
    mode = merged.get("mode", "ssh")
    if mode not in MODES:
        raise _fail(path, f"{where}.mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    out["mode"] = mode
    if "host" in merged:
        out["host"] = _string(path, f"{where}.host", merged["host"])
    if merged.get("port") is not None:
        port = _positive_int(path, f"{where}.port", merged["port"])
        if port > 65535:
            raise _fail(path, f"{where}.port", f"must be at most 65535, got {port}")
        out["port"] = port
    for key in ("user", "identity", "workdir"):
        if merged.get(key) is not None:
            out[key] = _string(path, f"{where}.{key}", merged[key])
    out["slots"] = _positive_int(path, f"{where}.slots", merged.get("slots", defaults.SLOTS))
    if "max_sessions" in merged:
        out["max_sessions"] = _positive_int(path, f"{where}.max_sessions", merged["max_sessions"])
    labels = merged.get("labels", []) or []
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, list):
        raise _fail(path, f"{where}.labels", "must be a list of names")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not _LABEL.match(label):
            raise _fail(path, f"{where}.labels[{i}]", f"not a valid label name: {label!r}")
    out["labels"] = tuple(labels)
    env = _mapping(path, f"{where}.env", merged.get("env"))
    for k in env:
        if not isinstance(k, str) or not _ENV_KEY.match(k):
            raise _fail(path, f"{where}.env", f"not a valid variable name: {k!r}")
    out["env"] = tuple((k, "" if v is None else str(v)) for k, v in env.items())
    out["ssh_options"] = _ssh_options(path, f"{where}.ssh_options", merged.get("ssh_options"))
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail(path, f"{where}.enabled", f"must be true or false, got {enabled!r}")
    out["enabled"] = enabled
    for flag in ("host_jobs",):
        if flag in merged:
            if not isinstance(merged[flag], bool):
                raise _fail(path, f"{where}.{flag}", f"must be true or false, got {merged[flag]!r}")
            out[flag] = merged[flag]
    policy = merged.get("host_key_policy", "strict")
    if policy not in HOST_KEY_POLICIES:
        raise _fail(
            path, f"{where}.host_key_policy",
            f"must be one of {', '.join(HOST_KEY_POLICIES)}, got {policy!r}",
        )
    out["host_key_policy"] = policy
    transport = merged.get("transport", "auto")
    if transport not in TRANSPORTS:
        raise _fail(path, f"{where}.transport", f"must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    out["transport"] = transport
    transfer = merged.get("transfer", "auto")
    if transfer not in TRANSFER_METHODS:
        raise _fail(path, f"{where}.transfer",
                    f"must be one of {', '.join(TRANSFER_METHODS)}, got {transfer!r}")
    out["transfer"] = transfer
    if "cache" in merged:
        out["cache"] = parse_size(merged["cache"], path, f"{where}.cache")
    return out


def parse_size(value: Any, path: Path, where: str) -> int:
    """Bytes from ``10GiB``, ``500M``, ``2.5G`` or a plain integer (powers of 1024)."""
    if isinstance(value, bool):
        raise _fail(path, where, f"must be a size such as 10GiB, got {value!r}")
    if isinstance(value, int) and value >= 0:
        return value
    m = _SIZE.match(str(value)) if isinstance(value, str) else None
    if not m:
        raise _fail(path, where, f"must be a size such as 10GiB or 500M, got {value!r}")
    number, unit = float(m.group(1)), m.group(2).upper()
    return int(number * 1024 ** " KMGTP".index(unit or " "))


def _contains_secret(data: Any) -> bool:
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(k, str) and _SECRET_KEYS.search(k) and v and v != "TBD":   # TBD: asked for
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
        raise _fail(path, where, f"cannot read {key}: {e.strerror}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise _fail(
            path, where,
            f"{key} is accessible by group/others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"ssh refuses such keys: chmod 600 {key}",
        )


def _unknown(what: str, key: str, known: set[str]) -> str:
    """'unknown field (did you mean 'slots'?; known: ...)'."""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {what} ({hint}known: {', '.join(sorted(known))})"


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
        raise _fail(path, "", "must be a mapping with a 'machines:' section")
    unknown = set(data) - TOP_FIELDS
    if unknown:
        key = sorted(map(str, unknown))[0]
        raise _fail(path, key, _unknown("section", key, TOP_FIELDS))
    base = _mapping(path, "defaults", data.get("defaults"))
    if "host" in base:
        raise _fail(path, "defaults.host", "a default host makes no sense; give host per machine")
    _machine_fields(path, "defaults", base, {})
    raw_machines = _mapping(path, "machines", data.get("machines"))
    machines: dict[str, Machine] = {}
    for key, raw in raw_machines.items():
        key = str(key)
        where = f"machines.{key}"
        raw = _mapping(path, where, raw)
        try:
            names = expand(key)
        except HostlistError as e:
            raise _fail(path, where, str(e)) from None
        stepped = {k: _in_step(path, where, k, raw.get(k), names) for k in IN_STEP}
        fields = _machine_fields(path, where, {k: v for k, v in raw.items() if k not in IN_STEP}, base)
        for i, name in enumerate(names):
            mwhere = f"machines.{name}"
            if not _NAME.match(name):
                raise _fail(path, mwhere, "machine names use letters, digits, '.', '_' and '-'")
            if name in machines:
                raise _fail(path, mwhere, "machine defined twice")
            host = stepped["host"][i]
            if fields["mode"] == "ssh" and host is None:
                host = name
            mine = dict(fields)
            if stepped["workdir"][i] is not None:
                mine["workdir"] = _string(path, f"{where}.workdir", stepped["workdir"][i])
            machines[name] = Machine(name=name, host=str(host or "localhost"), **mine)
    settings = _mapping(path, "settings", data.get("settings"))
    for k, v in settings.items():
        if k not in SETTINGS_FIELDS:
            raise _fail(path, f"settings.{k}", _unknown("setting", str(k), SETTINGS_FIELDS))
        if k == "flower_port":
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535:
                raise _fail(path, f"settings.{k}", f"must be a port number (0: no Flower), got {v!r}")
        elif k == "worker_processes":
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise _fail(path, f"settings.{k}", f"must be a whole number (0: one per CPU), got {v!r}")
        elif k == "redis_fsync":
            if v not in REDIS_FSYNC:
                raise _fail(path, f"settings.{k}", f"must be one of {', '.join(REDIS_FSYNC)}, got {v!r}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise _fail(path, f"settings.{k}", f"must be a positive number, got {v!r}")
    broker = data.get("broker")
    if broker is not None:
        broker = _string(path, "broker", broker)
        if urlsplit(broker).scheme not in ("redis", "rediss", "unix"):
            raise _fail(path, "broker", f"must be a redis:// URL, got scheme {urlsplit(broker).scheme!r}")
    history = data.get("history")
    if history is not None:
        history = _string(path, "history", history)
    tasks = _mapping(path, "tasks", data.get("tasks"))
    from ..workflow.task_defs import from_inventory

    from_inventory(tasks, path)          # checked now: errors name the file and the field
    storage = None
    if data.get("storage") is not None:
        from ..storage.config import parse as parse_storage

        storage = parse_storage(data["storage"], path, set(machines))
    clouds = None
    if data.get("clouds") is not None:
        from ..clouds.config import parse as parse_clouds

        clouds = parse_clouds(data["clouds"], path)
    return Inventory(path=path, machines=machines, broker=broker, history=history, settings=settings,
                     tasks=tasks, storage=storage or {}, clouds=clouds or {})


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
            raise _fail(extra_path, "", f"may hold only a 'machines:' section (it is written by `{writer}`)")
        extra = _build(raw, extra_path)
        for name, machine in extra.machines.items():
            if name in inv.machines:
                raise _fail(extra_path, f"machines.{name}", f"also defined in {path.name}; rename one of them")
            inv.machines[name] = machine
