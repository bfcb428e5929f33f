"""The machines of the inventory and their workers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from .deps import cluster
from .schemas import Machine

router = APIRouter(tags=["machines"])


@router.get("/api/machines", response_model=list[Machine])
def list_machines(c: Any = Depends(cluster)) -> list[dict[str, Any]]:
    """Every machine of the inventory with its settings and its worker's state, as
    `cmq machines --json` shows them."""
    from ..fleet.snapshot import machine_rows

    return machine_rows(c.settings)


@router.get("/api/top", response_model=dict[str, Any])
def top(c: Any = Depends(cluster)) -> dict[str, Any]:
    """What `cmq top` shows: each machine's worker state and slots used and free, the
    depth of every queue, and the jobs running now."""
    from ..fleet.snapshot import snapshot

    return snapshot(c)
