"""Start, follow, resume, retry and cancel workflows. Their steps are jobs (batch = the
workflow id); the workflow and its steps live in the history store, so everything here
works again after the controller, the workers and Redis were restarted.

A failed step suspends its workflow (a flag in Redis, set by the worker): steps that
have not started end as cancelled with the reason, running siblings finish. ``resume``
runs the steps that did not succeed, with new job ids, and hands the results of the
succeeded ones to the ``+`` steps that need them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from ..core.errors import ServiceError, UsageError
from ..core.models import JobRecord, JobSpec, JobStatus, new_id
from ..queue import routing
from ..queue.claims import suspended_key
from . import goals
from .expr import names, parse
from .needs import closure
from .plan import Plan, Step, build, canvas


def outcome(rec: JobRecord) -> dict[str, Any]:
    """A step's result as a ``+`` consumes it (the shape workers store)."""
    res = rec.result
    return {"job": rec.id, "state": rec.state.value, "machine": rec.machine, "exit_code": rec.exit_code,
            "stdout": res.stdout if res else "", "stdout_truncated": bool(res and res.stdout_truncated),
            "reason": rec.reason, "started": rec.started, "ended": rec.ended}


@dataclass
class StepView:
    """A step as `cmq show` prints it."""

    name: str
    kind: str
    record: JobRecord | None
    spec: dict | None = None          # the step's spec: what its next run runs (edits included)

    @property
    def state(self) -> str:
        """The state of the step's latest job ('queued' before it is known)."""
        return self.record.state.value if self.record else "queued"


def workflow_state(states: list[str]) -> str:
    """running; failing (a step failed while others still run); suspended (a step did
    not succeed and nothing runs: `cmq resume` goes on); or succeeded."""
    active = any(s in ("queued", "running", "retrying") for s in states)
    bad = any(s in ("failed", "lost", "cancelled") for s in states)
    if active:
        return "failing" if bad else "running"
    return "suspended" if bad else "succeeded"


class Workflows:
    """Workflows of one cluster (``Cluster.workflows``)."""

    def __init__(self, cluster: Any) -> None:
        self.c = cluster

    # -- starting -------------------------------------------------------------------------
    def plan(self, text: str, tasks: dict, reducer: str = "add", source: str = "",
             force: set[str] | bool = False) -> Plan:
        """The plan of ``text`` (nothing is sent). Steps with a check carry the earlier
        successes they may reuse; ``force`` (step names, or True for all) drops the
        check of those steps, so that they run whatever it would say."""
        tasks = self._placed(text, tasks)
        plan = build(text, tasks, self.c.settings.inventory, reducer=reducer, source=source)
        for step in plan.steps.values():
            task = tasks.get(step.name)
            if step.kind == "task" and task is not None and task.where:
                step.spec.params["where"] = task.where
        if force is not True and force:
            unknown = sorted(set(force) - set(plan.steps))
            if unknown:
                raise UsageError(f"--force={unknown[0]}: no such step in {plan.expr!r}; steps: {', '.join(plan.steps)}")
        goals.attach(list(plan.steps.values()), self.c.store, force)
        return plan

    def _placed(self, text: str, tasks: dict) -> dict:
        """``tasks`` with the ``where:`` of each task the workflow uses turned into a target:
        the machines whose facts match (gathered first when stale), as the label or the
        'any' they make up, or else one of them. NoMatchError names each machine's values."""
        from ..facts import select

        inv = self.c.settings.inventory
        used = closure([n for n in names(parse(text)) if n in tasks], tasks)
        out = dict(tasks)
        for name in used:
            task = tasks[name]
            if not task.where:
                continue
            chosen = select.select(self.c, task.where, among=select.candidates(inv, on=task.on, label=task.label))
            try:
                where = select.placement(inv, chosen, label=task.label)
            except select.NoMatchError as e:
                raise select.NoMatchError(f"task {name}: {e}") from None
            on = (where.spread or where.machines or [None])[0]
            out[name] = dataclasses.replace(task, on=on, label=None if on else where.label)
        return out

    def checks(self, plan: Plan, timeout: float = 60.0) -> dict[str, tuple[str, str]]:
        """Run the check of every task step that has one, on a machine of its target, now
        (one job each, in a batch of their own; nothing else runs). Returns {step:
        (verdict, why)}: "done", "run", "error", or "unknown" when no machine answered
        within ``timeout`` seconds (those jobs are cancelled)."""
        from ..queue.claims import request_cancel

        asked: dict[str, JobSpec] = {}
        batch = new_id("p")
        for step in plan.steps.values():
            spec = step.spec
            if step.kind != "task" or not spec.params.get("check"):
                continue
            params = {k: v for k, v in spec.params.items() if k not in ("workflow", "inputs", "outputs")}
            asked[step.name] = dataclasses.replace(spec, id=new_id(), batch=batch,
                                                   params={**params, "check_only": True})
        if not asked:
            return {}
        self.c.send_specs(list(asked.values()))
        records = {r.id: r for r in self.c.wait([s.id for s in asked.values()], timeout=timeout)}
        out: dict[str, tuple[str, str]] = {}
        late = []
        for name, spec in asked.items():
            rec = records.get(spec.id)
            if rec is None or not rec.state.final:
                late.append(spec.id)
                out[name] = ("unknown", f"no machine answered within {timeout:g}s")
            elif rec.state == JobStatus.SUCCEEDED and goals.was_skipped(rec.reason):
                out[name] = ("done", rec.reason[len(goals.SKIPPED) + 2:])
            elif rec.state == JobStatus.SUCCEEDED:
                out[name] = ("run", (rec.result.data.get("ran_because") if rec.result else "") or "not done")
            else:
                out[name] = ("error", rec.reason or rec.state.value)
        if late:
            request_cancel(self.c.redis, late)
        return out

    def start(self, plan: Plan) -> str:
        """Record the workflow and its steps, then publish its canvas; returns its id."""
        self.c.store.add_workflow(plan.record(), [s.to_dict() for s in plan.steps.values()])
        self._publish(plan, [s.spec for s in plan.steps.values()], reuse=set())
        return plan.id

    def _publish(self, plan: Plan, specs: list[JobSpec], reuse: set[str]) -> None:
        from kombu.exceptions import OperationalError
        from redis.exceptions import RedisError

        from ..core.models import Event
        from ..submit.publish import pin_inputs

        self.c.store.add(JobRecord(spec=s, state=JobStatus.QUEUED) for s in specs)
        sig = canvas(plan, self.c.results_app, reuse)
        try:
            self.c.redis.delete(suspended_key(plan.id))
            pin_inputs(self.c.app, specs)
            if sig is not None:
                sig.apply_async()
        except (OperationalError, OSError, RedisError) as e:
            self.c.store.apply([Event(job=s.id, state=JobStatus.LOST, ts=time.time(),
                                      data={"reason": f"not sent: broker unreachable ({e})"}) for s in specs])
            raise ServiceError(f"broker unreachable; workflow {plan.id} was not started: {e}") from None

    # -- reading --------------------------------------------------------------------------
    def resolve(self, ref: str) -> dict:
        """The workflow named by an id or a unique prefix of one."""
        store = self.c.store
        wf = store.workflow(ref)
        if wf is None:
            ids = store.workflow_ids(ref)
            if len(ids) != 1:
                from ..core.errors import UnknownJobError

                raise UnknownJobError(f"no workflow {ref!r}" if not ids else f"{ref!r} matches several workflows")
            wf = store.workflow(ids[0])
        return wf

    def steps(self, wf: dict) -> list[StepView]:
        """The steps with the records of their latest jobs."""
        self.c.refresh()
        records = {r.id: r for r in self.c.store.get_many([s["job"] for s in wf["steps"]])}
        return [StepView(s["name"], s["kind"], records.get(s["job"]), s.get("spec")) for s in wf["steps"]]

    def state(self, wf: dict, steps: list[StepView] | None = None) -> str:
        """The workflow's state from its steps' states."""
        steps = steps if steps is not None else self.steps(wf)
        return workflow_state([s.state for s in steps])

    def value(self, wf: dict, steps: list[StepView]) -> Any:
        """The workflow's result: its final step's value (a list for a final ``|``)."""
        by_name = {s.name: s for s in steps}
        values = []
        for name in wf["final"]:
            rec = by_name[name].record
            res = rec.result if rec else None
            if res is None:
                values.append(None)
            elif "value" in res.data:
                values.append(res.data["value"])
            else:
                values.append(res.stdout)
        return values[0] if len(values) == 1 else values

    def wait(self, wf: dict, timeout: float | None = None, on_update: Any = None) -> list[StepView]:
        """Block until every step's latest job is final (or ``timeout``)."""
        self.c.wait([s["job"] for s in wf["steps"]], timeout=timeout, on_update=on_update)
        return self.steps(self.c.store.workflow(wf["id"]))

    # -- resume / retry / cancel ----------------------------------------------------------
    def _rebuild(self, wf: dict) -> Plan:
        steps = {}
        for s in wf["steps"]:
            steps[s["name"]] = Step(s["name"], s["kind"], s["seq"], JobSpec.from_dict(s["spec"]), s["operands"])
        return Plan(id=wf["id"], expr=wf["expr"], tree=parse(wf["expr"]), steps=steps, final=wf["final"],
                    reducer=wf["reducer"], source=wf["source"])

    def resume(self, ref: str, only: str | None = None) -> tuple[str, list[str]]:
        """Run again the steps that did not succeed (or just step ``only``); returns the
        workflow id and the names of the steps sent."""
        wf = self.resolve(ref)
        views = self.steps(wf)
        unfinished = [v.name for v in views if v.state in ("queued", "running", "retrying")]
        if unfinished:
            raise UsageError(f"workflow {wf['id']} still runs steps {', '.join(unfinished)}; "
                             "wait for them or cancel it first")
        plan = self._rebuild(wf)
        if only is not None:
            if only not in plan.steps:
                raise UsageError(f"workflow {wf['id']} has no step {only!r}; steps: {', '.join(plan.steps)}")
            again = {only}
        else:
            again = {v.name for v in views if v.state != "succeeded"}
        if not again:
            return wf["id"], []
        by_name = {v.name: v for v in views}
        new_specs: dict[str, JobSpec] = {}
        for name in plan.steps:                       # task steps first get their new ids
            step = plan.steps[name]
            if name in again and step.kind == "task":
                step.spec.id = new_id()
                step.spec.attempt = 1
                step.spec.submitted = time.time()
                new_specs[name] = step.spec
        for name in plan.steps:
            step = plan.steps[name]
            if name in again and step.kind == "sum":
                known = {o: outcome(by_name[o].record) for o in step.operands
                         if o not in again and by_name[o].record is not None}
                step.spec.id = new_id("r")
                step.spec.params = {**step.spec.params, "known": known,
                                    "operands": {o: plan.steps[o].spec.id for o in step.operands}}
                new_specs[name] = step.spec
        self.c.store.set_step_jobs(wf["id"], {n: {"job": s.id, "spec": s.to_dict()} for n, s in new_specs.items()})
        self._publish(plan, list(new_specs.values()), reuse=set(plan.steps) - again)
        return wf["id"], sorted(again, key=lambda n: plan.steps[n].seq)

    def edit(self, ref: str, step: str, command: str | None = None, on: str | None = None,
             label: str | None = None, timeout: float | None = None) -> tuple[dict, dict[str, list]]:
        """Change one task step's command, target or timeout, for the next run of the
        step (`cmq resume`, or `cmq retry` for a step that succeeded). The job that ran
        keeps the version it ran; the step's spec records each edit (``params.edits``).
        Returns the workflow and {field: [before, after]}."""
        from ..submit.specs import placement

        wf = self.resolve(ref)
        views = self.steps(wf)
        busy = [v.name for v in views if v.state in ("running", "retrying")
                or (v.state == "queued" and v.record is not None)]
        if busy:
            raise UsageError(f"workflow {wf['id']} still runs steps {', '.join(busy)}; "
                             "wait for them or cancel it first")
        row = next((s for s in wf["steps"] if s["name"] == step), None)
        if row is None or row["kind"] != "task":
            tasks = [s["name"] for s in wf["steps"] if s["kind"] == "task"]
            raise UsageError(f"workflow {wf['id']} has no task step {step!r}; task steps: {', '.join(tasks)}")
        if command is None and on is None and label is None and timeout is None:
            raise UsageError("nothing to change: give --command, --on, --label or --timeout")
        if command is not None and not command.strip():
            raise UsageError("--command: must not be empty")
        if timeout is not None and not timeout > 0:
            raise UsageError(f"--timeout: must be a positive number of seconds, got {timeout!r}")
        spec = JobSpec.from_dict(row["spec"])
        changed: dict[str, list] = {}
        if command is not None and command != spec.command:
            changed["command"] = [spec.command, command]
            spec.command = command
        if on is not None or label is not None:
            where = placement(self.c.settings.inventory, on=on, label=label)
            if len(where.machines) > 1:
                raise UsageError(f"--on={on} names {len(where.machines)} machines; a step runs once "
                                 "(give the machines a label)")
            (target,) = where.targets()
            if target != spec.target:
                changed["target"] = [spec.target, target]
                spec.target, spec.queue = target, routing.queue_for_target(target)
        if timeout is not None and timeout != spec.timeout:
            changed["timeout"] = [spec.timeout, timeout]
            spec.timeout = timeout
        if changed:
            if spec.params.get("check"):
                spec.params["check"]["earlier"] = goals.earlier_runs(self.c.store, step, spec.command, spec.target)
            spec.params["edits"] = [*spec.params.get("edits", []), {"ts": time.time(), "changed": changed}]
            self.c.store.set_step_jobs(wf["id"], {step: {"job": row["job"], "spec": spec.to_dict()}})
        return self.resolve(wf["id"]), changed

    def cancel(self, ref: str) -> dict:
        """Suspend the workflow and cancel its steps that have not ended. A workflow that
        already ended (succeeded, or suspended with nothing running) is left as it is."""
        from ..queue.claims import request_cancel

        wf = self.resolve(ref)
        if self.state(wf) in ("succeeded", "suspended"):
            return wf
        self.c.redis.set(suspended_key(wf["id"]), "cancelled by the user")
        live = [v.record.id for v in self.steps(wf) if v.record and not v.record.state.final]
        if live:
            request_cancel(self.c.redis, live)
        return wf
