"""Clouds and their VMs: the clouds of the inventory, a cloud's VMs as it reports them,
and actions on VMs (boot, start, stop, suspend, resume, reboot, delete), each a job on the
queue as `cmq cloud ACTION` sends them."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ..core.errors import UnknownMachineError, UsageError
from .deps import cluster
from .schemas import Strict, Submitted, job_out

router = APIRouter(tags=["clouds"])


class CloudOut(BaseModel):
    """A cloud of the inventory, its secrets masked."""

    name: str
    type: str
    credentials: dict[str, Any]
    default: dict[str, Any]


class Vm(BaseModel):
    """A VM as its cloud reports it."""

    model_config = {"extra": "allow"}

    id: str
    name: str
    cloud: str
    state: str
    provider: str


class Action(Strict):
    """An action on VMs of a cloud: one job per VM."""

    action: Literal["boot", "start", "stop", "suspend", "resume", "reboot", "delete"]
    names: str = Field(min_length=1, description="a hostlist of VM names: vm[1-4],db1")
    image: str | None = Field(None, description="boot: the image (default: the cloud's)")
    size: str | None = Field(None, description="boot: the size (default: the cloud's)")
    grace: float | None = Field(None, ge=0, le=3600, description="stop: seconds to shut down before power off")
    force: bool = Field(False, description="delete: even with unfinished jobs for the VMs")
    wait: float | None = Field(None, ge=0, le=3600, description="wait up to this many seconds for the jobs")


def _cloud(c: Any, name: str) -> Any:
    clouds = c.settings.inventory.clouds
    if name not in clouds:
        raise UnknownMachineError(f"no cloud {name!r} in the inventory (clouds: {', '.join(clouds) or 'none'})")
    return clouds[name]


@router.get("/api/clouds", response_model=list[CloudOut])
def list_clouds(c: Any = Depends(cluster)) -> list[dict[str, Any]]:
    """The clouds of the inventory, in order, secrets masked."""
    return [cloud.public() for cloud in c.settings.inventory.clouds.values()]


@router.get("/api/clouds/{name}/vms", response_model=list[Vm])
def list_vms(name: str, c: Any = Depends(cluster)) -> list[dict[str, Any]]:
    """The cloud's VMs, as it reports them now."""
    from ..clouds.cloud import Cloud

    _cloud(c, name)
    with Cloud(name, inventory=c.settings.inventory) as cloud:
        return cloud.list()


@router.post("/api/clouds/{name}/actions", status_code=201, response_model=Submitted)
def act(name: str, body: Action, c: Any = Depends(cluster)) -> dict[str, Any]:
    """Do ``action`` to each VM of ``names``: a job each, run by a worker on this host;
    a deleted VM that had joined stops being a machine."""
    from ..clouds import jobs, joined
    from ..core.hostlist import HostlistError, expand_list
    from ..fleet.machine_state import need_a_host_worker, refuse_unfinished

    config = _cloud(c, name)
    try:
        vms = expand_list(body.names)
    except HostlistError as e:
        raise UsageError(f"names: {e}") from None
    if len(set(vms)) != len(vms):
        raise UsageError(f"names: {body.names} names a VM twice")
    jobs.refuse_asked(config)
    params: dict[str, Any] = {k: v for k, v in (("image", body.image), ("size", body.size)) if v}
    if body.action == "stop" and body.grace is not None:
        params["grace"] = body.grace
    if body.action == "delete" and not body.force:
        refuse_unfinished(c, [n for n in vms if n in c.settings.inventory.machines], name, "delete with force")
    specs = jobs.build(name, vms, body.action, params)
    need_a_host_worker(c, "cloud actions need")
    c.send_specs(specs)
    ids = [s.id for s in specs]
    records = c.wait(ids, timeout=body.wait) if body.wait else c.store.get_many(ids)
    if body.action == "delete":
        gone = [r.spec.params["vm"] for r in records if r.state.value == "succeeded"]
        if gone:
            joined.remove(c.settings.inventory.path, gone)
    by_id = {r.id: r for r in records}
    return {"batch": specs[0].batch, "jobs": [job_out(by_id[i]) for i in ids if i in by_id]}
