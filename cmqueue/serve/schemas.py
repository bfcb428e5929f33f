"""The shapes of the API's requests and answers (they make the OpenAPI spec)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..submit.specs import ENV_NAME


def _variable_names(env: dict[str, str]) -> dict[str, str]:
    """``env`` when every key is a variable name as the shell takes them; else an error
    naming the first key that is not."""
    for key in env:
        if not re.match(ENV_NAME, key):
            raise ValueError(f"{key!r} is not a variable name (letters, digits, _; not first a digit)")
    return env


#: A job's environment. The spec describes it as a map of strings (``additionalProperties``,
#: which every client generator reads); the names are checked here, in the server.
Env = Annotated[dict[str, str], AfterValidator(_variable_names)]


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


class TaskSpec(Strict):
    """A task of a workflow sent through the API: its command and where it may run
    (staging local files is for the command line, which has them)."""

    command: str = Field(min_length=1)
    on: str | None = None
    label: str | None = None
    timeout: float | None = Field(None, gt=0)
    retries: int = Field(0, ge=0, le=100)
    creates: list[str] = Field(default_factory=list, description="files whose presence means the step is done")
    done_if: str | None = Field(None, min_length=1, description="a command on the machine: exit 0 means done")
    inputs: list[str] = Field(default_factory=list, description="files whose SHA-256s must match an earlier "
                              "success for the step to be done")
    needs: list[str] = Field(default_factory=list, description="tasks that run (or are done) first")


class StepEdit(Strict):
    """A change to one task step of a workflow, for its next run (what is not given
    stays as it is)."""

    command: str | None = Field(None, min_length=1)
    on: str | None = Field(None, min_length=1)
    label: str | None = Field(None, min_length=1)
    timeout: float | None = Field(None, gt=0)


class WorkflowRequest(Strict):
    """A workflow expression over tasks: those given here and the inventory's ``tasks:``."""

    expr: str = Field(min_length=1, description="e.g. (a | b | c); d; a + b + c + d")
    tasks: dict[str, str | TaskSpec] = Field(default_factory=dict, description="name: command, or name: {command, "
                                             "on, label, timeout, retries}")
    reduce: str = Field("add", description="what + uses: add, or any reducer of a map")
    wait: float | None = Field(None, ge=0, le=3600, description="wait up to this many seconds for it to end")


class PlanRequest(Strict):
    """A workflow to plan: nothing runs."""

    expr: str = Field(min_length=1)
    tasks: dict[str, str | TaskSpec] = Field(default_factory=dict)
    reduce: str = "add"


class Again(Strict):
    """Run a workflow's steps again: every one that did not succeed, or only ``step``."""

    step: str | None = Field(None, min_length=1, description="only this step (whatever its state)")
    wait: float | None = Field(None, ge=0, le=3600)


class Step(BaseModel):
    """A step of a workflow and its latest job."""

    name: str
    kind: str
    state: str
    job: str | None
    command: str | None = Field(None, description="a task's command (a sum has none); edited, when it was")
    machine: str | None
    exit_code: int | None
    started: float | None
    ended: float | None
    reason: str
    result: Any = None
    skipped: bool = Field(False, description="it was done (its check said so) and did not run")
    edits: list[dict[str, Any]] = Field(default_factory=list, description="changes made with cmq edit")


class Workflow(BaseModel):
    """A workflow, its state, its tree (nested: kind task|seq|par|sum), its steps and,
    once it succeeded, its value."""

    workflow: str
    expr: str
    state: str = Field(description="running, failing, suspended or succeeded")
    created: float | None = None
    value: Any = None
    tree: dict[str, Any]
    steps: list[Step]


class WorkflowRow(BaseModel):
    """A workflow in a list."""

    workflow: str
    state: str
    expr: str
    steps: int
    succeeded: int
    created: float


class PlannedStep(BaseModel):
    """A step a plan would run."""

    name: str
    kind: str
    command: str
    where: str
    operands: list[str]
    check: dict[str, Any] = Field(default_factory=dict, description="creates, done_if, inputs: what says it is done")
    forced: bool = False


class Plan(BaseModel):
    """What a workflow would do: its tree, the order steps start in (steps of one list
    together), and its steps."""

    expr: str = Field(description="what runs, with the prerequisites needs: pulled in")
    asked: str = ""
    order: list[list[str]]
    final: list[str]
    tree: dict[str, Any]
    steps: list[PlannedStep]
