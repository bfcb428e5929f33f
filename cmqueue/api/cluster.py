"""The Python API: ``from cmqueue import Cluster``.

    with Cluster.from_config("cmq.yaml") as c:
        job = c.submit("hostname", on="node1")
        print(job.wait().stdout)
        jobs = c.map("gzip -9 {}", ["a.txt", "b.txt"])
        c.wait(jobs)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..config.settings import Settings, resolve
from ..core import defaults
from ..core.errors import CmqError, ServiceError, UsageError
from ..core.models import Event, JobRecord, JobResult, JobSpec, JobStatus
from ..core.redact import redact_url
from ..history import HistoryStore, open_store
from ..history.waiting import Waiter
from ..queue.claims import request_cancel

log = logging.getLogger("cmq")


def _redis_error() -> type[Exception]:
    """redis-py's error base, imported when an error is being handled (listings that
    never reach the broker never load redis-py: it costs more than their work)."""
    from redis import RedisError

    return RedisError


def recorder_follows(settings: Settings) -> bool:
    """Whether the recorder that `cmq up` started for this home runs and keeps this
    history store (read from services.json and /proc: no broker round trip)."""
    from ..core.files import read_json
    from ..queue.lease import is_running

    try:
        rec = (read_json(settings.state_file, default={}) or {}).get("recorder") or {}
    except (OSError, ValueError, CmqError):
        return False
    return (rec.get("history") == settings.history and "pid" in rec
            and is_running(int(rec["pid"]), float(rec.get("created", -1))))


def _submit() -> Any:
    """:mod:`cmqueue.submit.specs`, imported when jobs are made: listings never do."""
    from ..submit import specs

    return specs


def _publish() -> Any:
    """:mod:`cmqueue.submit.publish`, imported when jobs are sent (it loads Celery)."""
    from ..submit import publish

    return publish


class Job:
    """A submitted job. ``wait()`` blocks until it ends and returns its result."""

    def __init__(self, cluster: Cluster, spec: JobSpec) -> None:
        self.cluster = cluster
        self.spec = spec

    @property
    def id(self) -> str:
        """The job id."""
        return self.spec.id

    def record(self) -> JobRecord:
        """The job as the history store knows it now (after applying new events)."""
        self.cluster.waiter.refresh()
        rec = self.cluster.store.get(self.id)
        assert rec is not None
        return rec

    @property
    def state(self) -> JobStatus:
        """The job's current state."""
        return self.record().state

    def wait(self, timeout: float | None = None) -> JobResult:
        """Block until the job ends (or ``timeout`` seconds pass) and return its result."""
        (rec,) = self.cluster.wait([self], timeout=timeout)
        return result_of(rec)

    @property
    def result(self) -> JobResult:
        """The result once the job ended (waits for it)."""
        return self.wait()

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.spec.target}: {self.spec.command!r}>"


def result_of(rec: JobRecord) -> JobResult:
    """A JobResult for any record: the real one, or one that carries the state's reason."""
    if rec.result is not None:
        return rec.result
    return JobResult(job=rec.id, machine=rec.machine or "", exit_code=rec.exit_code,
                     started=rec.started, ended=rec.ended, reason=rec.reason or rec.state.value)


class Workflow:
    """A started workflow: ``wait()`` blocks until its steps end and returns its value."""

    def __init__(self, cluster: Cluster, workflow_id: str) -> None:
        self.cluster = cluster
        self.id = workflow_id

    @property
    def state(self) -> str:
        """running, failing, suspended or succeeded."""
        wfs = self.cluster.workflows
        return wfs.state(wfs.resolve(self.id))

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the steps; the workflow's value (WorkflowError if it did not succeed)."""
        from ..core.errors import JobFailedError

        wfs = self.cluster.workflows
        wf = wfs.resolve(self.id)
        steps = wfs.wait(wf, timeout=timeout)
        state = wfs.state(wf, steps)
        if state != "succeeded":
            bad = [s.record for s in steps if s.record and s.state != "succeeded"]
            raise JobFailedError(f"workflow {self.id} {state}: " + ", ".join(
                f"{s.name} {s.state}" for s in steps if s.state != "succeeded"), bad)
        return wfs.value(wf, steps)

    def resume(self) -> list[str]:
        """Run again what did not succeed; returns the steps sent."""
        return self.cluster.workflows.resume(self.id)[1]


class Cluster:
    """The machines of one inventory, its broker and its history."""

    def __init__(self, settings: Settings, trust_recorder: bool = False, app: Any = None) -> None:
        """``trust_recorder``: listings skip catching up the event stream when this home's
        recorder runs (it follows the stream with a blocking read: the store is behind by
        milliseconds), so that they need no broker client at all (see :meth:`refresh`).
        ``app``: a Celery app to send with, shared with other Clusters (not closed here)."""
        self.settings = settings
        self.trust_recorder = trust_recorder
        self._app: Any = app
        self._own_app = app is None
        self._results_app: Any = None
        self._store: HistoryStore | None = None
        self._redis: Any = None
        self._waiter: Waiter | None = None

    @classmethod
    def from_config(cls, path: str | None = None, broker: str | None = None,
                    check_keys: bool = True, history: str | None = None) -> Cluster:
        """A Cluster for the inventory at ``path`` (default: $CMQ_CONFIG or ~/.cloudmesh/cmq.yaml),
        ``broker`` and ``history`` taking the place of command line options (see
        :mod:`cmqueue.config.settings`)."""
        return cls(resolve(path, broker=broker, history=history, check_keys=check_keys))

    # -- parts, made on first use ---------------------------------------------------------
    @property
    def redis(self) -> Any:
        """A client of the broker's Redis (checked with PING on first use)."""
        if self._redis is None:
            url = self.settings.require_broker()
            import redis

            from ..queue.broker import connect, error_line, is_group

            client = connect(url, socket_connect_timeout=5)
            # A Sentinel group names a new primary some seconds after its primary died.
            deadline = time.monotonic() + (defaults.FAILOVER_WAIT if is_group(url) else 0)
            while True:
                try:
                    client.ping()
                    break
                except (redis.RedisError, OSError) as e:
                    if time.monotonic() >= deadline:
                        raise ServiceError(f"cannot reach the broker at {redact_url(url)}: {error_line(url, e)} "
                                           "(is `cmq up` running?)") from None
                    time.sleep(0.5)
            self._redis = client
        return self._redis

    @property
    def app(self) -> Any:
        """The Celery app (created on first use, unless one was given)."""
        self.redis  # noqa: B018 - fail early, with a clear message, if the broker is down (pinged once)
        if self._app is None:
            from ..queue.celery_app import create_app

            self._app = create_app(self.settings)
        return self._app

    @property
    def store(self) -> HistoryStore:
        """The history store."""
        if self._store is None:
            self._store = open_store(self.settings.history)
        return self._store

    @property
    def waiter(self) -> Waiter:
        """Follows the event stream into the store."""
        if self._waiter is None:
            self._waiter = Waiter(self.store, self.redis, self.settings.get("event_stream"))
        return self._waiter

    # -- submitting -----------------------------------------------------------------------
    def _send(self, specs: list[JobSpec]) -> list[Job]:
        self._hold_stream()
        _publish().send(self.app, self.store, specs)
        return [Job(self, s) for s in specs]

    def _hold_stream(self) -> None:
        """Mark how far this store read the event stream, before jobs go: no other store's
        trimming drops the events of these jobs before this one reads them."""
        import redis

        from ..history import readers

        try:
            readers.mark(self.redis, self.settings.get("event_stream"), self.store.identity, self.store.cursor())
        except (ServiceError, redis.RedisError, OSError) as e:   # the send says what is wrong with the broker
            log.debug("cannot mark the event stream: %s", e)

    def submit(self, command: str, on: str | None = None, label: str | None = None,
               timeout: float | None = None, retries: int = 0,
               env: dict[str, str] | None = None, puts: Sequence[str] = (), gets: Sequence[str] = (),
               keep: bool = False) -> Job:
        """Submit one job: on machine ``on``, on any machine with ``label``, or anywhere.

        ``puts``/``gets``/``keep`` stage data as ``cmq submit --put/--get/--keep`` do."""
        submitting = _submit()
        where = submitting.placement(self.settings.inventory, on=on, label=label)
        if len(where.targets()) != 1:
            raise UsageError(f"submit() runs one job; {on!r} names {len(where.targets())} "
                             "machines (use broadcast())")
        _, specs = submitting.build_specs(command, where, timeout=timeout, retries=retries, env=env,
                                          puts=puts, gets=gets, keep=keep)
        return self._send(specs)[0]

    def broadcast(self, command: str, on: str | None = None, timeout: float | None = None,
                  retries: int = 0, env: dict[str, str] | None = None) -> list[Job]:
        """Run ``command`` once on each machine named by ``on`` (default: every enabled one)."""
        submitting = _submit()
        where = submitting.placement(self.settings.inventory, on=on, everywhere=on is None)
        _, specs = submitting.build_specs(command, where, timeout=timeout, retries=retries, env=env)
        return self._send(specs)

    def map(self, template: str, args: Iterable[Any], on: str | None = None, label: str | None = None,
            timeout: float | None = None, retries: int = 0, env: dict[str, str] | None = None) -> list[Job]:
        """One job per argument, ``{}`` in ``template`` replaced by the quoted argument."""
        submitting = _submit()
        where = submitting.placement(self.settings.inventory, on=on, label=label)
        _, specs = submitting.build_specs(template, where, args=[str(a) for a in args],
                                          timeout=timeout, retries=retries, env=env)
        return self._send(specs)

    def mapreduce(self, template: str, args: Iterable[Any], reduce: str = "sum", on: str | None = None,
                  label: str | None = None, timeout: float | None = None, retries: int = 0,
                  env: dict[str, str] | None = None, allow_failures: bool = False,
                  puts: Sequence[str] = (), gets: Sequence[str] = ()) -> Job:
        """One job per argument, then a reduce of their outputs (a Celery chord).

        ``puts``/``gets`` stage data as ``cmq map --put/--get`` do (``"{}"`` stages each
        job's own argument). Returns the reduce job: ``.wait().data["value"]`` is the value."""
        submitting = _submit()
        where = submitting.placement(self.settings.inventory, on=on, label=label)
        _, members = submitting.build_specs(template, where, args=[str(a) for a in args],
                                            timeout=timeout, retries=retries, env=env, puts=puts, gets=gets)
        rspec = submitting.build_reduce(members, reduce, allow_failures=allow_failures)
        self._hold_stream()
        _publish().send(self.app, self.store, members, rspec)
        return Job(self, rspec)

    @property
    def workflows(self) -> Any:
        """Workflows of this cluster (start, resume, retry, cancel, show)."""
        from ..workflow.engine import Workflows

        return Workflows(self)

    @property
    def results_app(self) -> Any:
        """A Celery app with the result backend (workflows publish chords with it)."""
        if self._results_app is None:
            from ..queue.celery_app import create_app

            self._results_app = create_app(self.settings, publisher=True)
        return self._results_app

    def run(self, expr: str, tasks: Any = None, reducer: str = "add") -> Workflow:
        """Start workflow ``expr``. ``tasks``: a tasks file path, a module, or a dict of
        name -> command; the inventory's ``tasks:`` are always there too."""
        wfs = self.workflows
        plan = wfs.plan(expr, self.tasks(tasks), reducer=reducer, source=str(getattr(tasks, "__file__", tasks) or ""))
        return Workflow(self, wfs.start(plan))

    def tasks(self, tasks: Any = None) -> dict[str, Any]:
        """Task definitions: the inventory's, plus those of ``tasks`` (see :meth:`run`)."""
        from ..workflow import tasks as taskdefs

        found = taskdefs.from_inventory(self.settings.inventory.tasks, self.settings.inventory.path)
        if isinstance(tasks, dict):
            found.update(taskdefs.from_inventory(tasks, self.settings.inventory.path))
        elif tasks is not None:
            found.update(taskdefs.load_file(getattr(tasks, "__file__", tasks)))
        return found

    def put(self, source: str, machines: str, dest: str = "", recursive: bool = False) -> list[Job]:
        """Copy local ``source`` to ``dest`` on every machine of the hostlist ``machines``
        (one transfer job each; relative ``dest`` is under the machine's workdir)."""
        _, specs = _submit().build_transfers(self.settings.inventory, "put", machines, source, dest, recursive)
        return self._send(specs)

    def get(self, machines: str, source: str, dest: str = ".", recursive: bool = False) -> list[Job]:
        """Copy ``source`` from each machine of ``machines`` to local ``dest`` (with several
        machines, into ``dest/<machine>/``)."""
        _, specs = _submit().build_transfers(self.settings.inventory, "get", machines, source, dest, recursive)
        return self._send(specs)

    def send_specs(self, specs: list[JobSpec]) -> list[Job]:
        """Record and publish ready-made specs (used by the command line)."""
        return self._send(specs)

    # -- following ------------------------------------------------------------------------
    def wait(self, jobs: Sequence[Job | str], timeout: float | None = None,
             on_update: Callable[[list[JobRecord]], None] | None = None,
             on_tick: Callable[[], None] | None = None) -> list[JobRecord]:
        """Block until every job ends (or ``timeout``); returns their records."""
        ids = [j.id if isinstance(j, Job) else j for j in jobs]
        return self.waiter.wait(ids, timeout=timeout, on_update=on_update, on_tick=on_tick)

    def status(self, refs: Iterable[str] = ()) -> list[JobRecord]:
        """Records of jobs named by id, batch or prefix (after applying new events)."""
        self.refresh()
        records = self.store.resolve(refs)
        self.explain_waiting(records)
        return records

    def explain_waiting(self, records: Sequence[JobRecord]) -> None:
        """Say why queued jobs pinned to a machine wait (it is unreachable, or has no
        worker); the broker being down leaves the records as they are."""
        from ..fleet.machine_state import explain_waiting, unexplained

        if not unexplained(records):
            return                                  # no broker client needed
        try:
            explain_waiting(self.redis, records)
        except ServiceError:
            pass
        except _redis_error():                      # evaluated only for other errors
            pass

    def refresh(self) -> None:
        """Apply new events from the broker, if it is reachable (history works without it).
        When the history store cannot take them (its disk is full), the records stay as
        they were, the events wait on the broker, and a warning says so. With
        ``trust_recorder`` and this home's recorder running for this store, nothing to do."""
        if self.trust_recorder and recorder_follows(self.settings):
            return
        try:
            waiter = self.waiter
        except ServiceError:
            return                                      # no broker (yet): the history as it is
        except _redis_error():                          # evaluated only for other errors
            return
        try:
            waiter.refresh()
        except _redis_error():
            pass
        except ServiceError as e:
            log.warning("cmq: the history is not up to date: %s (the events wait on the broker)", e)

    def cancel(self, refs: Iterable[str], wait: float = 10.0) -> list[JobRecord]:
        """Cancel jobs: queued ones at once, running ones are killed on their machine."""
        records = self.status(refs)
        live = [r for r in records if not r.state.final]
        if live:
            request_cancel(self.redis, [r.id for r in live])
            queued = [r for r in live if r.state in (JobStatus.QUEUED, JobStatus.RETRYING)]
            self.store.apply([Event(job=r.id, state=JobStatus.CANCELLED, ts=time.time(),
                                    data={"reason": "cancelled before it started"}) for r in queued])
            running = [r.id for r in live if r.state == JobStatus.RUNNING]
            if running and wait:
                self.wait(running, timeout=wait)
        return self.store.get_many([r.id for r in records])

    def close(self) -> None:
        """Release connections."""
        if self._store is not None:
            self._store.close()
        if self._redis is not None:
            self._redis.close()
        if self._app is not None and self._own_app:
            self._app.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
