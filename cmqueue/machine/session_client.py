"""The controller half of the session transport: one long-lived ssh session per machine
running :mod:`cmqueue.machine.session_server`, which runs many jobs without a new ssh client per job.

A fresh ssh connection costs ~15 ms of CPU here even over a master; a job sent over an
open session costs a JSON line. Knows nothing of Celery.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..core import clock

BOOTSTRAP = "import sys,json;exec(json.loads(sys.stdin.buffer.readline()))"
SERVER_SOURCE = (Path(__file__).with_name("session_server.py")).read_text()


def json_lines(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    """The JSON objects a remote program writes, one a line, until its output ends
    (a line that is not JSON, say a login banner, is skipped)."""
    for line in stream:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict):
            yield msg


class SessionDead(Exception):
    """The session ended (ssh exited or the machine went away)."""


@dataclass
class _Job:
    out: IO[bytes]
    err: IO[bytes]
    done: threading.Event = field(default_factory=threading.Event)
    code: int | None = None
    t0: float | None = None
    t1: float | None = None
    message: str = ""


class RemoteSession:
    """One running session server on one machine; thread-safe ``run`` and ``kill``."""

    def __init__(self, argv: list[str], start_timeout: float = 30) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self._write_lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._hello = threading.Event()
        #: Seconds to add to the machine's clock to get this host's (measured at hello, so
        #: a machine whose clock is off still gets jobs' start and end times right).
        self.clock_offset = 0.0
        self.dead = threading.Event()
        self.error = ""
        self._send_line(json.dumps(SERVER_SOURCE))   # the session server's code, read by BOOTSTRAP
        self._reader = threading.Thread(target=self._read, name="cmq-session-reader", daemon=True)
        self._reader.start()
        if not self._hello.wait(start_timeout) or self.dead.is_set():
            self.close()
            raise SessionDead(self.error or "session server did not start")

    def _send(self, msg: dict[str, Any]) -> None:
        self._send_line(json.dumps(msg, separators=(",", ":")))

    def _send_line(self, line: str) -> None:
        line += "\n"
        try:
            with self._write_lock:
                assert self.proc.stdin is not None
                self.proc.stdin.write(line.encode())
                self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as e:
            self._die(f"session write failed: {e}")
            raise SessionDead(self.error) from None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for msg in json_lines(self.proc.stdout):
            op = msg.get("op")
            if op == "hello":
                if "t" in msg:
                    self.clock_offset = clock.now() - float(msg["t"])
                self._hello.set()
                continue
            job = self._jobs.get(msg.get("id", ""))
            if job is None:
                continue
            if op == "o":
                job.out.write(base64.b64decode(msg["d"]))
            elif op == "e":
                job.err.write(base64.b64decode(msg["d"]))
            elif op == "done":
                job.code = msg["code"]
                job.t0, job.t1 = (self._local(msg.get(k)) for k in ("t0", "t1"))
                job.message = msg.get("msg", "")
                if job.message:
                    job.err.write((job.message + "\n").encode())
                job.done.set()
        err = b""
        if self.proc.stderr is not None:
            try:
                err = self.proc.stderr.read()
            except (OSError, ValueError):
                pass
        lines = err.decode("utf-8", "replace").strip().splitlines()
        self._die(lines[-1] if lines else f"ssh exited with {self.proc.wait()}")
        self._hello.set()

    def _local(self, remote: float | None) -> float | None:
        """A time of the machine's clock on this host's clock."""
        return None if remote is None else float(remote) + self.clock_offset

    def _die(self, why: str) -> None:
        if self.dead.is_set():
            return
        self.error = why
        self.dead.set()
        with self._lock:
            for job in self._jobs.values():
                job.done.set()

    def run(self, job_id: str, cmd: str, cwd: str, env: dict[str, str], out: IO[bytes], err: IO[bytes],
            on_start: Callable[[], None] | None = None) -> tuple[int, float | None, float | None]:
        """Run one job; blocks until it ends. Raises SessionDead if the session ends first."""
        if self.dead.is_set():
            raise SessionDead(self.error)
        job = _Job(out=out, err=err)
        with self._lock:
            self._jobs[job_id] = job
        try:
            self._send({"op": "run", "id": job_id, "cmd": cmd, "cwd": cwd, "env": env})
            if on_start:
                on_start()
            job.done.wait()
        finally:
            with self._lock:
                self._jobs.pop(job_id, None)
        if job.code is None:
            raise SessionDead(self.error)
        return job.code, job.t0, job.t1

    def kill(self, job_id: str, grace: float) -> None:
        """Ask the session server to kill a job's process group (TERM, then KILL after ``grace``)."""
        try:
            self._send({"op": "kill", "id": job_id, "grace": grace})
        except SessionDead:
            pass

    def close(self) -> None:
        """End the session (the session server stops whatever still runs)."""
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._die("closed")

