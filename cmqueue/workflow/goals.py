"""When a step is already done: its check, and the decision.

A task may carry a check (see :meth:`TaskDef.check`); its step's job carries it in
``params["check"]``, with the earlier successes of the same step, command and target
that the history holds (``earlier``, newest first). The worker that takes the job
evaluates the check on the machine, just before the command would run (so a step
sees what the steps before it made):

- ``creates``: every file exists (relative to the machine's workdir);
- ``inputs``: the SHA-256s of these files (a directory: of its files, in order) with
  the command and target make a key, and an earlier success has the same key;
- ``done_if``: the command exits 0 (1 means not done; any other exit is an error).

Every check given must say done. A done step is not run: its job succeeds at once
with the reason (``skipped: done: ...``) and the output of the earlier success it
reuses, so a ``+`` after it adds that value. A check that fails to run fails the step.

The worker side is :mod:`cmqueue.fleet.step_checks`; this module is pure but for
:func:`attach`, which reads the history.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

#: Seconds a check may take on the machine.
CHECK_TIMEOUT = 120.0
#: Earlier successes a step's job carries (for inputs, the one with the same key is reused).
EARLIER = 5
#: Output of an earlier success a job carries at most (longer is cut, and says so).
EARLIER_OUTPUT = 256 * 1024
#: The prefix of the reason of a step that was done.
SKIPPED = "skipped: done"


def attach(steps: list[Any], store: Any, force: set[str] | bool = False) -> None:
    """Give each task step with a check the earlier successes it may reuse; a forced
    step (``force`` True: all) loses its check and says it was forced."""
    for step in steps:
        spec = step.spec
        check = spec.params.get("check")
        if step.kind != "task" or not check:
            continue
        if force is True or (force and step.name in force):
            spec.params = {k: v for k, v in spec.params.items() if k != "check"}
            spec.params["forced"] = True
            continue
        check["earlier"] = earlier_runs(store, step.name, spec.command, spec.target)


def earlier_runs(store: Any, step: str, command: str, target: str) -> list[dict[str, Any]]:
    """The latest successes of step ``step`` that ran ``command`` on ``target``: job,
    machine, output (cut at EARLIER_OUTPUT), and the inputs key when it had one."""
    out = []
    for rec in store.step_successes(step, limit=4 * EARLIER):
        if rec.spec.command != command or rec.spec.target != target:
            continue
        res = rec.result
        stdout = res.stdout if res else ""
        data = res.data if res else {}
        out.append({"job": rec.id, "machine": rec.machine, "ended": rec.ended,
                    "stdout": stdout[:EARLIER_OUTPUT], "stdout_truncated": bool(res and res.stdout_truncated)
                    or len(stdout) > EARLIER_OUTPUT, "inputs_key": data.get("inputs_key"),
                    "inputs": data.get("inputs") or {}})
        if len(out) >= EARLIER:
            break
    return out


def files_script(check: dict[str, Any]) -> str | None:
    """A POSIX sh script printing one line per ``creates`` file (``have``/``missing``),
    then one per ``inputs`` path (its SHA-256, or ``missing``); None when there are none."""
    lines = []
    for path in check.get("creates", []):
        q = shlex.quote(path)
        lines.append(f"if [ -e {q} ]; then echo have; else echo missing; fi")
    for path in check.get("inputs", []):
        q = shlex.quote(path)
        lines.append(f"if [ -f {q} ]; then sha256sum < {q} | cut -c1-64; "
                     f"elif [ -d {q} ]; then (cd {q} && find . -type f | LC_ALL=C sort | "
                     "while IFS= read -r f; do printf '%s  %s\\n' \"$(sha256sum < \"$f\" | cut -c1-64)\" \"$f\"; "
                     "done) | sha256sum | cut -c1-64; else echo missing; fi")
    return "\n".join(lines) if lines else None


def inputs_key(command: str, target: str, digests: dict[str, str]) -> str:
    """The key of a run: its command, target and inputs' digests."""
    text = json.dumps([command, target, sorted(digests.items())], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Decision:
    """What a check found: ``done`` (and the earlier success to reuse), or not done,
    or ``error`` (the check failed to run). ``data`` goes into the job's result."""

    done: bool = False
    reasons: list[str] = field(default_factory=list)
    error: str = ""
    reuse: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """The reasons in one line."""
        return "; ".join(self.reasons)


def decide_files(check: dict[str, Any], output: str, command: str, target: str) -> Decision:
    """The decision of the ``creates`` and ``inputs`` parts from the output of
    :func:`files_script` (``done`` True when they are satisfied or absent)."""
    creates, inputs = check.get("creates", []), check.get("inputs", [])
    lines = output.splitlines()
    if len(lines) != len(creates) + len(inputs):
        return Decision(error=f"the file check printed {len(lines)} lines, not {len(creates) + len(inputs)}")
    d = Decision(done=True)
    missing = [p for p, line in zip(creates, lines[:len(creates)], strict=True) if line.strip() != "have"]
    if missing:
        d.done = False
        d.reasons.append(f"{', '.join(missing)} missing")
    elif creates:
        d.reasons.append(f"{', '.join(creates)} exist{'s' if len(creates) == 1 else ''}")
    if not inputs:
        d.reuse = (check.get("earlier") or [None])[0]
        return d
    digests = {p: line.strip() for p, line in zip(inputs, lines[len(creates):], strict=True)}
    absent = [p for p, sha in digests.items() if sha == "missing"]
    if absent:
        d.done = False
        d.reasons.append(f"input {', '.join(absent)} missing")
        return d
    key = inputs_key(command, target, digests)
    d.data = {"inputs_key": key, "inputs": digests}
    earlier = check.get("earlier") or []
    same = next((e for e in earlier if e.get("inputs_key") == key), None)
    if same is not None:
        d.reuse = same
        d.reasons.append(f"inputs unchanged since job {same['job']}")
        return d
    d.done = False
    last = next((e for e in earlier if e.get("inputs")), None)
    if last is None:
        d.reasons.append("no earlier success with these inputs")
    else:
        changed = [p for p in inputs if last["inputs"].get(p) != digests[p]]
        d.reasons.append(f"inputs changed since job {last['job']}: {', '.join(changed) or 'the command or target'}")
    return d


def decide_done_if(d: Decision, command: str, code: int | None, stderr: str) -> Decision:
    """Add the exit of ``done_if`` (``command``) to ``d``: 0 done, 1 not done, else error."""
    shown = command if len(command) <= 60 else command[:59] + "…"
    if code == 0:
        d.reasons.append(f"`{shown}` exited 0")
    elif code == 1:
        d.done = False
        d.reasons.append(f"`{shown}` exited 1")
    else:
        tail = stderr.strip().splitlines()[-1:] or [""]
        how = f"exited {code}" if code is not None else "did not finish"
        d.error = f"done_if `{shown}` {how}" + (f": {tail[0]}" if tail[0] else "")
    return d


def skipped_reason(d: Decision) -> str:
    """The reason a done step's job records."""
    text = f"{SKIPPED}: {d.reason}"
    if d.reuse is None:
        text += " (no earlier success: its output is empty)"
    else:
        text += f"; output of job {d.reuse['job']}"
    return text


def was_skipped(reason: str | None) -> bool:
    """True when a job's reason says its step was done and not run."""
    return bool(reason) and reason.startswith(SKIPPED)  # type: ignore[union-attr]
