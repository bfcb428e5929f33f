"""The checks of one inventory entry's fields (a machine, the defaults), each error naming
the file and the field: types, names, sizes, ssh options cmq refuses, host and workdir
lists that must be in step with a hostlist."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from ..core import defaults
from ..core.errors import ConfigError
from ..core.hostlist import HostlistError, expand

#: The ways a machine is driven: over ssh, on this host, or by its own worker.
MODES = ("ssh", "local", "agent")
#: How an unknown host key is treated.
HOST_KEY_POLICIES = ("strict", "ask", "accept-new")
#: The fields a machine entry (or the defaults) may have.
MACHINE_FIELDS = {
    "host", "port", "user", "identity", "ssh_options", "slots", "labels", "workdir",
    "env", "mode", "enabled", "host_key_policy", "max_sessions", "transport", "transfer", "cache",
    "host_jobs", "facts", "broker_access", "zone",
}
#: How an agent's worker reaches the broker: an ssh tunnel from the controller, or TLS to
#: the broker's address with a client certificate (``cmq up --tls``).
BROKER_ACCESS = ("tunnel", "tls")
#: How jobs reach a machine: a session, one ssh client per job, or whichever works.
TRANSPORTS = ("auto", "session", "exec")
#: How files are copied to a machine.
TRANSFER_METHODS = ("auto", "rsync", "tar")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B?)?\s*$", re.IGNORECASE)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LABEL = NAME
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# ssh options that would switch host key checking off behind the inventory's back.
_FORBIDDEN_SSH = {
    "stricthostkeychecking": {"no", "off"},
    "userknownhostsfile": {"/dev/null"},
}


def fail(path: Path, where: str, msg: str) -> ConfigError:
    """A ConfigError naming the file, the field and what is wrong with it."""
    return ConfigError(f"{path.name}: {where}: {msg}" if where else f"{path.name}: {msg}")


def positive_int(path: Path, where: str, value: Any) -> int:
    """``value`` as a positive integer, or a ConfigError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise fail(path, where, f"must be a positive integer, got {value!r}")
    return value


def string(path: Path, where: str, value: Any) -> str:
    """``value`` as a non-empty string, or a ConfigError naming the field."""
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise fail(path, where, f"must be a non-empty string, got {value!r}")
    return str(value)


def mapping(path: Path, where: str, value: Any) -> dict:
    """``value`` as a mapping (empty when None), or a ConfigError naming the field."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(path, where, f"must be a mapping, got {type(value).__name__}")
    return value


#: Fields of a machine entry whose range expands in step with the name's
#: (``node[1-4]: {host: "10.0.0.1[1-4]", workdir: "/w/node[1-4]"}``).
IN_STEP = ("host", "workdir")


def in_step(path: Path, where: str, key: str, value: Any, names: list[str]) -> list[Any]:
    """``value`` per machine of ``names``: a range in it expands in step with the name's,
    a value without one (or of an entry that names one machine) is the same for all."""
    if value is None or "[" not in str(value) or "[" not in where:
        return [value] * len(names)
    try:
        values = expand(str(value))
    except HostlistError as e:
        raise fail(path, f"{where}.{key}", str(e)) from None
    if len(values) != len(names):
        what = "hosts" if key == "host" else "values"
        raise fail(path, f"{where}.{key}", f"expands to {len(values)} {what} but the name expands to "
                                            f"{len(names)} machines")
    return values


def ssh_options(path: Path, where: str, value: Any) -> tuple[tuple[str, str], ...]:
    """A machine's ``ssh_options`` as (name, value) pairs; those that would switch host key checking off are refused."""
    if value is None:
        return ()
    if isinstance(value, list):
        pairs = []
        for i, item in enumerate(value):
            text = string(path, f"{where}[{i}]", item)
            key, sep, val = text.replace("=", " ", 1).partition(" ")
            if not sep:
                raise fail(path, f"{where}[{i}]", f"expected 'Option=value', got {text!r}")
            pairs.append((key.strip(), val.strip()))
    elif isinstance(value, dict):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        raise fail(path, where, "must be a mapping or a list of 'Option=value'")
    for key, val in pairs:
        bad = _FORBIDDEN_SSH.get(key.lower())
        if bad and val.lower() in bad:
            raise fail(
                path, f"{where}.{key}",
                f"{key}={val} switches host key checking off; cmq refuses it "
                "(use host_key_policy: accept-new to accept keys of new hosts)",
            )
    return tuple(pairs)


def machine_fields(path: Path, where: str, raw: dict, base: dict) -> dict[str, Any]:
    """The checked fields of a machine entry ``raw`` over ``base`` (the defaults), each error naming the field."""
    merged = {**base, **raw}
    unknown = set(merged) - MACHINE_FIELDS
    if unknown:
        key = sorted(map(str, unknown))[0]
        raise fail(path, f"{where}.{key}", unknown_message("field", key, MACHINE_FIELDS))
    out: dict[str, Any] = {}
    mode = merged.get("mode", "ssh")
    if mode not in MODES:
        raise fail(path, f"{where}.mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    out["mode"] = mode
    if "host" in merged:
        out["host"] = string(path, f"{where}.host", merged["host"])
    if merged.get("port") is not None:
        port = positive_int(path, f"{where}.port", merged["port"])
        if port > 65535:
            raise fail(path, f"{where}.port", f"must be at most 65535, got {port}")
        out["port"] = port
    for key in ("user", "identity", "workdir"):
        if merged.get(key) is not None:
            out[key] = string(path, f"{where}.{key}", merged[key])
    out["slots"] = positive_int(path, f"{where}.slots", merged.get("slots", defaults.SLOTS))
    if "max_sessions" in merged:
        out["max_sessions"] = positive_int(path, f"{where}.max_sessions", merged["max_sessions"])
    labels = merged.get("labels", []) or []
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, list):
        raise fail(path, f"{where}.labels", "must be a list of names")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not LABEL.match(label):
            raise fail(path, f"{where}.labels[{i}]", f"not a valid label name: {label!r}")
    out["labels"] = tuple(labels)
    env = mapping(path, f"{where}.env", merged.get("env"))
    for k in env:
        if not isinstance(k, str) or not ENV_KEY.match(k):
            raise fail(path, f"{where}.env", f"not a valid variable name: {k!r}")
    out["env"] = tuple((k, "" if v is None else str(v)) for k, v in env.items())
    out["ssh_options"] = ssh_options(path, f"{where}.ssh_options", merged.get("ssh_options"))
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        raise fail(path, f"{where}.enabled", f"must be true or false, got {enabled!r}")
    out["enabled"] = enabled
    for flag in ("host_jobs",):
        if flag in merged:
            if not isinstance(merged[flag], bool):
                raise fail(path, f"{where}.{flag}", f"must be true or false, got {merged[flag]!r}")
            out[flag] = merged[flag]
    policy = merged.get("host_key_policy", "strict")
    if policy not in HOST_KEY_POLICIES:
        raise fail(
            path, f"{where}.host_key_policy",
            f"must be one of {', '.join(HOST_KEY_POLICIES)}, got {policy!r}",
        )
    out["host_key_policy"] = policy
    transport = merged.get("transport", "auto")
    if transport not in TRANSPORTS:
        raise fail(path, f"{where}.transport", f"must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    out["transport"] = transport
    transfer = merged.get("transfer", "auto")
    if transfer not in TRANSFER_METHODS:
        raise fail(path, f"{where}.transfer",
                    f"must be one of {', '.join(TRANSFER_METHODS)}, got {transfer!r}")
    out["transfer"] = transfer
    access = merged.get("broker_access", "tunnel")
    if access not in BROKER_ACCESS:
        raise fail(path, f"{where}.broker_access", f"must be one of {', '.join(BROKER_ACCESS)}, got {access!r}")
    if access != "tunnel" and "broker_access" in raw and mode != "agent" and where != "defaults":
        raise fail(path, f"{where}.broker_access", f"only an agent (mode: agent) reaches the broker itself; "
                                                   f"this machine's worker runs here ({mode})")
    out["broker_access"] = access
    if merged.get("zone") is not None:
        zone = merged["zone"]
        if not isinstance(zone, str | int) or isinstance(zone, bool) or not str(zone).strip():
            raise fail(path, f"{where}.zone", f"must be a name (machines of one zone relay to each other), "
                                              f"got {zone!r}")
        out["zone"] = str(zone)
    if "cache" in merged:
        out["cache"] = parse_size(merged["cache"], path, f"{where}.cache")
    if merged.get("facts") is not None:
        out["facts"] = tuple(fact_probes(path, f"{where}.facts", merged["facts"]).items())
    return out


#: What the name of a user's fact may be (it is a name in `--where` expressions).
FACT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def fact_probes(path: Path, where: str, value: Any) -> dict[str, str]:
    """The inventory's own facts (``facts: {gpu: nvidia-smi -L | wc -l}``): name -> shell
    command, each name checked (not a built-in fact, not a word of `--where`)."""
    from ..facts.probe import BUILTIN
    from ..facts.where import KEYWORDS

    out = {}
    for name, command in mapping(path, where, value).items():
        if not isinstance(name, str) or not FACT_NAME.match(name) or name in KEYWORDS:
            raise fail(path, f"{where}.{name}", "a fact's name uses letters, digits and '_' (not a digit first)")
        if name in BUILTIN:
            raise fail(path, f"{where}.{name}", f"{name} is a built-in fact ({', '.join(BUILTIN)})")
        out[name] = string(path, f"{where}.{name}", command)
    return out


def parse_size(value: Any, path: Path, where: str) -> int:
    """Bytes from ``10GiB``, ``500M``, ``2.5G`` or a plain integer (powers of 1024)."""
    if isinstance(value, bool):
        raise fail(path, where, f"must be a size such as 10GiB, got {value!r}")
    if isinstance(value, int) and value >= 0:
        return value
    m = _SIZE.match(str(value)) if isinstance(value, str) else None
    if not m:
        raise fail(path, where, f"must be a size such as 10GiB or 500M, got {value!r}")
    number, unit = float(m.group(1)), m.group(2).upper()
    return int(number * 1024 ** " KMGTP".index(unit or " "))


def unknown_message(what: str, key: str, known: set[str]) -> str:
    """'unknown field (did you mean 'slots'?; known: ...)'."""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {what} ({hint}known: {', '.join(sorted(known))})"
