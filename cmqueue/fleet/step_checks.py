"""The worker's half of a step's check (see :mod:`cmqueue.workflow.goals`): run it on
the machine, just before the step's command would run, and turn what it found into
the job's result when the step is done or the check failed."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..core import clock
from ..core.models import JobResult, JobSpec
from ..machine.runner import Runner
from ..workflow import goals


def _run(runner: Runner, spec: JobSpec, part: str, command: str) -> JobResult:
    return runner.run(dataclasses.replace(spec, id=f"{spec.id}-{part}", command=command,
                                          timeout=goals.CHECK_TIMEOUT))


def evaluate(runner: Runner, spec: JobSpec) -> tuple[JobResult | None, dict[str, Any]]:
    """Run the check of ``spec`` on the runner's machine. Returns the job's result when
    the step is not to run (done: succeeded, reusing an earlier output; or the check
    failed: failed, not retried), else None and what to add to the run's result (the
    inputs' digests and why it runs)."""
    check = spec.params["check"]
    started = clock.now()
    machine = runner.machine.name
    decision = goals.Decision(done=True)
    script = goals.files_script(check)
    if script is not None:
        ran = _run(runner, spec, "files", script)
        if not ran.ok:
            decision = goals.Decision(error=f"the file check {ran.reason or 'failed'}: {ran.stderr.strip()[-200:]}")
        else:
            decision = goals.decide_files(check, ran.stdout, spec.command, spec.target)
    if decision.done and not decision.error and check.get("done_if"):
        ran = _run(runner, spec, "done-if", check["done_if"])
        code = None if ran.reason.startswith("timed out") else ran.exit_code
        goals.decide_done_if(decision, check["done_if"], code, ran.stderr)
    if decision.error:
        return JobResult(job=spec.id, machine=machine, exit_code=None, started=started, ended=clock.now(),
                         reason=f"check failed: {decision.error}", data={"final": True, "check_failed": True}), {}
    if not decision.done:
        return None, {**decision.data, "ran_because": decision.reason}
    reuse = decision.reuse or {}
    return JobResult(job=spec.id, machine=machine, exit_code=0, started=started, ended=clock.now(),
                     stdout=reuse.get("stdout", ""), stdout_truncated=bool(reuse.get("stdout_truncated")),
                     reason=goals.skipped_reason(decision),
                     data={**decision.data, "skipped_step": True, "reused": reuse.get("job")}), {}
