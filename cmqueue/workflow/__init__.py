"""Workflows: the expression language ``(a | b | c); d; a + b + c + d``, its plan, its
compilation to Celery canvas, and resume. See docs/workflows.md."""

from .expr import ExpressionError, parse
from .tasks import TaskDef, task

__all__ = ["ExpressionError", "TaskDef", "parse", "task"]
