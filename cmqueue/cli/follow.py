"""Waiting for jobs from the command line: a progress bar, the report at the end, and what
Ctrl-C does meanwhile (one stops waiting, a second or --cancel-on-interrupt cancels)."""

from __future__ import annotations

import os
import time

from ..core.errors import JobFailedError
from ..core.models import JobStatus
from . import output


def say_where_outputs_went(records) -> None:
    """One line on stderr naming where the outputs of the jobs (--get) were fetched to."""
    fetched = [local for r in records if r.state == JobStatus.SUCCEEDED
               for _remote, local in (r.spec.params.get("outputs") or [])]
    if not fetched:
        return

    def shown(path: str) -> str:
        rel = os.path.relpath(path)
        return path if rel.startswith("..") else rel

    if len(fetched) == 1:
        output.err.print(f"fetched: {shown(fetched[0])}", markup=False)
    else:
        output.err.print(f"fetched {len(fetched)} outputs under {shown(os.path.commonpath(fetched))}/",
                         markup=False)


#: Seconds after a first Ctrl-C during a wait in which a second one cancels the jobs.
SECOND_INTERRUPT = 3.0


def wait_and_report(c, ids: list[str], as_json: bool, timeout: float | None = None, gather: bool = False,
                     ref: str | None = None, cancel_on_interrupt: bool = False) -> int:
    """Wait for the jobs ``ids`` with a progress view, print their outputs and failures;
    the exit code. A Ctrl-C stops waiting, not the jobs: see :func:`stop_waiting`
    (``ref`` names them for `cmq wait` and `cmq cancel`, default the ids)."""
    view = output.ProgressView(len(ids), enabled=not as_json)
    try:
        with view:
            records = c.wait(ids, timeout=timeout, on_update=view.update)
    except KeyboardInterrupt:
        return stop_waiting(c, ids, ref or " ".join(ids), cancel_on_interrupt)
    if as_json:
        output.print_json([r.to_dict() for r in records])
    else:
        output.print_outputs(records, gather=gather)
        say_where_outputs_went(records)
    not_final = [r for r in records if not r.state.final]
    bad = [r for r in records if r.state.final and r.state != JobStatus.SUCCEEDED]
    if bad and not as_json:
        output.failures(bad, tail=False)          # their stderr was printed with the outputs
    if not_final:
        c.explain_waiting(not_final)
        output.err.print(f"{len(not_final)} job(s) still not finished after {timeout:g}s")
        if not as_json:
            output.print_jobs(not_final, on=output.err)
        return 1
    if bad:
        raise JobFailedError(f"{len(bad)} of {len(records)} job(s) did not succeed", bad)
    return 0


def stop_waiting(c, ids: list[str], ref: str, cancel: bool) -> int:
    """What a Ctrl-C while waiting does (`submit --wait`, `wait`, `map`): with ``cancel``
    (--cancel-on-interrupt) the jobs are cancelled (running ones killed on their
    machines); else say how to wait again or cancel, and cancel them if a second Ctrl-C
    comes within SECOND_INTERRUPT seconds, as GNU parallel and clush do. Exit 130."""
    if not cancel:
        try:                 # from before the message: a Ctrl-C as soon as it shows cancels
            output.err.print(f"cmq: stopped waiting; the jobs go on. `cmq wait {ref}` waits again, "
                             f"`cmq cancel {ref}` cancels them (Ctrl-C again now cancels them)", markup=False)
            time.sleep(SECOND_INTERRUPT)
            return 130
        except KeyboardInterrupt:
            pass
    records = c.cancel(ids)
    ended = sum(1 for r in records if r.state == JobStatus.CANCELLED)
    output.err.print(f"cmq: interrupted: cancelled {ended} of {len(records)} job(s) of {ref}", markup=False)
    return 130
