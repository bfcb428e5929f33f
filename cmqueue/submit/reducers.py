"""Reduce the outputs of a map's jobs to one value. Pure: no Celery, no Redis.

Built in: ``sum``, ``min``, ``max`` (each job prints a number), ``concat`` (the outputs
joined in job order), ``lines`` (every non-empty output line, in job order) and ``json``
(each job prints JSON; numbers add, strings and lists concatenate, objects merge key by
key with the same rules - word counts add up) and ``add`` (the workflow ``+``: as json,
but an output that is not JSON counts as text, so text concatenates). ``MODULE:FUNC`` or ``path/to/file.py:FUNC``
names a function of your own, called with the list of outputs (strings, in job order),
returning anything JSON can hold.

An outcome is a dict as the worker reports it: ``job``, ``state``, ``machine``,
``exit_code``, ``stdout``, ``stdout_truncated``, ``reason``, ``started``, ``ended``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import CmqError, UsageError

BUILTIN = ("sum", "concat", "lines", "json", "min", "max", "add")


class ReduceError(CmqError):
    """The reduce could not produce a value; the message names the job or the reducer."""


@dataclass
class Reduced:
    """A reduce's value, the jobs it used and the ones it left out (with why)."""

    value: Any
    used: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def _where(o: dict[str, Any]) -> str:
    return f"job {o.get('job')} on {o.get('machine') or '-'}"


def _number(o: dict[str, Any]) -> int | float:
    text = (o.get("stdout") or "").strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ReduceError(f"{_where(o)}: output {text[:40]!r} is not a number") from None


def combine(a: Any, b: Any, where: str = "") -> Any:
    """The json reducer's rule for two values."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, bool) or isinstance(b, bool):
        raise ReduceError(f"{where}: cannot add true/false values")
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = combine(out.get(k), v, where)
        return out
    raise ReduceError(f"{where}: cannot combine {type(a).__name__} with {type(b).__name__}")


def _json(o: dict[str, Any]) -> Any:
    try:
        return json.loads(o.get("stdout") or "")
    except ValueError as e:
        raise ReduceError(f"{_where(o)}: output is not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def _fold_json(outcomes: Sequence[dict[str, Any]]) -> Any:
    acc: Any = None
    for o in outcomes:
        acc = combine(acc, _json(o), _where(o))
    return acc


def _value(o: dict[str, Any]) -> Any:
    text = o.get("stdout") or ""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _fold_add(outcomes: Sequence[dict[str, Any]]) -> Any:
    acc: Any = None
    for o in outcomes:
        acc = combine(acc, _value(o), _where(o))
    return acc


_BUILTINS: dict[str, Callable[[Sequence[dict[str, Any]]], Any]] = {
    "sum": lambda os_: sum((_number(o) for o in os_), 0),
    "min": lambda os_: min((_number(o) for o in os_), default=None),
    "max": lambda os_: max((_number(o) for o in os_), default=None),
    "concat": lambda os_: "".join(o.get("stdout") or "" for o in os_),
    "lines": lambda os_: [ln for o in os_ for ln in (o.get("stdout") or "").splitlines() if ln.strip()],
    "json": _fold_json,
    "add": _fold_add,
}


def load_function(name: str, cwd: str | None = None) -> Callable[[list[str]], Any]:
    """The user reducer ``MODULE:FUNC`` or ``file.py:FUNC`` (relative to ``cwd``)."""
    module_name, sep, func_name = name.rpartition(":")
    if not sep or not module_name or not func_name:
        raise UsageError(f"--reduce={name}: not one of {', '.join(BUILTIN)} and not MODULE:FUNC")
    try:
        if module_name.endswith(".py"):
            path = Path(cwd or ".", module_name).expanduser().resolve()
            spec = importlib.util.spec_from_file_location(f"cmq_reducer_{path.stem}", path)
            if spec is None or spec.loader is None or not path.is_file():
                raise UsageError(f"--reduce={name}: cannot read {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if cwd and cwd not in sys.path:
                sys.path.insert(0, cwd)
            module = importlib.import_module(module_name)
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - any import failure is the user's module's
        raise UsageError(f"--reduce={name}: cannot import {module_name}: {type(e).__name__}: {e}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise UsageError(f"--reduce={name}: {module_name} has no function {func_name}")
    return func


def check(name: str, cwd: str | None = None) -> None:
    """Raise UsageError now (at submit) for a reducer that cannot be used."""
    if name not in _BUILTINS:
        load_function(name, cwd)


def reduce(name: str, outcomes: Sequence[dict[str, Any] | None], allow_failures: bool = False,
           cwd: str | None = None) -> Reduced:
    """Reduce the succeeded outcomes; a failed, lost or cancelled job fails the reduce
    (naming every such job) unless ``allow_failures``, which leaves them out and lists them."""
    good: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for o in outcomes:
        if o is None:
            skipped.append({"job": None, "state": "lost", "reason": "outcome no longer known"})
        elif o.get("state") != "succeeded":
            skipped.append({"job": o.get("job"), "machine": o.get("machine"), "state": o.get("state"),
                            "exit_code": o.get("exit_code"), "reason": o.get("reason", "")})
        elif o.get("stdout_truncated"):
            raise ReduceError(f"{_where(o)}: output longer than output_cap was cut; a reduce needs all of it "
                              "(write it to a file and fetch it with --get)")
        else:
            good.append(o)
    if skipped and (not allow_failures or not good):
        names = ", ".join(f"{s['job']} ({s['state']}{', exit ' + str(s['exit_code']) if s.get('exit_code') else ''})"
                          for s in skipped[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        if not good:
            raise ReduceError(f"nothing to reduce: none of the {len(outcomes)} job(s) succeeded: {names}{more}")
        raise ReduceError(f"{len(skipped)} of {len(outcomes)} job(s) did not succeed: {names}{more} "
                          "(--allow-failures reduces the others)")
    value = apply(name, good, cwd)
    return Reduced(value=value, used=[o["job"] for o in good], skipped=skipped)


def apply(name: str, outcomes: Sequence[dict[str, Any]], cwd: str | None = None) -> Any:
    """Apply reducer ``name`` to succeeded outcomes (also used for the partial value)."""
    builtin = _BUILTINS.get(name)
    if builtin is not None:
        return builtin(outcomes)
    func = load_function(name, cwd)
    try:
        value = func([o.get("stdout") or "" for o in outcomes])
        json.dumps(value)
    except ReduceError:
        raise
    except (TypeError, ValueError) as e:
        raise ReduceError(f"reducer {name}: {type(e).__name__}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's function failed: say so, do not crash
        raise ReduceError(f"reducer {name} raised {type(e).__name__}: {e}") from None
    return value


def render(value: Any) -> str:
    """The value as printed: text as is, numbers plainly, lines one per line, else JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    return json.dumps(value, sort_keys=True)
