"""The shapes of the API's requests and answers (they make the OpenAPI spec)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..submit import ENV_NAME

#: A job's environment: variable names as the shell takes them (and no other key).
Env = Annotated[dict[Annotated[str, StringConstraints(pattern=ENV_NAME)], str],
                Field(json_schema_extra={"additionalProperties": False})]


class Strict(BaseModel):
    """A request body: unknown fields are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class JobsRequest(Strict):
    """Jobs to submit, as `cmq submit` takes them."""

    command: str = Field(min_length=1, description="run by the shell on the machine; {} etc. as in `cmq submit`")
    on: str | None = Field(None, description="one job on each machine of this hostlist (node[1-3],gpu1)")
    label: str | None = Field(None, description="on any one machine with this label")
    all: bool = Field(False, description="one job on every enabled machine")
    args: list[str] | None = Field(None, description="one job per argument (`::: ARG...`)")
    timeout: float | None = Field(None, gt=0, description="kill a job after this many seconds")
    retries: int = Field(0, ge=0, le=100, description="run a failed job again, up to this many more times")
    env: Env = Field(default_factory=dict, description="variables set in the jobs' environment")
    wait: float | None = Field(None, ge=0, le=3600, description="wait up to this many seconds for the jobs to end")


class MapRequest(Strict):
    """A map with a reduce, as `cmq map --reduce` takes it."""

    template: str = Field(min_length=1, description="the command of each job; {} is its argument")
    args: list[str] = Field(min_length=1, description="one job per argument")
    reduce: str = Field("sum", description="sum, concat, lines, json, min, max, add, or module:function")
    on: str | None = None
    label: str | None = None
    timeout: float | None = Field(None, gt=0)
    retries: int = Field(0, ge=0, le=100)
    env: Env = Field(default_factory=dict)
    allow_failures: bool = Field(False, description="reduce what succeeded even when some jobs failed")
    wait: float | None = Field(None, ge=0, le=3600)


class Job(BaseModel):
    """A job as the history has it."""

    id: str
    batch: str
    kind: str
    command: str
    target: str
    state: str = Field(description="queued, running, retrying, succeeded, failed, cancelled or lost")
    machine: str | None
    exit_code: int | None
    reason: str
    started: float | None
    ended: float | None
    attempt: int
    submitted: float
    duration: float | None
    stdout: str
    stderr: str
    reran_after: str | None = None
    value: Any = Field(None, description="a reduce's value")


class Submitted(BaseModel):
    """Jobs just submitted (as they are now, or when waited for, as they ended)."""

    batch: str
    jobs: list[Job]


class MapSubmitted(BaseModel):
    """A map's jobs and its reduce job, whose ``value`` is the map's value once it ends."""

    batch: str
    reduce: Job
    jobs: list[Job]


class Machine(BaseModel):
    """A machine of the inventory and its worker's state."""

    model_config = ConfigDict(extra="allow")

    name: str
    mode: str
    slots: int
    labels: list[str]
    enabled: bool
    worker: str


class Health(BaseModel):
    """The server answers (no login needed)."""

    ok: bool
    version: str


class Login(Strict):
    """The console's login: a token made by `cmq serve token create`."""

    token: str = Field(min_length=1)


class Problem(BaseModel):
    """An error: one line saying what is wrong, and the HTTP status."""

    error: str
    status: int


def job_out(record: Any) -> dict[str, Any]:
    """A history record as the API shows it."""
    out = record.to_dict()
    out["value"] = record.result.data.get("value") if record.result else None
    reran = out.get("reran_after")
    out["reran_after"] = None if reran is None else str(reran)
    return out
