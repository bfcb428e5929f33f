"""A Redis Sentinel group for tests and benchmarks, on 127.0.0.1: a primary, a replica and
three sentinels (real redis-server processes, sentinels run with ``--sentinel``), one
generated password on all, AOF with fsync always. The primary can be SIGKILLed; the
sentinels then promote the replica."""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from cmqueue.cli.demo_machines import random_free_port, wait_port
from cmqueue.core.files import write_private
from cmqueue.fleet.embedded_redis import GROUP, MEMBERS, group_url, sentinel_lines, server_lines
from cmqueue.fleet.local_servers import redis_binary
from tests.support.redis_server import stop_process


@dataclass
class RedisGroup:
    """A Sentinel group of real processes, stopped by pid."""

    root: Path
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The group's sentinel:// URL (what CMQ_BROKER would carry)."""
        return group_url(self.password, self.ports)

    def inventory_broker(self, password_file: Path) -> dict:
        """``broker:`` of an inventory in the mapping form, the password in a 0600 file."""
        write_private(password_file, self.password + "\n")
        return {"sentinels": [f"127.0.0.1:{self.ports[m]}" for m in MEMBERS if m.startswith("sentinel")],
                "master": GROUP, "password_file": str(password_file), "sentinel_password": self.password}

    def start(self) -> None:
        """Start every member not running (made on first start; configs kept after)."""
        for member in MEMBERS:
            if member not in self.ports:
                self.ports[member] = random_free_port()
        for member in MEMBERS:
            if member in self.procs and self.procs[member].poll() is None:
                continue
            data = self.root / member
            data.mkdir(parents=True, exist_ok=True)
            if member.startswith("sentinel"):
                conf = data / "sentinel.conf"
                lines = sentinel_lines(self.ports[member], self.password, data, self.ports["primary"])
                extra = ["--sentinel"]
            else:
                conf = data / "redis.conf"
                lines = server_lines(self.ports[member], self.password, data, "always",
                                     self.ports["primary"] if member == "replica" else None)
                extra = []
            if not conf.exists():
                write_private(conf, "\n".join(lines))
            self.procs[member] = subprocess.Popen([redis_binary(), str(conf), *extra], stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL, start_new_session=True)
            wait_port("127.0.0.1", self.ports[member], proc=self.procs[member])
        self.wait_primary()
        self.wait_replica()

    def primary(self) -> str:
        """The member that is primary now, as the sentinels say ('' when none is known)."""
        for member in MEMBERS:
            if not member.startswith("sentinel") or self.procs[member].poll() is not None:
                continue
            try:
                client = redis.Redis(port=self.ports[member], password=self.password, socket_timeout=2)
                host, port = client.sentinel_get_master_addr_by_name(GROUP)
                client.close()
            except (redis.RedisError, TypeError):
                continue
            return next((m for m, p in self.ports.items() if p == int(port)), "")
        return ""

    def wait_primary(self, not_: str = "", timeout: float = 60) -> str:
        """Wait until the sentinels name a primary (other than ``not_``) that answers with
        a connected replica, or the replica alone when it is the only server left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.primary()
            if now and now != not_ and self.procs[now].poll() is None:
                try:
                    info = redis.Redis(port=self.ports[now], password=self.password, socket_timeout=2).info(
                        "replication")
                    if info.get("role") == "master":
                        return now
                except redis.RedisError:
                    pass
            time.sleep(0.2)
        raise AssertionError(f"no primary (other than {not_!r}) within {timeout} s")

    def wait_replica(self, timeout: float = 60) -> None:
        """Wait until the sentinels know a replica of the primary that is up and in sync
        (after a restart of the member that was killed), so that another failover can be
        made."""
        deadline = time.monotonic() + timeout
        sentinel = next(m for m in MEMBERS if m.startswith("sentinel"))
        client = redis.Redis(port=self.ports[sentinel], password=self.password, socket_timeout=2,
                             decode_responses=True)
        try:
            while time.monotonic() < deadline:
                try:
                    replicas = client.sentinel_slaves(GROUP)
                except redis.RedisError:
                    replicas = []
                if any("s_down" not in r.get("flags", "") and "disconnected" not in r.get("flags", "")
                       and r.get("master-link-status") == "ok" for r in replicas):
                    return
                time.sleep(0.2)
        finally:
            client.close()
        raise AssertionError(f"no replica in sync within {timeout} s")

    def kill_primary(self) -> str:
        """SIGKILL the current primary; returns which member it was."""
        victim = self.primary()
        self.procs[victim].kill()
        self.procs[victim].wait(timeout=30)
        return victim

    def crash(self) -> None:
        """SIGKILL the primary (as :class:`RedisServer` crashes its one server)."""
        self.kill_primary()

    def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL after 10 s)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()                               # all at once, then each waited for
        for proc in self.procs.values():
            stop_process(proc)
        self.procs.clear()
