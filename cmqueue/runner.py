"""Run one job on one machine: over ssh (through a master) or as a local subprocess.

Knows nothing of Celery. A job's stdout and stderr go straight to log files; the result
keeps their tails up to ``output_cap`` bytes. A timeout or a cancel kills the job's
process group on the machine, not just the local ssh client.
"""

from __future__ import annotations

import heapq
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import defaults, ssh
from .errors import MachineUnreachableError
from .files import private_dir
from .inventory import Machine
from .models import JobResult, JobSpec

SSH_FAILURE = 255


@dataclass
class RunnerOptions:
    """Tunables of a runner (see :mod:`cmqueue.defaults` for each)."""

    output_cap: int = defaults.OUTPUT_CAP
    connect_timeout: int = defaults.CONNECT_TIMEOUT
    control_persist: int = defaults.CONTROL_PERSIST
    kill_grace: float = defaults.KILL_GRACE


@dataclass
class _Running:
    spec: JobSpec
    proc: subprocess.Popen
    deadline: float | None
    killed: str = ""          # "", "timeout" or "cancel"
    master: int = 0
    done: threading.Event = field(default_factory=threading.Event)


def _tail(path: Path, cap: int) -> tuple[str, bool]:
    """Last ``cap`` bytes of ``path`` as text, and whether anything was cut."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "", False
    with path.open("rb") as f:
        if size > cap:
            f.seek(size - cap)
        data = f.read()
    return data.decode("utf-8", "replace"), size > cap


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

    def open_masters(self) -> list[str]:
        """Open every master of the machine in parallel; returns error lines (empty: all up)."""
        if self.machine.mode != "ssh":
            return []

        def open_one(i: int) -> str:
            ctl = self.control(i)
            if subprocess.run(ssh.check_master_argv(self.machine, ctl), capture_output=True).returncode == 0:
                return ""
            r = subprocess.run(ssh.master_argv(self.machine, ctl, **self._ssh_kw()),
                               capture_output=True, text=True, stdin=subprocess.DEVNULL,
                               timeout=self.options.connect_timeout + 30)
            return "" if r.returncode == 0 else (r.stderr.strip().splitlines() or ["ssh failed"])[-1]

        with ThreadPoolExecutor(max_workers=len(self._sessions)) as pool:
            return [e for e in pool.map(open_one, range(len(self._sessions))) if e]

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
        err = (r.stderr.strip().splitlines() or [""])[-1]
        return r.returncode == 0, time.monotonic() - t0, err

    # -- running ------------------------------------------------------------------------
    def _take_master(self) -> int:
        with self._lock:
            i = min(range(len(self._sessions)), key=self._sessions.__getitem__)
            self._sessions[i] += 1
            return i

    def _release_master(self, i: int) -> None:
        with self._lock:
            self._sessions[i] -= 1

    def run(self, spec: JobSpec, env: dict[str, str] | None = None,
            on_start: Callable[[float], None] | None = None) -> JobResult:
        """Run ``spec`` to its end and return the result (blocks)."""
        m = self.machine
        job_env = {**dict(m.env), **(env or {}), **spec.env,
                   "CMQ_JOB_ID": spec.id, "CMQ_MACHINE": m.name}
        command = ssh.with_env(spec.command, job_env)
        master = self._take_master()
        out_path = self.log_dir / f"{spec.id}.out"
        err_path = self.log_dir / f"{spec.id}.err"
        try:
            with out_path.open("wb") as out, err_path.open("wb") as err:
                started = time.time()
                proc = subprocess.Popen(self.argv(ssh.job_argv(m.workdir, spec.id, command), master),
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        start_new_session=True)
                if on_start:
                    on_start(started)
                deadline = time.monotonic() + spec.timeout if spec.timeout else None
                running = _Running(spec, proc, deadline, master=master)
                with self._lock:
                    self._running[spec.id] = running
                    if deadline:
                        heapq.heappush(self._deadlines, (deadline, spec.id))
                        self._wake.notify()
                try:
                    code = proc.wait()
                finally:
                    with self._lock:
                        self._running.pop(spec.id, None)
                    running.done.set()
                ended = time.time()
        finally:
            self._release_master(master)
        if code == SSH_FAILURE and m.mode == "ssh" and not running.killed:
            ok, _, why = self.probe()
            if not ok:
                errline = _tail(err_path, 4096)[0].strip().splitlines()
                out_path.unlink(missing_ok=True)
                err_path.unlink(missing_ok=True)
                raise MachineUnreachableError(
                    f"{m.name} unreachable: {why or (errline[-1] if errline else 'ssh exit 255')}"
                )
        cap = self.options.output_cap
        stdout, out_cut = _tail(out_path, cap)
        stderr, err_cut = _tail(err_path, cap)
        reason = ""
        if running.killed == "timeout":
            reason = f"timed out after {spec.timeout:g}s"
        elif running.killed == "cancel":
            reason = "cancelled"
        elif code == 125:
            reason = f"cannot use work directory {m.workdir}"
        elif code:
            reason = f"exit code {code}"
        logs = {}
        for name, path in (("stdout_log", out_path), ("stderr_log", err_path)):
            if path.stat().st_size == 0:
                path.unlink(missing_ok=True)
            else:
                logs[name] = str(path)
        return JobResult(job=spec.id, machine=m.name, exit_code=code, stdout=stdout, stderr=stderr,
                         started=started, ended=ended, reason=reason, stdout_truncated=out_cut,
                         stderr_truncated=err_cut, log_host=socket.gethostname(), **logs)

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
        """Stop the watchdog (running jobs are not touched)."""
        with self._lock:
            self._closed = True
            self._wake.notify()
