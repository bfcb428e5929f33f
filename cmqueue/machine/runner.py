"""Run one job on one machine: over ssh (through a master) or as a local subprocess.

Knows nothing of Celery. A job's stdout and stderr go to log files as they arrive; the
result keeps their tails up to ``output_cap`` bytes (in memory: a full disk here loses
neither, see :mod:`cmqueue.machine.joblog`). A timeout or a cancel kills the job's
process group on the machine, not just the local ssh client.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..config.inventory import Machine
from ..core import clock, defaults
from ..core.errors import MachineUnreachableError
from ..core.files import private_dir
from ..core.models import JobResult, JobSpec
from . import ssh
from .joblog import OutputLog
from .session_client import BOOTSTRAP, RemoteSession, SessionDead

SSH_FAILURE = 255
log = logging.getLogger("cmq.runner")


def control_dir() -> Path:
    """The private directory of the ssh master sockets of this cmq home (short: socket
    paths are limited to ~104 bytes): $XDG_RUNTIME_DIR/cmq-UID-TAG, else /tmp/cmq-UID-TAG,
    where TAG stands for $CMQ_HOME, so two homes (a demo, a test) never share masters."""
    from ..config.settings import home_dir

    tag = hashlib.sha256(str(home_dir().resolve()).encode()).hexdigest()[:8]
    return Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"cmq-{os.getuid()}-{tag}"


def close_all_masters(directory: Path | None = None) -> int:
    """Ask every ssh master with a socket in ``directory`` (default: this home's) to exit;
    returns how many were asked."""
    directory = directory or control_dir()
    if not directory.is_dir():
        return 0
    sockets = [p for p in directory.iterdir() if p.is_socket()]
    procs = [subprocess.Popen(["ssh", "-o", f"ControlPath={p}", "-O", "exit", "--", "cmq-master"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in sockets]
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return len(sockets)


@dataclass
class RunnerOptions:
    """Tunables of a runner (see :mod:`cmqueue.core.defaults` for each)."""

    output_cap: int = defaults.OUTPUT_CAP
    connect_timeout: int = defaults.CONNECT_TIMEOUT
    control_persist: int = defaults.CONTROL_PERSIST
    kill_grace: float = defaults.KILL_GRACE


@dataclass
class _Running:
    spec: JobSpec
    proc: subprocess.Popen | None
    deadline: float | None
    session: RemoteSession | None = None
    killed: str = ""          # "", "timeout" or "cancel"
    master: int = 0
    done: threading.Event = field(default_factory=threading.Event)


class Runner:
    """Runs jobs on one machine and keeps its ssh masters.

    ``run`` blocks until the job ends and returns a :class:`JobResult`; it raises
    :class:`MachineUnreachableError` when ssh could not reach the machine. ``cancel``
    may be called from any thread.
    """

    def __init__(self, machine: Machine, control_dir: Path, log_dir: Path,
                 options: RunnerOptions | None = None) -> None:
        self.machine = machine
        self.options = options or RunnerOptions()
        self.control_dir = private_dir(control_dir) if machine.mode == "ssh" else control_dir
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sessions = [0] * machine.masters
        self._running: dict[str, _Running] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._session: RemoteSession | None = None
        self._session_lock = threading.Lock()
        self.transport = machine.transport if machine.transport != "auto" else "session"
        self._watchdog = threading.Thread(target=self._watch, name=f"cmq-watchdog-{machine.name}",
                                          daemon=True)
        self._watchdog.start()

    # -- ssh plumbing -------------------------------------------------------------------
    def _ssh_kw(self) -> dict[str, int]:
        return {"persist": self.options.control_persist, "connect_timeout": self.options.connect_timeout}

    def control(self, index: int) -> str:
        """ControlPath of master ``index``."""
        return ssh.control_path(self.control_dir, self.machine, index)

    def argv(self, remote: list[str], master: int = 0) -> list[str]:
        """argv running ``remote`` on the machine (through master ``master`` for ssh)."""
        if self.machine.mode == "ssh":
            return ssh.ssh_argv(self.machine, remote, self.control(master), **self._ssh_kw())
        return remote

    def open_masters(self, count: int | None = None) -> list[str]:
        """Open the first ``count`` masters (default: all) in parallel; returns error lines."""
        if self.machine.mode != "ssh":
            return []
        count = len(self._sessions) if count is None else count

        def open_one(i: int) -> str:
            ctl = self.control(i)
            if subprocess.run(ssh.check_master_argv(self.machine, ctl), capture_output=True).returncode == 0:
                return ""
            r = subprocess.run(ssh.master_argv(self.machine, ctl, **self._ssh_kw()),
                               capture_output=True, text=True, stdin=subprocess.DEVNULL,
                               timeout=self.options.connect_timeout + 30)
            return "" if r.returncode == 0 else (ssh.explain_failure(r.stderr, self.machine) or "ssh failed")

        with ThreadPoolExecutor(max_workers=count) as pool:
            return [e for e in pool.map(open_one, range(count)) if e]

    def close_masters(self) -> None:
        """Ask every master of the machine to exit."""
        if self.machine.mode != "ssh":
            return
        for i in range(len(self._sessions)):
            subprocess.run(ssh.exit_master_argv(self.machine, self.control(i)), capture_output=True)

    def probe(self, timeout: float | None = None) -> tuple[bool, float, str]:
        """Run ``true`` on the machine: (reachable, seconds, last error line)."""
        t0 = time.monotonic()
        try:
            r = subprocess.run(self.argv(["true"], 0), capture_output=True, text=True,
                               stdin=subprocess.DEVNULL,
                               timeout=timeout or self.options.connect_timeout + 5)
        except subprocess.TimeoutExpired:
            return False, time.monotonic() - t0, "timed out"
        err = ssh.explain_failure(r.stderr, self.machine) if self.machine.mode == "ssh" else \
            (r.stderr.strip().splitlines() or [""])[-1]
        return r.returncode == 0, time.monotonic() - t0, err

    # -- the session transport ----------------------------------------------------------
    def session(self) -> RemoteSession | None:
        """The machine's session (started on first use), or None when this machine
        runs one ssh client per job (transport: exec, or auto without python3 there)."""
        if self.transport != "session":
            return None
        with self._session_lock:
            if self._session is not None and not self._session.dead.is_set():
                return self._session
            if self._session is not None:
                self._session.close()
                self._session = None
            if self.machine.mode == "ssh":
                argv = self.argv(["python3", "-u", "-c", BOOTSTRAP], 0)
            else:
                argv = [sys.executable, "-u", "-c", BOOTSTRAP]
            try:
                self._session = RemoteSession(argv, start_timeout=self.options.connect_timeout + 20)
            except SessionDead as e:
                ok, _, why = self.probe()
                if not ok:
                    raise MachineUnreachableError(f"{self.machine.name} unreachable: {why or e}") from None
                if self.machine.transport == "session":
                    raise MachineUnreachableError(f"{self.machine.name}: session failed: {e}") from None
                log.warning("%s: no session (%s); running one ssh client per job", self.machine.name, e)
                self.transport = "exec"
                self.open_masters()          # exec needs every master before the first burst
                return None
            return self._session

    def start(self) -> list[str]:
        """Open the masters and the session before the first job; returns errors.

        The session transport needs only master 0 (one session carries every job)."""
        errors = self.open_masters(1 if self.transport == "session" else None)
        if errors:
            return errors
        try:
            self.session()
        except MachineUnreachableError as e:
            return [str(e)]
        return []

    # -- running ------------------------------------------------------------------------
    def take_master(self) -> int:
        """Index of the least busy master; give it back with :meth:`release_master`."""
        with self._lock:
            i = min(range(len(self._sessions)), key=self._sessions.__getitem__)
            self._sessions[i] += 1
            return i

    def release_master(self, i: int) -> None:
        """Give back a master taken with :meth:`take_master`."""
        with self._lock:
            self._sessions[i] -= 1

    def run(self, spec: JobSpec, env: dict[str, str] | None = None,
            on_start: Callable[[float], None] | None = None) -> JobResult:
        """Run ``spec`` to its end and return the result (blocks)."""
        m = self.machine
        job_env = {**dict(m.env), **(env or {}), **spec.env,
                   "CMQ_JOB_ID": spec.id, "CMQ_MACHINE": m.name}
        cap = self.options.output_cap
        out = OutputLog(self.log_dir / f"{spec.id}.out", cap)
        err = OutputLog(self.log_dir / f"{spec.id}.err", cap)
        session = self.session()
        try:
            if session is not None:
                code, started, ended, running = self._run_in_session(session, spec, job_env, out, err, on_start)
            else:
                code, started, ended, running = self._run_exec(spec, ssh.with_env(spec.command, job_env),
                                                               out, err, on_start)
                if code == SSH_FAILURE and m.mode == "ssh" and not running.killed:
                    ok, _, why = self.probe()
                    if not ok:
                        errline = err.text()[0].strip().splitlines()
                        out.discard()
                        err.discard()
                        raise MachineUnreachableError(
                            f"{m.name} unreachable: {why or (errline[-1] if errline else 'ssh exit 255')}")
        finally:
            out.close()
            err.close()
        stdout, out_cut = out.text()
        stderr, err_cut = err.text()
        reason = ""
        if running.killed == "timeout":
            reason = f"timed out after {spec.timeout:g}s"
        elif running.killed == "cancel":
            reason = "cancelled"
        elif code == 125:
            reason = f"cannot use work directory {m.workdir}"
        elif code:
            reason = f"exit code {code}"
        logs = {f"{name}_log": str(o.path) for name, o in (("stdout", out), ("stderr", err)) if o.kept}
        trouble = [f"{name}: {o.error}" for name, o in (("stdout", out), ("stderr", err)) if o.error]
        if trouble:
            reason = "; ".join([reason, *trouble] if reason else trouble) + " (its tail is in this record)"
        return JobResult(job=spec.id, machine=m.name, exit_code=code, stdout=stdout, stderr=stderr,
                         started=started, ended=ended, reason=reason, stdout_truncated=out_cut,
                         stderr_truncated=err_cut, log_host=socket.gethostname(), **logs)

    def _register(self, running: _Running) -> None:
        with self._lock:
            self._running[running.spec.id] = running
            if running.deadline:
                heapq.heappush(self._deadlines, (running.deadline, running.spec.id))
                self._wake.notify()

    def _unregister(self, running: _Running) -> None:
        with self._lock:
            self._running.pop(running.spec.id, None)
        running.done.set()

    def _run_in_session(self, session: RemoteSession, spec: JobSpec, env: dict[str, str], out: OutputLog,
                        err: OutputLog, on_start: Callable[[float], None] | None):
        deadline = time.monotonic() + spec.timeout if spec.timeout else None
        running = _Running(spec, None, deadline, session=session)
        started = clock.now()
        self._register(running)
        try:
            code, t0, t1 = session.run(spec.id, spec.command, self.machine.workdir, env, out, err,
                                       on_start=(lambda: on_start(started)) if on_start else None)
        except SessionDead as e:
            out.discard()
            err.discard()
            ok, _, why = self.probe()
            raise MachineUnreachableError(
                f"{self.machine.name} unreachable: {why or e}" if not ok
                else f"{self.machine.name}: session lost while the job ran ({e})") from None
        finally:
            self._unregister(running)
        return code, t0 or started, t1 or clock.now(), running

    def _run_exec(self, spec: JobSpec, command: str, out: OutputLog, err: OutputLog,
                  on_start: Callable[[float], None] | None):
        m = self.machine
        master = self.take_master()
        try:
            started = clock.now()
            proc = subprocess.Popen(self.argv(ssh.job_argv(m.workdir, spec.id, command), master),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
            pumps = [threading.Thread(target=log_.pump, args=(pipe,), daemon=True)
                     for log_, pipe in ((out, proc.stdout), (err, proc.stderr))]
            for t in pumps:
                t.start()
            if on_start:
                on_start(started)
            deadline = time.monotonic() + spec.timeout if spec.timeout else None
            running = _Running(spec, proc, deadline, master=master)
            self._register(running)
            try:
                code = proc.wait()
                for t in pumps:
                    t.join()
            finally:
                self._unregister(running)
            ended = clock.now()
        finally:
            self.release_master(master)
        return code, started, ended, running

    # -- stopping -----------------------------------------------------------------------
    def running_ids(self) -> list[str]:
        """Ids of the jobs running now."""
        with self._lock:
            return list(self._running)

    def cancel(self, job_id: str) -> bool:
        """Kill job ``job_id`` if it runs here; returns whether it did."""
        return self._kill(job_id, "cancel")

    def _kill(self, job_id: str, why: str) -> bool:
        with self._lock:
            running = self._running.get(job_id)
            if running is None or running.killed:
                return False
            running.killed = why
        threading.Thread(target=self._kill_now, args=(running,), daemon=True).start()
        return True

    def _kill_now(self, running: _Running) -> None:
        grace = self.options.kill_grace
        if running.session is not None:
            running.session.kill(running.spec.id, grace)
            running.done.wait(grace + 5)
            return
        assert running.proc is not None
        argv = self.argv(ssh.kill_argv(self.machine.workdir, running.spec.id, grace), running.master)
        try:
            subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL,
                           timeout=grace + self.options.connect_timeout + 5)
        except subprocess.TimeoutExpired:
            pass
        if not running.done.wait(grace + 2):
            try:
                os.killpg(running.proc.pid, 9)
            except ProcessLookupError:
                pass

    def _watch(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                due = []
                while self._deadlines and self._deadlines[0][0] <= now:
                    due.append(heapq.heappop(self._deadlines)[1])
                wait = (self._deadlines[0][0] - now) if self._deadlines else None
                if not due:
                    self._wake.wait(wait)
                    continue
            for job_id in due:
                self._kill(job_id, "timeout")

    def close(self) -> None:
        """Stop the watchdog and end the session."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        with self._session_lock:
            if self._session is not None:
                self._session.close()
                self._session = None
