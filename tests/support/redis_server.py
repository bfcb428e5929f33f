"""A private redis-server for tests and benchmarks: a free loopback port, a password, AOF
with the fsync policy asked for, and a crash (SIGKILL) that loses what was not written."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cmqueue.cli.demo_machines import random_free_port, wait_port
from cmqueue.core.files import write_private
from cmqueue.fleet.local_servers import redis_binary


@dataclass
class RedisServer:
    """A private redis-server on a free loopback port, with a password."""

    root: Path
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    aof: bool = True
    fsync: str = "everysec"
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """redis:// URL with the password."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart, keeping the port, password and AOF data)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = random_free_port()
        conf = write_private(self.root / "redis.conf", "\n".join([
            f"port {self.port}", "bind 127.0.0.1", f"requirepass {self.password}",
            f"appendonly {'yes' if self.aof else 'no'}", f"appendfsync {self.fsync}", 'save ""',
            f"dir {self.root}", f"logfile {self.root / 'redis.log'}", "",
        ]))
        self.proc = subprocess.Popen([redis_binary(), str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port("127.0.0.1", self.port, proc=self.proc)

    def crash(self) -> None:
        """SIGKILL the server: it writes nothing more (what its fsync policy had not
        written is gone)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def stop(self) -> None:
        """Kill the server (SIGTERM: it writes its AOF and exits)."""
        stop_process(self.proc)
        self.proc = None


def stop_process(proc: subprocess.Popen | None, grace: float = 10) -> None:
    """SIGTERM ``proc`` (a server writes what it must and exits), SIGKILL after ``grace`` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
