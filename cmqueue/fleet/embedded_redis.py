"""The Redis that ``cmq up`` runs on this machine when no broker is named.

One server by default: a generated password, AOF (settings: ``redis_fsync``), data under
``$CMQ_HOME/redis``; with ``cmq up --tls`` on TLS only, certificates of a private CA checked
both ways (see :mod:`cmqueue.fleet.broker_tls`), and so it stays once recorded until ``cmq
up --no-tls``. With ``cmq up --ha``, a Sentinel group to try a failover on one machine: a
primary, a replica and three sentinels, all on 127.0.0.1, all with the generated password
(the sentinels too), AOF with fsync ``always``; the broker is then the group
(``sentinel://...?master=cmq``), and every client follows its current primary.

Each server's config is written 0600 (it holds the password). A group's configs are
written once: Redis and the sentinels rewrite them as roles change after a failover, and a
restart must keep what they wrote. Every process is recorded with its pid and start time;
:class:`EmbeddedRedis` is told how to spawn, read and save records by ``Services``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config.broker import BrokerAddress, parse, render
from ..config.settings import Settings
from ..core import defaults
from ..core.errors import ConfigError, ServiceError, UsageError
from ..core.files import private_dir, write_private
from ..core.redact import redact_url
from ..queue.broker import group_settled
from .broker_tls import bind_address, bind_line, local_url, redis_tls_lines, tls_problem
from .local_servers import free_port, ping, redis_binary
from .private_ca import PrivateCA

#: The name the sentinels of ``cmq up --ha`` monitor the group by.
GROUP = "cmq"
#: Sentinels of the group, and how many must agree that the primary is down.
SENTINELS = 3
QUORUM = 2
#: Milliseconds without an answer after which a sentinel deems the primary down.
DOWN_AFTER_MS = 2000
#: Milliseconds a failover may take before another is tried.
FAILOVER_TIMEOUT_MS = 10000
#: Seconds ``cmq up`` waits for a server, or for the group to name its primary.
START_TIMEOUT = 30
#: The group's members in the order they start.
MEMBERS = ("primary", "replica", *(f"sentinel-{i}" for i in range(1, SENTINELS + 1)))

#: ``Services._spawn``: starts argv with its output to a log file (``private``: umask 077).
Spawn = Callable[..., dict[str, Any]]


def server_lines(port: int, password: str, data: Path, fsync: str, replica_of: int | None = None) -> list[str]:
    """redis.conf of one server on 127.0.0.1:``port``; a replica of 127.0.0.1:``replica_of``."""
    lines = [f"port {port}", "bind 127.0.0.1", "protected-mode yes", f"requirepass {password}",
             f"masterauth {password}", "appendonly yes", f"appendfsync {fsync}", 'save ""', f"dir {data}",
             "daemonize no", f"logfile {data / 'redis.log'}"]
    if replica_of:
        lines.append(f"replicaof 127.0.0.1 {replica_of}")
    return [*lines, ""]


def sentinel_lines(port: int, password: str, data: Path, primary_port: int) -> list[str]:
    """sentinel.conf of a sentinel on 127.0.0.1:``port`` that monitors the group."""
    return [f"port {port}", "bind 127.0.0.1", "protected-mode yes", f"requirepass {password}",
            f"sentinel sentinel-pass {password}", f"dir {data}", "daemonize no",
            f"logfile {data / 'sentinel.log'}", f"sentinel monitor {GROUP} 127.0.0.1 {primary_port} {QUORUM}",
            f"sentinel auth-pass {GROUP} {password}", f"sentinel down-after-milliseconds {GROUP} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {GROUP} {FAILOVER_TIMEOUT_MS}", f"sentinel parallel-syncs {GROUP} 1", ""]


def last_primary(root: Path, ports: dict[str, int]) -> str:
    """The member the sentinels last made primary, read from their configs under ``root``
    (the one with the highest config epoch; ``primary`` when none says)."""
    best, epoch = "primary", -1
    for member in MEMBERS:
        conf = root / member / "sentinel.conf"
        if not member.startswith("sentinel") or not conf.exists():
            continue
        port, this = None, 0
        for line in conf.read_text().splitlines():
            words = line.split()
            if words[:3] == ["sentinel", "monitor", GROUP] and len(words) >= 5:
                port = int(words[4])
            elif words[:3] == ["sentinel", "config-epoch", GROUP] and len(words) == 4:
                this = int(words[3])
        named = next((m for m, p in ports.items() if p == port and not m.startswith("sentinel")), None)
        if named and this > epoch:
            best, epoch = named, this
    return best


def group_url(password: str, ports: dict[str, int]) -> str:
    """The broker URL of the group: its sentinels, the group's name, the password of both."""
    hosts = tuple(("127.0.0.1", ports[m]) for m in MEMBERS if m.startswith("sentinel"))
    return render(BrokerAddress("sentinel", hosts, password=password, master=GROUP, sentinel_password=password))


class EmbeddedRedis:
    """Starts the embedded Redis (one server, or the ``--ha`` group) and knows its records."""

    def __init__(self, settings: Settings, home: Path, spawn: Spawn, records: Callable[[], dict[str, Any]],
                 save: Callable[[dict[str, Any]], None], alive: Callable[[dict[str, Any] | None], bool]) -> None:
        self.settings, self.home = settings, home
        self.spawn, self.records, self.save, self.alive = spawn, records, save, alive

    # -- one server -----------------------------------------------------------------------
    def config(self, configured: str | None, tls: bool | None = None) -> tuple[str, Path]:
        """The URL and config file of the one server cmq runs: at the local URL the user
        named (it must have a password), else the embedded one (port and password made
        once and recorded, so that every later command finds them). ``tls``: the embedded
        one serves TLS only (None: as recorded)."""
        rec = {} if configured else (self.records().get("redis") or {})
        tls = bool(rec.get("tls")) if tls is None else tls
        if configured:
            if parse(configured).tls:
                raise ConfigError(f"broker {redact_url(configured)} does not answer, and cmq starts a local Redis "
                                  "on TLS only as its own: start that one yourself, or name no broker and "
                                  "run `cmq up --tls`")
            parts = urlsplit(configured)
            port, password, url = parts.port or 6379, parts.password or "", configured
        else:
            port = rec.get("port") or free_port(defaults.EMBEDDED_REDIS_PORT)
            password = rec.get("password") or secrets.token_urlsafe(32)
            url = f"redis://:{password}@127.0.0.1:{port}/0"
        data = private_dir(self.home / "redis")
        lines = server_lines(port, password, data, str(self.settings.get("redis_fsync")))
        if tls:
            problem = tls_problem(redis_binary())
            if problem:
                raise ServiceError(problem)
            ca = PrivateCA(self.home)
            lines = [*redis_tls_lines(ca, port, self.settings),
                     *(ln for ln in lines if not ln.startswith(("port ", "bind ")))]
            url = local_url(ca, password, port)
        else:
            lines = [bind_line(self.settings, tls=False) if ln.startswith("bind ") else ln for ln in lines]
        conf = write_private(data / "redis.conf", "\n".join(lines))
        if not configured:
            state = self.records()
            state["redis"] = {**(state.get("redis") or {}), "url": url, "port": port, "password": password,
                              "tls": tls, "bind": bind_address(self.settings)}
            self.save(state)
        return url, conf

    def start_one(self, configured: str | None, tls: bool | None = None) -> str:
        """Start the one server (on TLS only with ``tls``; None: as recorded); its URL once
        it answers."""
        url, conf = self.config(configured, tls)
        rec = self.spawn([redis_binary(), str(conf)], self.settings.log_dir / "redis.out", private=True)
        mode = {k: v for k, v in (self.records().get("redis") or {}).items() if k in ("tls", "bind")}
        rec.update(url=url, port=urlsplit(url).port, password=urlsplit(url).password, **({} if configured else mode))
        self._wait(url, [rec], f"Redis did not start on port {urlsplit(url).port}; see {conf.parent / 'redis.log'}")
        state = self.records()
        state["redis"] = rec
        self.save(state)
        return url

    # -- the --ha group ---------------------------------------------------------------------
    def start_group(self) -> tuple[str, bool]:
        """Start what is not running of the group (made on first use); (url, started_now)."""
        state = self.records()
        rec = state.get("redis") or {}
        if rec and not rec.get("ha"):
            raise UsageError(f"cmq up --ha: {self.home} records an embedded Redis that is one server "
                             f"(data in {self.home / 'redis'}); stop it with `cmq down` and use another "
                             "CMQ_HOME for the group")
        password = rec.get("password") or secrets.token_urlsafe(32)
        ports: dict[str, int] = dict(rec.get("ports") or {})
        start = defaults.EMBEDDED_REDIS_PORT + 10
        for member in MEMBERS:
            if member not in ports:
                ports[member] = free_port(max([start, *(p + 1 for p in ports.values())]))
        url = group_url(password, ports)
        members: dict[str, Any] = dict(rec.get("members") or {})
        state["redis"] = {"ha": True, "url": url, "password": password, "ports": ports, "members": members}
        self.save(state)
        started = []
        # A server that was primary before the last failover starts as a replica of the
        # last primary: a sentinel that did not hear of the failover may name it for a
        # moment, and it must refuse writes then (clients ask the sentinels again).
        head = last_primary(self.home / "redis-ha", ports)
        for member in MEMBERS:
            if self.alive(members.get(member)):
                continue
            data = private_dir(self.home / "redis-ha" / member)
            if member.startswith("sentinel"):
                conf, lines = data / "sentinel.conf", sentinel_lines(ports[member], password, data, ports["primary"])
                argv = [redis_binary(), str(conf), "--sentinel"]
            else:
                replica_of = ports["primary"] if member == "replica" else None
                conf, lines = data / "redis.conf", server_lines(ports[member], password, data, "always", replica_of)
                argv = [redis_binary(), str(conf)]
                if conf.exists() and member != head:
                    argv += ["--replicaof", "127.0.0.1", str(ports[head])]
            if not conf.exists():            # rewritten by Redis and the sentinels since: kept
                write_private(conf, "\n".join(lines))
            members[member] = {**self.spawn(argv, self.settings.log_dir / f"redis-{member}.out", private=True),
                               "port": ports[member]}
            started.append(members[member])
            self.save(state)                 # recorded at once: `cmq down` finds it
        if started:
            self._wait(url, started, f"the Redis group did not name a primary within {START_TIMEOUT} s; "
                                     f"see the logs in {self.home / 'redis-ha'}", settled=True)
        return url, bool(started)

    def _wait(self, url: str, recs: list[dict[str, Any]], message: str, settled: bool = False) -> None:
        """Wait until ``url`` answers PING (``settled``: and every sentinel names the same
        primary, see :func:`group_settled`); ServiceError with ``message`` when it does not
        within the time, or a process of ``recs`` died."""
        deadline = time.monotonic() + START_TIMEOUT
        while ping(url) or (settled and group_settled(url)):
            if time.monotonic() > deadline or not all(self.alive(r) for r in recs):
                raise ServiceError(message)
            time.sleep(0.1)

    # -- records ---------------------------------------------------------------------------
    @staticmethod
    def processes(rec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """(name, process record) of each process of the recorded Redis (``redis``, or
        ``redis primary`` ... ``redis sentinel-3``)."""
        if rec.get("ha"):
            return [(f"redis {m}", r) for m, r in (rec.get("members") or {}).items()]
        return [("redis", rec)] if rec.get("pid") else []

    @staticmethod
    def kept(rec: dict[str, Any]) -> dict[str, Any]:
        """What stays recorded after ``cmq down``: where the data is found again."""
        return {k: v for k, v in rec.items() if k in ("url", "port", "password", "ha", "ports", "tls", "bind")}

