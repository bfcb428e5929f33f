"""Workflows: plan, run, list, show (as a tree, with each step's state), resume, retry a
step, edit a step, cancel - `cmq plan|run|workflows|show|resume|retry|edit|cancel` behind URLs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from .deps import cluster
from .schemas import Again, Plan, PlanRequest, StepEdit, TaskSpec, Workflow, WorkflowRequest, WorkflowRow

router = APIRouter(tags=["workflows"])


def _tasks(c: Any, given: dict[str, str | TaskSpec]) -> dict[str, Any]:
    plain = {name: t if isinstance(t, str) else t.model_dump(exclude_none=True) for name, t in given.items()}
    return c.tasks(plain)


def _shown(c: Any, ref: str, wait: float | None = None) -> dict[str, Any]:
    from ..workflow.views import summary

    wfs = c.workflows
    wf = wfs.resolve(ref)
    steps = wfs.wait(wf, timeout=wait) if wait else wfs.steps(wf)
    return summary(c, wf, steps, wfs.state(wf, steps))


@router.post("/api/workflows/plan", response_model=Plan)
def plan_workflow(body: PlanRequest, c: Any = Depends(cluster)) -> dict[str, Any]:
    """What a workflow would do; nothing runs."""
    from ..workflow.views import plan_view

    return plan_view(c, c.workflows.plan(body.expr, _tasks(c, body.tasks), reducer=body.reduce))


@router.post("/api/workflows", status_code=201, response_model=Workflow)
def run_workflow(body: WorkflowRequest, c: Any = Depends(cluster)) -> dict[str, Any]:
    """Start a workflow (with ``wait``, answer when it ends or after ``wait`` seconds)."""
    wfs = c.workflows
    wf_id = wfs.start(wfs.plan(body.expr, _tasks(c, body.tasks), reducer=body.reduce, source="api"))
    return _shown(c, wf_id, body.wait)


@router.get("/api/workflows", response_model=list[WorkflowRow])
def list_workflows(last: int = Query(20, ge=1, le=10_000), c: Any = Depends(cluster)) -> list[dict[str, Any]]:
    """The newest ``last`` workflows, oldest first."""
    from ..workflow.views import rows

    return rows(c, last)


@router.get("/api/workflows/{ref}", response_model=Workflow)
def show_workflow(ref: str, c: Any = Depends(cluster)) -> dict[str, Any]:
    """A workflow (by id or a unique prefix): its tree and each step's state, machine,
    times and result; its value once it succeeded."""
    return _shown(c, ref)


@router.post("/api/workflows/{ref}/resume", response_model=Workflow)
def resume_workflow(ref: str, body: Again, c: Any = Depends(cluster)) -> dict[str, Any]:
    """Run again what did not succeed (or only ``step``), reusing what did."""
    wf_id, _ = c.workflows.resume(ref, only=body.step)
    return _shown(c, wf_id, body.wait)


@router.post("/api/workflows/{ref}/cancel", response_model=Workflow)
def cancel_workflow(ref: str, c: Any = Depends(cluster)) -> dict[str, Any]:
    """Suspend the workflow and cancel its steps that have not ended."""
    wf = c.workflows.cancel(ref)
    return _shown(c, wf["id"])


@router.patch("/api/workflows/{ref}/steps/{step}", response_model=Workflow)
def edit_step(ref: str, step: str, body: StepEdit, c: Any = Depends(cluster)) -> dict[str, Any]:
    """Change a task step's command, target or timeout for its next run (`cmq edit`);
    the job that ran keeps its version, the step lists its edits."""
    wf, _ = c.workflows.edit(ref, step, command=body.command, on=body.on, label=body.label, timeout=body.timeout)
    return _shown(c, wf["id"])
