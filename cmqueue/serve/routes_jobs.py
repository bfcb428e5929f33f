"""Jobs and maps: submit (as `cmq submit` and `cmq map --reduce`), list, show, output,
wait, cancel. Each route is the command line's code behind a URL."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, PlainTextResponse, Response

from ..core.errors import UnknownJobError, UsageError
from ..core.models import JobStatus
from .deps import cluster
from .schemas import Job, JobsRequest, MapRequest, MapSubmitted, Submitted, job_out

router = APIRouter(tags=["jobs"])


def _in_order(records: list[Any], ids: list[str]) -> list[dict[str, Any]]:
    by_id = {r.id: r for r in records}
    return [job_out(by_id[i]) for i in ids if i in by_id]


@router.post("/api/jobs", status_code=201, response_model=Submitted)
def submit_jobs(body: JobsRequest, c: Any = Depends(cluster)) -> dict[str, Any]:
    """Submit jobs, one per machine of ``on`` (or on any machine with ``label``, or on
    every machine with ``all``) and per argument of ``args``; with ``wait``, answer when
    they end (or when ``wait`` seconds have passed)."""
    from ..submit.specs import build_specs, placement

    where = placement(c.settings.inventory, on=body.on, label=body.label, everywhere=body.all)
    batch, specs = build_specs(body.command, where, args=body.args, timeout=body.timeout, retries=body.retries,
                               env=dict(body.env))
    c.send_specs(specs)
    ids = [s.id for s in specs]
    records = c.wait(ids, timeout=body.wait) if body.wait else c.store.get_many(ids)
    return {"batch": batch, "jobs": _in_order(records, ids)}


@router.post("/api/maps", status_code=201, response_model=MapSubmitted)
def submit_map(body: MapRequest, c: Any = Depends(cluster)) -> dict[str, Any]:
    """A map with a reduce: one job per argument, then the reduce of their outputs; the
    reduce job's ``value`` is the map's value once it ends (``wait`` to answer then)."""
    from ..submit.publish import send
    from ..submit.specs import build_reduce, build_specs, placement

    where = placement(c.settings.inventory, on=body.on, label=body.label)
    batch, members = build_specs(body.template, where, args=body.args, timeout=body.timeout, retries=body.retries,
                                 env=dict(body.env))
    reduce_spec = build_reduce(members, body.reduce, allow_failures=body.allow_failures)
    send(c.app, c.store, members, reduce_spec)
    if body.wait:
        c.wait([reduce_spec.id], timeout=body.wait)
    ids = [s.id for s in members]
    records = c.store.get_many([*ids, reduce_spec.id])
    reduce = next(job_out(r) for r in records if r.id == reduce_spec.id)
    return {"batch": batch, "reduce": reduce, "jobs": _in_order(records, ids)}


@router.get("/api/jobs", response_model=list[Job])
def list_jobs(state: JobStatus | None = None, last: int = Query(20, ge=1, le=100_000),
              batch: str | None = Query(None, min_length=1), q: str | None = Query(None, min_length=1),
              c: Any = Depends(cluster)) -> list[dict[str, Any]]:
    """Jobs from the history, oldest first: the newest ``last`` (in ``state``), or every
    job of ``batch``; ``q`` keeps those whose command holds it."""
    c.refresh()
    if batch:
        records = c.store.batch(batch)
        if not records:
            raise UnknownJobError(f"no batch {batch!r} in the history")
        if state is not None:
            records = [r for r in records if r.state == state]
    else:
        records = c.store.jobs(state=state, last=last)
    if q:
        records = [r for r in records if q in r.spec.command]
    c.explain_waiting(records)
    return [job_out(r) for r in records]


def _one(c: Any, ref: str) -> Any:
    records = c.status([ref])
    if len(records) != 1:
        raise UsageError(f"{ref!r} is a batch of {len(records)} jobs: GET /api/jobs?batch={ref} lists them")
    return records[0]


@router.get("/api/jobs/{ref}", response_model=Job)
def get_job(ref: str, c: Any = Depends(cluster)) -> dict[str, Any]:
    """One job, by id or a unique prefix of it."""
    return job_out(_one(c, ref))


@router.get("/api/jobs/{ref}/log", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "the output"}})
def job_log(ref: str, stream: str = Query("stdout", pattern="^(stdout|stderr)$"),
            c: Any = Depends(cluster)) -> Response:
    """A job's stdout (or stderr): the whole log when it is on this host, else the tail
    the history keeps (header ``X-Cmq-Truncated: 1`` then)."""
    from ..machine.joblog import full_log

    rec = _one(c, ref)
    if rec.result is None:
        return PlainTextResponse("", headers={"X-Cmq-State": rec.state.value})
    whole = full_log(rec.result, stream)
    if whole is not None:
        return FileResponse(whole, media_type="text/plain; charset=utf-8")
    truncated = getattr(rec.result, f"{stream}_truncated")
    return PlainTextResponse(getattr(rec.result, stream), headers={"X-Cmq-Truncated": "1" if truncated else "0"})


@router.get("/api/jobs/{ref}/wait", response_model=list[Job])
def wait_jobs(ref: str, timeout: float = Query(30.0, ge=0, le=3600), c: Any = Depends(cluster)) -> list[dict[str, Any]]:
    """Wait up to ``timeout`` seconds for a job (or every job of a batch) to end; the
    records then (look at each ``state``: some may still run)."""
    ids = [r.id for r in c.status([ref])]
    return _in_order(c.wait(ids, timeout=timeout), ids)


@router.post("/api/jobs/{ref}/cancel", response_model=list[Job])
def cancel_jobs(ref: str, c: Any = Depends(cluster)) -> list[dict[str, Any]]:
    """Cancel a job (or every job of a batch): queued ones at once, running ones killed on
    their machine; the records after it."""
    ids = [r.id for r in c.status([ref])]
    return _in_order(c.cancel([ref]), ids)
