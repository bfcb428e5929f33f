"""Cloud actions as jobs on the queue (`cmq cloud boot|start|stop|suspend|resume|reboot|
delete`): one job per VM, each in the history, run by a worker on this host (the queue
of host jobs, ``cmq.host``: the cloud's credentials are here, not on an agent), all at
once as far as the workers' slots go.

A job's output is the VM's record as JSON; its ``data`` is that record. An action is not
retried by itself: booting twice would fail on the name, and the user sees why.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..core.models import JobResult, JobSpec, new_id
from ..queue import routing

#: The ``kind`` of a cloud action job.
KIND = "cloud"
#: The target (and so the queue, ``cmq.host``) of cloud jobs: workers on this host.
TARGET = "cloud"


def refuse_asked(config: Any) -> None:
    """UsageError when the cloud has credentials ``TBD``: a worker runs the action and
    cannot ask for them."""
    from ..core.errors import UsageError
    from .config import ASK

    asked = [k for k, v in config.credentials.items() if v == ASK]
    if asked:
        raise UsageError(f"cloud {config.name} has credentials TBD ({', '.join(asked)}), which a worker cannot ask "
                         "for; give them in the inventory (which must then be 0600) to act on its VMs")


def build(cloud: str, names: list[str], action: str, params: dict[str, Any] | None = None) -> list[JobSpec]:
    """One job spec per VM of ``names``: ``action`` on it in ``cloud``."""
    batch = new_id("b")
    now = time.time()
    return [JobSpec(id=new_id(), command=f"cloud {cloud}: {action} {name}", target=TARGET,
                    queue=routing.queue_for_target(TARGET), batch=batch, retries=0, submitted=now, kind=KIND,
                    params={"cloud": cloud, "vm": name, "action": action, **(params or {})})
            for name in names]


def run(spec: JobSpec, inventory: Any, machine: str) -> JobResult:
    """Do the job's action here; its result (failed, with the cloud's reason, on error)."""
    from ..core.errors import CmqError
    from .cloud import Cloud

    started = time.time()
    p = spec.params
    try:
        with Cloud(p["cloud"], inventory=inventory) as cloud:
            if p["action"] == "boot":
                record = cloud.boot(p["vm"], image=p.get("image"), size=p.get("size"))
            else:
                record = cloud.machine(p["vm"], p["action"], grace=p.get("grace"))
    except CmqError as e:
        return JobResult(job=spec.id, machine=machine, exit_code=None, started=started, ended=time.time(),
                         reason=f"cloud: {e}", data={"final": True})
    return JobResult(job=spec.id, machine=machine, exit_code=0, started=started, ended=time.time(),
                     stdout=json.dumps(record, sort_keys=True) + "\n", data=record)
