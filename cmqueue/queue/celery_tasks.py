"""The Celery tasks: thin wrappers that hand a job to the worker's context."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject

RUN_TASK = "cmq.run"
TRANSFER_TASK = "cmq.transfer"
REDUCE_TASK = "cmq.reduce"


def register(app: Celery) -> None:
    """Register cmq's tasks on ``app``."""

    @app.task(name=RUN_TASK, bind=True, shared=False, acks_late=True, reject_on_worker_lost=True,
              max_retries=None, ignore_result=True)
    def run(self: Task, spec: dict[str, Any]) -> dict[str, Any] | None:
        """Run one job on this worker's machine (see MachineDriver.execute)."""
        return _context(self).execute(self, spec)

    @app.task(name=TRANSFER_TASK, bind=True, shared=False, acks_late=True, reject_on_worker_lost=True,
              max_retries=None, ignore_result=True)
    def transfer(self: Task, spec: dict[str, Any]) -> dict[str, Any] | None:
        """Move files between this host and the worker's machine (a put or get spec)."""
        return _context(self).execute(self, spec)

    @app.task(name=REDUCE_TASK, bind=True, shared=False, acks_late=True, reject_on_worker_lost=True,
              max_retries=None, ignore_result=True)
    def reduce(self: Task, outcomes: list[dict[str, Any]], spec: dict[str, Any]) -> None:
        """The chord callback of a map: reduce the members' outcomes to one value."""
        _context(self).reduce(self, outcomes, spec)


def _context(task: Task) -> Any:
    """The driver of the machine the task's message came for (see :mod:`cmqueue.fleet.worker_process`)."""
    fleet = task.app.cmq_fleet
    if fleet is None:
        raise RuntimeError(f"{task.name} must run inside `cmq worker`")
    name = getattr(task.request, "cmq_machine", None)
    driver = fleet.drivers.get(name or "")
    if driver is None:     # the machine left this worker while its message waited: back on the queue
        raise Reject(f"machine {name} is no longer served by this worker", requeue=True)
    return driver
