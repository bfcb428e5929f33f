"""Task definitions: a Python function that returns the shell command to run (a tasks
file, ``--tasks=FILE``), or an entry of the inventory's ``tasks:`` map.

    from cmqueue.workflow import task

    @task(label="cpu", timeout=600, puts=["data.csv"], gets=["out.txt"])
    def prepare():
        return "python3 prepare.py data.csv > out.txt"

    def count():                 # undecorated functions are tasks too (when none is decorated)
        return ["wc", "-l", "/etc/passwd"]     # an argv is quoted word by word

A task runs once per workflow step; its command is computed when the workflow is
created (``cmq run``/``cmq plan``), so a resumed workflow runs what was planned.

A task may say when it is already done, and what it needs first (see
:mod:`cmqueue.workflow.goals`)::

    @task(creates=["out/model.bin"], needs=["fetch"])
    def train():
        return "python3 train.py > out/model.bin"

``creates``: files (relative to the machine's workdir) whose presence means done;
``done_if``: a shell command on the machine, done when it exits 0 (1: not done, anything
else: the check failed); ``inputs``: files on the machine whose SHA-256s, with the command
and target, must match an earlier success; ``needs``: tasks that run (or are done) first.
"""

from __future__ import annotations

import importlib.util
import inspect
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import UsageError

TASK_FIELDS = {"command", "on", "label", "put", "get", "timeout", "retries", "creates", "done_if", "inputs",
               "needs", "where"}


@dataclass(frozen=True)
class TaskDef:
    """One task: its command and where and how it runs."""

    name: str
    command: str
    on: str | None = None
    label: str | None = None
    puts: tuple[str, ...] = ()
    gets: tuple[str, ...] = ()
    timeout: float | None = None
    retries: int = 0
    source: str = ""
    creates: tuple[str, ...] = ()
    done_if: str | None = None
    inputs: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    where: str | None = None

    def placed(self) -> str:
        """Its target in words."""
        return f"on {self.on}" if self.on else f"label {self.label}" if self.label else "any machine"

    def check(self) -> dict[str, Any]:
        """What tells that it is done (empty when nothing does): the ``check`` a step's
        job carries (see :mod:`cmqueue.workflow.goals`)."""
        out: dict[str, Any] = {}
        if self.creates:
            out["creates"] = list(self.creates)
        if self.done_if:
            out["done_if"] = self.done_if
        if self.inputs:
            out["inputs"] = list(self.inputs)
        return out


@dataclass
class _Marked:
    options: dict[str, Any] = field(default_factory=dict)


def task(func: Callable | None = None, *, on: str | None = None, label: str | None = None,
         puts: list[str] | tuple[str, ...] = (), gets: list[str] | tuple[str, ...] = (),
         timeout: float | None = None, retries: int = 0, creates: list[str] | tuple[str, ...] = (),
         done_if: str | None = None, inputs: list[str] | tuple[str, ...] = (),
         needs: list[str] | tuple[str, ...] = (), where: str | None = None) -> Any:
    """Mark a function of a tasks file as a task, with where and how it runs, when it is
    already done and what it needs first."""

    def mark(f: Callable) -> Callable:
        options = {"on": on, "label": label, "puts": tuple(puts), "gets": tuple(gets), "timeout": timeout,
                   "retries": retries, "creates": creates, "done_if": done_if, "inputs": inputs,
                   "needs": needs, "where": where}
        f.__cmq_task__ = _Marked(options)  # type: ignore[attr-defined]
        return f

    return mark(func) if func is not None else mark


def _command(value: Any, where: str) -> str:
    if isinstance(value, (list, tuple)) and value and all(isinstance(w, str) for w in value):
        return shlex.join(value)
    if isinstance(value, str) and value.strip():
        return value
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:39] + "…"
    raise UsageError(f"{where} returned {shown} ({type(value).__name__}), not a command "
                     "(a non-empty string or a list of strings)")


def load_file(path: str | Path) -> dict[str, TaskDef]:
    """The tasks of a Python file: its @task functions, or else every public function
    defined in it. Each is called once, now; an error names the file and the task."""
    p = Path(path).expanduser().resolve()
    spec = importlib.util.spec_from_file_location(f"cmq_tasks_{p.stem}", p)
    if spec is None or spec.loader is None or not p.is_file():
        raise UsageError(f"--tasks={path}: no such file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's file failed to load: say where
        raise UsageError(f"--tasks={path}: cannot load it: {type(e).__name__}: {e}") from None
    funcs = {n: f for n, f in vars(module).items()
             if inspect.isfunction(f) and f.__module__ == module.__name__ and not n.startswith("_")}
    marked = {n: f for n, f in funcs.items() if hasattr(f, "__cmq_task__")}
    chosen = marked or funcs
    out = {}
    for name, f in chosen.items():
        where = f"{p.name}: task {name}"
        try:
            value = f()
        except Exception as e:  # noqa: BLE001 - the user's function failed: say which
            raise UsageError(f"{where} raised {type(e).__name__}: {e}") from None
        opts = getattr(f, "__cmq_task__", _Marked()).options
        goals = _goal_fields(opts, where, UsageError)
        out[name] = TaskDef(name=name, command=_command(value, where), on=opts.get("on"), label=opts.get("label"),
                            puts=tuple(opts.get("puts", ())), gets=tuple(opts.get("gets", ())),
                            timeout=opts.get("timeout"), retries=int(opts.get("retries") or 0), source=str(p),
                            **goals)
    return out


def from_inventory(raw: Mapping[str, Any] | None, path: Path) -> dict[str, TaskDef]:
    """The inventory's ``tasks:`` map (name: command, or name: {command, on, label, put,
    get, timeout, retries}); errors name the file and the field."""
    from ..core.errors import ConfigError

    out = {}
    for name, entry in (raw or {}).items():
        where = f"{path.name}: tasks.{name}"
        if isinstance(entry, str):
            entry = {"command": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a command or a mapping with a command")
        if True in entry:          # YAML 1.1 reads an unquoted `on:` key as true
            entry = {("on" if k is True else k): v for k, v in entry.items()}
        unknown = set(entry) - TASK_FIELDS
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown field (known: {', '.join(sorted(TASK_FIELDS))})")
        try:
            command = _command(entry.get("command"), where)
        except UsageError as e:
            raise ConfigError(str(e).replace(" returned ", ": command is ")) from None
        as_list = {k: ([entry[k]] if isinstance(entry.get(k), str) else list(entry.get(k) or []))
                   for k in ("put", "get")}
        timeout = entry.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ConfigError(f"{where}.timeout: must be a positive number of seconds, got {timeout!r}")
        retries = entry.get("retries", 0)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"{where}.retries: must be 0 or more, got {retries!r}")
        out[str(name)] = TaskDef(name=str(name), command=command, on=entry.get("on"), label=entry.get("label"),
                                 puts=tuple(as_list["put"]), gets=tuple(as_list["get"]), timeout=timeout,
                                 retries=retries, source=str(path), **_goal_fields(entry, where, ConfigError))
    return out


def _goal_fields(raw: Mapping[str, Any], where: str, error: type[Exception]) -> dict[str, Any]:
    """``creates``, ``inputs`` and ``needs`` (a string or a list of strings), ``done_if``
    and ``where`` (a string), checked; an error names the task and the field."""
    out: dict[str, Any] = {}
    for key in ("creates", "inputs", "needs"):
        value = raw.get(key) or ()
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
            raise error(f"{where}.{key}: must be a list of non-empty strings, got {value!r}")
        out[key] = tuple(v.strip() for v in value)
    for key in ("done_if", "where"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise error(f"{where}.{key}: must be a non-empty string, got {value!r}")
        out[key] = value.strip() if value else None
    return out
