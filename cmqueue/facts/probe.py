"""The gather job's POSIX sh script and the parse of what it prints. Pure.

The script prints one line per fact, ``cmqfact NAME VALUE`` (VALUE empty when the probe
failed), so a probe that fails gives null instead of failing the whole gather. It runs in
the machine's workdir, so the free disk is that of the workdir. Users' probes (the
inventory's ``facts:``) run under a time limit (``timeout`` when the host has it, else a
watchdog) and give their first line of output: a number when it reads as one, else text.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from .where import number

#: The facts every gather gives, with what each means.
BUILTIN = {
    "cpus": "online CPUs",
    "mem_gb": "total memory, GB (10^9 bytes)",
    "disk_free_gb": "free disk in the machine's workdir, GB",
    "os": "ID of /etc/os-release (debian, ubuntu, alpine, ...), else the kernel's name",
    "kernel": "kernel release (uname -r)",
    "python": "python3's version (3.11.2)",
    "load": "load average over 1 minute",
}
#: The marker of a fact line in the job's output.
MARK = "cmqfact"
#: Seconds a user's probe may run (the default of the setting facts_probe_timeout).
PROBE_TIMEOUT = 10

_PRELUDE = r"""# cmq facts: gather this machine's facts (POSIX sh)
cmq_fact() { printf '%s %s %s\n' "$MARK" "$1" "$(printf '%s' "$2" | head -n 1 | tr '\t' ' ')"; }
cmq_limit() {
  if command -v timeout >/dev/null 2>&1; then timeout "$1" sh -c "$2" </dev/null 2>/dev/null; return; fi
  sh -c "$2" </dev/null 2>/dev/null & cmq_p=$!
  ( sleep "$1"; kill -9 "$cmq_p" 2>/dev/null ) >/dev/null 2>&1 & cmq_w=$!
  wait "$cmq_p"; cmq_r=$?; kill "$cmq_w" 2>/dev/null; return "$cmq_r"
}
cmq_fact cpus "$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)"
cmq_fact mem_kb "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null)"
cmq_fact disk_free_kb "$(df -Pk . 2>/dev/null | awk 'NR==2 {print $4}')"
cmq_fact os "$( (. /etc/os-release 2>/dev/null && printf '%s' "$ID") || uname -s 2>/dev/null | tr 'A-Z' 'a-z')"
cmq_fact kernel "$(uname -r 2>/dev/null)"
cmq_fact python "$(python3 -c 'import platform; print(platform.python_version())' 2>/dev/null)"
cmq_fact load "$(cut -d ' ' -f 1 /proc/loadavg 2>/dev/null)"
"""


def script(probes: Mapping[str, str] | None = None, limit: float = PROBE_TIMEOUT) -> str:
    """The gather job's command: the built-in probes, then ``probes`` (name -> shell
    command), each under ``limit`` seconds (a probe that exits non-zero gives null)."""
    lines = [_PRELUDE.replace("$MARK", MARK).rstrip("\n")]
    seconds = max(1, int(round(limit)))
    for name, command in (probes or {}).items():
        lines.append(f"cmq_v=$(cmq_limit {seconds} {shlex.quote(command)}) || cmq_v=''; "
                     f"cmq_fact {shlex.quote(name)} \"$cmq_v\"")
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def _value(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    found = number(text)
    return text if found is None else found


def _gb(kb: Any) -> float | None:
    return round(kb * 1024 / 1e9, 2) if isinstance(kb, (int, float)) else None


def parse(output: str, probes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The facts in a gather job's ``output``: every built-in and every name of ``probes``
    (null when the probe failed or printed nothing)."""
    raw: dict[str, str] = {}
    for line in output.splitlines():
        mark, _, rest = line.partition(" ")
        if mark != MARK:
            continue
        name, _, value = rest.partition(" ")
        raw[name] = value
    facts: dict[str, Any] = {
        "cpus": _value(raw.get("cpus", "")),
        "mem_gb": _gb(_value(raw.get("mem_kb", ""))),
        "disk_free_gb": _gb(_value(raw.get("disk_free_kb", ""))),
        "os": raw.get("os", "").strip() or None,
        "kernel": raw.get("kernel", "").strip() or None,
        "python": raw.get("python", "").strip() or None,
        "load": _value(raw.get("load", "")),
    }
    if not isinstance(facts["cpus"], int):
        facts["cpus"] = None
    if not isinstance(facts["load"], (int, float)):
        facts["load"] = None
    for name in probes or {}:
        facts[name] = _value(raw.get(name, ""))
    return facts
