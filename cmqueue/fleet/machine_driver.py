"""The driver of one machine inside a worker process: runs its jobs, keeps their claims
alive, reacts to the machine becoming unreachable.

A machine whose ssh fails is paused: the worker stops taking its queues, the job
that hit the failure goes back to the queue it came from (another machine takes it, or
it waits for this one), and a probe resumes consumption once the machine answers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import redis
from celery import Task
from celery.exceptions import Retry

from ..config.inventory import Machine
from ..core import clock
from ..core.errors import CmqError, MachineUnreachableError
from ..core.models import Event, JobResult, JobSpec, JobStatus
from ..machine.runner import Runner, RunnerOptions, control_dir
from ..queue import events, routing
from ..queue.broker import ReplicaWait
from ..queue.claims import JobGuard, Verdict, note_rerun, suspended_key
from ..queue.lease import Lease, holder
from ..queue.progress import ProgressReporter
from ..queue.receipts import TAG_HEADER
from ..submit import reducers
from ..transfer import relay_batch, shared_paths, staging
from ..transfer.machine_copy import SourceMissingError, Transfer, TransferError, describe
from ..transfer.staging import Stager
from . import step_checks
from .machine_state import machine_key, waiting_reason

#: Held while a storage job imports its providers (once per process, in one thread).
_LAZY_IMPORT = threading.Lock()

log = logging.getLogger("cmq.worker")


def worker_name(group: str) -> str:
    """Celery node name of the worker process ``group`` (a machine's name for an agent's
    worker, ``w1``, ``w2``... for the processes `cmq up` starts)."""
    return f"cmq-{group}@{socket.gethostname()}"


class MachineDriver:
    """Everything the tasks of one machine need inside a worker process: its runner
    (ssh masters, session), its lease, its claims, its pause and probe. A worker process
    (see :mod:`cmqueue.fleet.worker_process`) holds one driver per machine it serves."""

    def __init__(self, fleet: Any, machine: Machine, lease: Lease) -> None:
        s = fleet.settings
        self.fleet = fleet
        self.app = fleet.app
        self.machine = machine
        self.settings = s
        self.hostname = fleet.hostname
        self.redis = fleet.redis
        self.stream = s.get("event_stream")
        self.guard = JobGuard(self.redis, token=f"{self.hostname}:{machine.name}:{os.getpid()}:{time.time()}",
                              stream=self.stream, claim_ttl=s.get("claim_ttl"),
                              replicated=ReplicaWait(self.redis, s.get("replica_acks"), s.get("replica_timeout")))
        self.runner = Runner(machine, control_dir=control_dir(), log_dir=s.log_dir / "jobs" / machine.name,
                             options=RunnerOptions(output_cap=int(s.get("output_cap")),
                                                   connect_timeout=int(s.get("connect_timeout")),
                                                   control_persist=int(s.get("control_persist")),
                                                   kill_grace=float(s.get("kill_grace"))))
        self.queues = routing.worker_queues(machine)
        self.paused = threading.Event()
        self.pause_reason = ""
        self.retiring = False               # no longer ours to serve: ends once its jobs end
        self._stop = threading.Event()
        self._prober: threading.Thread | None = None
        self.lease = lease                  # taken by the fleet

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Open the ssh masters and the session (before the first burst); a machine that
        does not answer starts paused, probed until it does."""
        errors = self.runner.start()
        if errors:
            self.pause(f"{self.machine.name} unreachable: {errors[0]}")
        else:
            self.report("ready", "")

    def stop(self, release: bool = True) -> None:
        """Stop the probe, close the ssh masters and (``release``) give the lease back."""
        self._stop.set()
        self.runner.close()
        self.runner.close_masters()
        if release:
            self.report("stopped", "")
            try:
                self.lease.release()
            except redis.RedisError:
                log.warning("cannot release the lease of %s: it expires by itself", self.machine.name)

    def report(self, state: str, reason: str) -> None:
        """Publish the machine's state (ready, consuming, unreachable...) with this worker's
        name and pid, for `cmq machines`, `cmq top` and `cmq up`."""
        try:
            self.redis.hset(machine_key(self.machine.name), mapping={
                "state": state, "reason": reason, "since": repr(clock.now()),
                "worker": self.hostname, "pid": str(os.getpid()), "slots": str(self.machine.slots),
            })
        except redis.RedisError:
            log.warning("cannot report machine state to the broker")

    def beat(self) -> bool:
        """One heartbeat: renew the lease and the running jobs' claims. False when the
        lease went to another worker (this one must stop serving the machine)."""
        if not self.lease.keep() and not self._lease_lost():
            return False
        for job in self.guard.heartbeat(self.runner.running_ids()):
            log.error("job %s: it started again elsewhere while this worker was stopped or cut off "
                      "from the broker; both runs end, and its record says it ran twice", job)
        self.redis.hset(machine_key(self.machine.name), "seen", repr(clock.now()))
        return True

    def _lease_lost(self) -> bool:
        """The lease expired while this worker could not renew it (it was stopped, or cut
        off from the broker). Take it again when it is free, and go on (True); when
        another worker took it, that one serves the machine now: stop taking its jobs and
        let the running ones end (False)."""
        name = self.machine.name
        if self.lease.retake():
            log.warning("the lease of %s had expired (this worker was stopped or cut off from the broker); "
                        "taken again", name)
            return True
        log.error("the lease of %s is held by another worker (%s): this one stops taking its jobs and lets "
                  "the running ones end", name, holder(self.redis, self.lease.name) or "?")
        self.retiring = True
        self._consume(False)
        return False

    # -- pause / resume -----------------------------------------------------------------
    def pause(self, reason: str) -> None:
        """Stop consuming (the machine is unreachable) and probe until it answers."""
        if self.paused.is_set():
            return
        self.pause_reason = reason
        self.paused.set()
        log.warning("pausing: %s", reason)
        self.report("unreachable", reason)
        self._consume(False)
        self._prober = threading.Thread(target=self._probe_until_back, name="cmq-probe", daemon=True)
        self._prober.start()

    def _probe_until_back(self) -> None:
        interval = float(self.settings.get("probe_interval"))
        while not self._stop.wait(interval):
            ok, _, why = self.runner.probe()
            if ok:
                self.runner.start()
                log.warning("%s reachable again: resuming", self.machine.name)
                self.paused.clear()
                self.report("consuming", "")
                self._consume(True)
                return
            self.report("unreachable", why or self.pause_reason)

    def _consume(self, on: bool) -> None:
        """Start or stop taking this machine's jobs (in the consumer's own event loop)."""
        self.fleet.consume(self, on)

    # -- the job ------------------------------------------------------------------------
    def execute(self, task: Task, raw: dict[str, Any]) -> dict[str, Any] | None:
        """Run one job or transfer message: guard, run, publish the outcome, retry or move on.

        Whatever goes wrong here, the job does not vanish: an unexpected error ends it as
        lost, with the error as the reason. Returns the job's outcome when it is a member
        of a map (the reduce receives it), else None.
        """
        spec = JobSpec.from_dict(raw)
        member = (bool(getattr(task.request, "chord", None)) or "workflow" in spec.params
                  or bool(spec.params.get("member")))
        # cmq's own clients record a job before they publish it (and stamp "submitted");
        # a job sent some other way (Flower's REST API) is announced with its spec.
        announce = "submitted" not in raw
        try:
            self._execute(task, spec, member, announce)
        except Retry:
            raise
        except redis.RedisError as e:
            self._after_broker_error(task, spec, e)
        except Exception as e:
            log.exception("job %s: worker error", spec.id)
            lost = events.make(spec.id, JobStatus.LOST, self.machine.name, spec.attempt,
                               reason=f"worker error: {type(e).__name__}: {e}")
            self.with_broker(f"job {spec.id}", lambda: self.guard.finish(spec.id, lost, keep=member))
        try:
            self.with_broker(f"job {spec.id}", lambda: (self._unpin(spec), self._suspend_on_failure(spec)))
            return self.with_broker(f"job {spec.id}", lambda: self.guard.outcome(spec.id)) if member else None
        except redis.RedisError as e:
            log.error("job %s: the broker stayed away: %s", spec.id, e)
            return None

    def with_broker(self, what: str, step: Any) -> Any:
        """Run ``step()`` (Redis round trips); while the broker is away, wait for it (up to
        settings.broker_wait seconds) and run it again. Each step is safe to repeat: the
        guard's writes are transactions, and an event applied twice changes nothing."""
        deadline = time.monotonic() + float(self.settings.get("broker_wait"))
        delay = 0.5
        while True:
            try:
                return step()
            except redis.RedisError as e:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("%s: broker error (%s); trying again in %.1fs", what, e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _after_broker_error(self, task: Task, spec: JobSpec, error: Exception) -> None:
        """The broker went away before the job's outcome could be known (claiming it,
        staging, reporting progress): once it is back the job runs again, as a retry of
        the same attempt; a claim the broken round trip may have taken is given back."""
        log.warning("job %s: broker error before its outcome was known (%s); it runs again once the broker "
                    "is back", spec.id, error)
        self.with_broker(f"job {spec.id}", lambda: self.guard.release_own(spec.id))
        raise task.retry(kwargs={"spec": spec.to_dict()}, queue=spec.queue, countdown=0)

    def _claim(self, task: Task, spec: JobSpec, member: bool = False, announce: bool = False) -> str | None:
        """Claim ``spec`` and announce it running. Returns None when the job must not run
        here: one already done is dropped, one cancelled while queued ends as cancelled,
        and one that another worker still runs is looked at again later (never run twice).
        Otherwise returns the machine of an earlier start of the job that never ended
        (its worker or machine was lost mid-run), or "" when there was none."""
        name = self.machine.name
        extra = {"spec": spec.to_dict()} if announce else {}
        running = events.make(spec.id, JobStatus.RUNNING, name, spec.attempt, worker=self.hostname, **extra)
        claim = self.guard.begin(spec.id, running, mark=name)
        if claim.verdict == Verdict.DONE:
            return None
        if claim.verdict == Verdict.CANCELLED:
            self.guard.finish(spec.id, events.make(spec.id, JobStatus.CANCELLED, name, spec.attempt,
                                                    reason="cancelled before it started"), keep=member)
            return None
        if claim.verdict == Verdict.BUSY:
            # The broker handed the message out again after its visibility timeout while
            # another worker still runs it.
            countdown = max(1, min(self.guard.claim_ttl, int(self.settings.get("visibility_timeout")) // 2))
            log.info("job %s: its message was handed out again while the job runs; looked at again in %ds",
                     spec.id, countdown)
            raise task.retry(countdown=countdown)
        return claim.earlier

    def _suspended(self, spec: JobSpec, keep: bool) -> bool:
        """A step of a suspended workflow does not start: it ends cancelled, saying why."""
        wf = spec.params.get("workflow")
        why = self.redis.get(suspended_key(wf)) if wf else None
        if not why:
            return False
        self.guard.finish(spec.id, events.make(spec.id, JobStatus.CANCELLED, self.machine.name, spec.attempt,
                                                reason=f"not started: workflow {wf} suspended ({why.decode()})"),
                          keep=keep)
        return True

    def _suspend_on_failure(self, spec: JobSpec) -> None:
        """A workflow step that did not succeed suspends its workflow: later steps do not start."""
        wf = spec.params.get("workflow")
        if not wf:
            return
        done = self.guard.outcome(spec.id)
        if done and done["state"] != "succeeded" and "not started: workflow" not in (done.get("reason") or ""):
            self.redis.set(suspended_key(wf), f"step {spec.params.get('step')} {done['state']}", nx=True)

    def _execute(self, task: Task, spec: JobSpec, member: bool = False, announce: bool = False) -> None:
        if self.paused.is_set() or self.retiring:
            reason = self.pause_reason if self.paused.is_set() else f"{self.machine.name}: changing workers"
            self._move_on(task, spec, reason, release=False)
            return
        earlier = self._claim(task, spec, member, announce)
        if earlier is None:
            return
        if self._suspended(spec, member):
            return
        try:
            checked, extra = step_checks.evaluate(self.runner, spec) if spec.params.get("check") else (None, {})
            if checked is None and extra and self.guard.is_cancelled(spec.id):    # cancelled while it checked
                checked = JobResult(job=spec.id, machine=self.machine.name, exit_code=None, started=clock.now(),
                                    ended=clock.now(), reason="cancelled")
            if checked is not None:
                result = checked
            elif spec.params.get("check_only"):       # `cmq plan` asks: it would run
                result = JobResult(job=spec.id, machine=self.machine.name, exit_code=0, started=clock.now(),
                                   ended=clock.now(), data={"would_run": True})
            elif spec.kind in ("put", "get"):
                result = self._transfer(spec)
            elif spec.kind == "storage":
                result = self._storage(spec)
            elif spec.kind == "cloud":
                result = self._cloud(spec)
            elif "inputs" in spec.params:
                result = self._run_staged(spec)
            else:
                result = self.runner.run(spec)
        except MachineUnreachableError as e:
            self.pause(str(e))
            self._move_on(task, spec, str(e), release=True)
            return
        result.data.update(extra)
        data = result.to_dict()
        if earlier:
            note_rerun(data, earlier)
        # From here on the job has run: its outcome is known and must reach the broker,
        # which may be away for a while.
        self.with_broker(f"job {spec.id}", lambda: self._conclude(task, spec, result, data, member))

    def _conclude(self, task: Task, spec: JobSpec, result: JobResult, data: dict[str, Any], member: bool) -> None:
        """Publish the outcome of a run: succeeded, failed, cancelled, or a retry."""
        name = self.machine.name
        if result.reason == "cancelled" or not result.ok and self.guard.is_cancelled(spec.id):
            data["reason"] = "cancelled"
            self._finish(task, spec, events.make(spec.id, JobStatus.CANCELLED, name, spec.attempt, data), member)
        elif result.ok and not result.data.get("transfer_failed"):
            self._finish(task, spec, events.make(spec.id, JobStatus.SUCCEEDED, name, spec.attempt, data), member)
        elif spec.attempt <= spec.retries and not result.data.get("final"):
            data["reason"] = f"attempt {spec.attempt} of {spec.retries + 1} failed: {result.reason}"
            self.guard.release(spec.id, events.make(spec.id, JobStatus.RETRYING, name, spec.attempt, data))
            again = dataclasses.replace(spec, attempt=spec.attempt + 1)
            raise task.retry(kwargs={"spec": again.to_dict()}, queue=spec.queue,
                             countdown=min(2 ** (again.attempt - 1), 30))
        else:
            self._finish(task, spec, events.make(spec.id, JobStatus.FAILED, name, spec.attempt, data), member)

    def _finish(self, task: Task, spec: JobSpec, event: Event, member: bool) -> None:
        """Write a job's final event; a job that is not a map member (nor has staged
        inputs) also lets its message go in that write (its acknowledgement then writes
        nothing more)."""
        # A job with staged inputs keeps its acknowledgement for later: its inputs' pins
        # are dropped after this write, and a copy redelivered meanwhile must still find
        # the message to drop them.
        letting_go = not member and not spec.params.get("inputs")
        tag = str(getattr(task.request, TAG_HEADER, None) or "") if letting_go else ""
        self.guard.finish(spec.id, event, keep=member, let_go=tag)
        if tag:
            self.fleet.receipts.gone(tag)

    def reduce(self, task: Task, outcomes: list[dict[str, Any] | None], raw: dict[str, Any]) -> None:
        """The chord callback of a map: reduce the outcomes once, whatever is redelivered;
        a broker that goes away meanwhile makes it run again once it is back."""
        spec = JobSpec.from_dict(raw)
        try:
            self._reduce(task, outcomes, spec)
        except redis.RedisError as e:
            self._after_broker_error(task, spec, e)

    def _reduce(self, task: Task, outcomes: list[dict[str, Any] | None], spec: JobSpec) -> None:
        name = self.machine.name
        if self._claim(task, spec, member="workflow" in spec.params) is None or self._suspended(spec, True):
            return
        p = spec.params
        started = clock.now()
        if "operands" in p:            # a workflow's `+`: its operands' outcomes, stored or known
            known = p.get("known") or {}
            outcomes = [known.get(name) or self.guard.outcome(job) for name, job in p["operands"].items()]
        members = [{k: o.get(k) for k in ("job", "state", "machine", "exit_code", "started", "ended")}
                   for o in outcomes if o]
        try:
            done = reducers.reduce(p["reducer"], outcomes, allow_failures=bool(p.get("allow_failures")),
                                   cwd=p.get("cwd"))
        except CmqError as e:
            result = JobResult(job=spec.id, machine=name, exit_code=None, started=started, ended=clock.now(),
                               reason=f"reduce failed: {e}", data={"members": members})
            self.guard.finish(spec.id, events.make(spec.id, JobStatus.FAILED, name, spec.attempt,
                                                    result.to_dict()), keep="workflow" in p)
            self._suspend_on_failure(spec)
            return
        text = reducers.render(done.value)
        result = JobResult(job=spec.id, machine=name, exit_code=0, started=started, ended=clock.now(),
                           stdout=text if text.endswith("\n") or not text else text + "\n",
                           data={"value": done.value, "members": members, "skipped": done.skipped})
        self.guard.finish(spec.id, events.make(spec.id, JobStatus.SUCCEEDED, name, spec.attempt, result.to_dict()),
                          keep="workflow" in p)

    def _run_staged(self, spec: JobSpec) -> JobResult:
        """A job with its own directory: stage inputs in, run, fetch outputs, clean up."""
        p = spec.params
        master = self.runner.take_master()
        name = self.machine.name
        try:
            t = self.transfer(master)
            stager = Stager(t, self.redis, self.machine.cache)
            started = clock.now()
            shared: dict[str, int] = p.get("shared") or {}
            relay = self._input_relay(t, spec.batch, shared) if shared and self.machine.mode == "ssh" else None
            try:
                report = staging.retrying(lambda: stager.stage_in(spec.id, p["inputs"], relay, shared),
                                          "staging inputs in")
            except TransferError as e:
                ok, _, why = self.runner.probe()
                if not ok:
                    raise MachineUnreachableError(f"{name} unreachable: {why}") from None
                stager.remove(spec.id)
                return JobResult(job=spec.id, machine=name, exit_code=None, started=started, ended=clock.now(),
                                 reason=f"transfer failed: job {spec.id}: {e}", data={"transfer_failed": True})
            result = self.runner.run(dataclasses.replace(spec, command=stager.command(spec.id, spec.command)))
            fetched, error = stager.stage_out(spec.id, p.get("outputs", []), required=result.ok)
            if not p.get("keep"):
                stager.remove(spec.id)
        finally:
            self.runner.release_master(master)
        result.data.update(staged={"bytes": report.moved, "files": report.files_sent, "hits": len(report.hits),
                                   "seconds": round(report.seconds, 3), "relayed": report.relayed},
                           cache=report.cache_event(name), fetched=fetched)
        if report.warning and not result.reason:
            result.reason = report.warning
        if error:
            result.data["transfer_failed"] = True
            result.reason = f"transfer failed: job {spec.id}: {error}"
        return result

    def _input_relay(self, t: Transfer, batch: str, shared: dict[str, int]) -> staging.RelayInput:
        """How this machine's stager joins the relay of an input the batch's jobs share."""
        def relay(sha: str, local: Path, cached: str) -> Any:
            return relay_batch.stage_input(t, self.redis, batch, sha, local, cached, int(shared.get(sha) or 2),
                                           self.settings.inventory.machines,
                                           connect_timeout=int(self.settings.get("connect_timeout")),
                                           stall=float(self.settings.get("relay_stall")),
                                           gather=float(self.settings.get("relay_gather")))
        return relay

    def _unpin(self, spec: JobSpec) -> None:
        """The job ended (or was dropped): its cached inputs may be evicted again."""
        shas = {entry[1] for entry in spec.params.get("inputs", [])}
        if shas and self.guard.is_done(spec.id):
            pipe = self.redis.pipeline(transaction=False)
            for sha in shas:
                pipe.srem(staging.pin_key(sha), spec.id)
            pipe.execute()

    def _transfer(self, spec: JobSpec) -> JobResult:
        """Run a put/get message: one transfer between this host and the machine."""
        p = spec.params
        master = self.runner.take_master()
        started = clock.now()
        progress = ProgressReporter(self.redis, spec.id, int(p.get("total") or 0))
        try:
            t = self.transfer(master)
            if spec.kind == "put" and p.get("relay"):                  # one relay for the batch's machines
                moved = relay_batch.put(t, self.redis, spec.batch, p["relay"], self.settings.inventory.machines,
                                        Path(p["source"]), p["dest"], progress,
                                        connect_timeout=int(self.settings.get("connect_timeout")),
                                        stall=float(self.settings.get("relay_stall")))
            elif spec.kind == "put" and int(p.get("fanout") or 1) > 1:   # machines may share the target
                moved = shared_paths.put(t, self.redis, spec.batch, Path(p["source"]), p["dest"],
                                         recursive=bool(p.get("recursive")), progress=progress)
            elif spec.kind == "put":
                moved = t.put(Path(p["source"]), p["dest"], recursive=bool(p.get("recursive")), progress=progress)
            else:
                moved = t.get(p["source"], p["dest"], recursive=bool(p.get("recursive")),
                              progress=progress)
        except TransferError as e:
            ok, _, why = self.runner.probe()
            if not ok:
                raise MachineUnreachableError(f"{self.machine.name} unreachable: {why}") from None
            return JobResult(job=spec.id, machine=self.machine.name, exit_code=None, started=started,
                             ended=clock.now(), reason=f"transfer failed: {e}",
                             data={"final": isinstance(e, SourceMissingError)})
        finally:
            self.runner.release_master(master)
            progress.close()
        return JobResult(job=spec.id, machine=self.machine.name, exit_code=0, started=started, ended=clock.now(),
                         stdout=describe(moved) + "\n", data=moved.to_dict())

    def _storage(self, spec: JobSpec) -> JobResult:
        """Run a storage transfer job in this process (it uses one of this machine's slots;
        the files move between this host and the storage services)."""
        with _LAZY_IMPORT:               # imports from several threads at once can deadlock
            from ..storage import jobs

            jobs.preload(self.settings.inventory)
        progress = ProgressReporter(self.redis, spec.id, int(spec.params.get("total") or 0))
        try:
            return jobs.run(spec, self.settings.inventory, self.machine.name, on_progress=progress)
        finally:
            progress.close()

    def _cloud(self, spec: JobSpec) -> JobResult:
        """Run a cloud action job in this process (one of this machine's slots)."""
        with _LAZY_IMPORT:               # imports from several threads at once can deadlock
            import libcloud.compute.providers  # noqa: F401

            from ..clouds import cloud, jobs  # noqa: F401
            if any(c.type == "libvirt" for c in self.settings.inventory.clouds.values()):
                try:
                    import libcloud.compute.drivers.libvirt_driver  # noqa: F401
                except ImportError:
                    pass                     # the job says so, in the cloud's words
        return jobs.run(spec, self.settings.inventory, self.machine.name)

    def transfer(self, master: int = 0) -> Transfer:
        """A Transfer to this worker's machine through master ``master``."""
        return Transfer(self.machine, self.runner.control(master) if self.machine.mode == "ssh" else None,
                        connect_timeout=int(self.settings.get("connect_timeout")),
                        control_persist=int(self.settings.get("control_persist")))

    def _move_on(self, task: Task, spec: JobSpec, reason: str, release: bool) -> None:
        """Send a job that could not run here back to its queue, or declare it lost.

        A job pinned to this machine is never moved elsewhere nor lost for it: it waits
        for the machine, queued (or retrying, when it had started) with the reason."""
        name = self.machine.name
        if spec.target == f"machine:{name}":
            state = JobStatus.RETRYING if release else JobStatus.QUEUED
            event = events.make(spec.id, state, name, spec.attempt, reason=waiting_reason(name, reason))
            if release:
                self.guard.release(spec.id, event, ended=False)
            else:
                events.publish(self.redis, self.stream, event)
            raise task.retry(kwargs={"spec": spec.to_dict()}, queue=spec.queue,
                             countdown=float(self.settings.get("probe_interval")))
        spec.reroutes += 1
        limit = int(self.settings.get("max_reroutes"))
        if spec.reroutes > limit:
            self.guard.finish(spec.id, events.make(
                spec.id, JobStatus.LOST, name, spec.attempt,
                reason=f"lost: moved {limit} times between unreachable machines; last: {reason}"))
            return
        event = events.make(spec.id, JobStatus.RETRYING, name, spec.attempt,
                            reason=f"{reason}; job sent back to {spec.queue}")
        if release:
            self.guard.release(spec.id, event, ended=False)   # it may have run partly there
        else:
            events.publish(self.redis, self.stream, event)
        raise task.retry(kwargs={"spec": spec.to_dict()}, queue=spec.queue, countdown=0)
