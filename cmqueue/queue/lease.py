"""One worker per machine, one recorder per history store: leases in the broker's Redis.

A worker takes its machine's lease before it consumes anything and keeps it alive with
its heartbeat; the recorder does the same for its history store. A second one (say
`cmq up` was killed between starting a worker and recording it, then run again) refuses
to start and names the holder, so a machine's slot cap is never doubled and no process
is left running unrecorded. A lease whose holder died on this host is taken over at
once; one held from another host is waited for until it expires.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from ..core import defaults
from ..core.errors import ServiceError

# KEYS: lease. ARGV: new value, ttl, the value it may replace ('' for none).
_TAKE = """
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return ''
end
return cur
"""
# KEYS: lease. ARGV: our value, ttl. 1 when still ours (and renewed).
_KEEP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('EXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
_DROP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lease_key(name: str) -> str:
    """Redis key of lease ``name``."""
    return f"cmq:lease:{name}"


def worker_lease(machine: str) -> str:
    """The lease name of ``machine``'s worker."""
    return f"worker:{machine}"


def group_lease(group: str, inventory: os.PathLike, home: os.PathLike) -> str:
    """The lease name of worker process ``group`` of ``inventory`` (its path) and cmq home
    ``home`` on this host: one process per name, inventory and home."""
    place = f"{os.path.realpath(inventory)}\0{os.path.realpath(home)}"
    where = hashlib.sha256(place.encode()).hexdigest()[:12]
    return f"workers:{socket.gethostname()}:{where}:{group}"


def recorder_lease(history: str) -> str:
    """The lease name of the recorder of history store ``history`` (its URL)."""
    return "recorder:" + hashlib.sha256(history.encode()).hexdigest()[:16]


def process_started(pid: int) -> float | None:
    """Start time of a running process; None when it is gone or a zombie (a killed
    process nobody reaped yet is dead for us: PID 1 of a container may never reap it)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.Error:
        return None


def is_running(pid: int, created: float) -> bool:
    """Whether process ``pid`` runs and is the one started at ``created`` (not a later
    process that got the same pid)."""
    started = process_started(pid)
    return started is not None and abs(started - created) < 1.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: host name, pid and the process's start time."""

    host: str
    pid: int
    created: float

    @classmethod
    def me(cls) -> Holder:
        """This process."""
        return cls(socket.gethostname(), os.getpid(), process_started(os.getpid()) or time.time())

    @classmethod
    def parse(cls, raw: Any) -> Holder | None:
        """From the stored JSON (bytes or str); None when unreadable."""
        try:
            d = json.loads(raw)
            return cls(str(d["host"]), int(d["pid"]), float(d["created"]))
        except (TypeError, ValueError, KeyError):
            return None

    def dump(self) -> str:
        """The stored JSON."""
        return json.dumps(asdict(self), separators=(",", ":"))

    def alive(self) -> bool | None:
        """Whether the holder still runs: known only on its own host (else None)."""
        if self.host != socket.gethostname():
            return None
        return is_running(self.pid, self.created)

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


def holder(client: Any, name: str) -> Holder | None:
    """The current holder of lease ``name``, if any."""
    return Holder.parse(client.get(lease_key(name)))


class Lease:
    """Lease ``name`` held by this process; ``what`` names the role in errors
    ("worker m1: another one runs ...")."""

    def __init__(self, client: Any, name: str, what: str, ttl: int = defaults.LEASE_TTL) -> None:
        self.client = client
        self.name = name
        self.what = what
        self.ttl = int(ttl)
        self.me = Holder.me().dump()
        self._take = client.register_script(_TAKE)
        self._keep = client.register_script(_KEEP)
        self._drop = client.register_script(_DROP)

    def take(self, wait: float | None = None) -> None:
        """Take the lease, or raise ServiceError naming the worker that holds it. A dead
        holder on this host is replaced; one on another host is waited for (up to
        ``wait`` seconds, default the lease's TTL and a little)."""
        key = lease_key(self.name)
        deadline = time.monotonic() + (self.ttl + 2 if wait is None else wait)
        replace = ""
        while True:
            current = self._take(keys=[key], args=[self.me, self.ttl, replace])
            if not current:
                return
            current = current.decode() if isinstance(current, bytes) else current
            other = Holder.parse(current)
            state = other.alive() if other else False
            if state is False:
                replace = current        # its holder died: take it over, unless it changed meanwhile
                continue
            if state is True or time.monotonic() >= deadline:
                raise ServiceError(f"{self.what}: another one runs ({other}); not starting a second one")
            time.sleep(0.5)

    def retake(self) -> bool:
        """Take the lease again when nobody holds it (it expired while this process could
        not renew it); False when another process holds it."""
        return not self._take(keys=[lease_key(self.name)], args=[self.me, self.ttl, ""])

    def keep(self) -> bool:
        """Renew the lease; False when it is no longer ours."""
        return bool(self._keep(keys=[lease_key(self.name)], args=[self.me, self.ttl]))

    def release(self) -> None:
        """Give the lease up (only if it is still ours)."""
        self._drop(keys=[lease_key(self.name)], args=[self.me])

    def hold(self, on_error: Any = None) -> threading.Thread:
        """Renew the lease every third of its TTL in a daemon thread (for a process that
        has no heartbeat of its own); ``on_error(exc)`` is told of broker errors."""
        def renew() -> None:
            while True:
                time.sleep(self.ttl / 3)
                try:
                    self.keep()
                except Exception as e:  # noqa: BLE001 - the broker may be restarting
                    if on_error:
                        on_error(e)

        thread = threading.Thread(target=renew, name=f"cmq-lease-{self.name}", daemon=True)
        thread.start()
        return thread
