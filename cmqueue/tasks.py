"""The Celery tasks: thin wrappers that hand a job to the worker's context."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

RUN_TASK = "cmq.run"


def register(app: Celery) -> None:
    """Register cmq's tasks on ``app``."""

    @app.task(name=RUN_TASK, bind=True, shared=False, acks_late=True, reject_on_worker_lost=True,
              max_retries=None, ignore_result=True)
    def run(self: Task, spec: dict[str, Any]) -> None:
        """Run one job on this worker's machine (see WorkerContext.execute)."""
        ctx = self.app.cmq_context
        if ctx is None:
            raise RuntimeError("cmq.run must run inside `cmq worker`")
        ctx.execute(self, spec)
