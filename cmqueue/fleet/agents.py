"""Agent mode: machines that run their own worker (``mode: agent`` in the inventory).

``cmq machines join NAME`` turns a machine reachable over ssh into a worker of this
cluster: it builds a wheelhouse of cmqueue and its dependencies here (machines need no
internet), sends it with the scripts of ``workers/`` and a config of the machine's own
(the broker URL with its password, 0600) to ``<workdir>/.cmq/agent/``, opens an ssh
tunnel so the worker reaches the broker on its own loopback (or, with ``broker_access:
tls``, sends the CA and a client certificate of its own to ``tls/``, 0600 in a 0700
folder, and the worker connects to the broker's address on TLS: see
:mod:`cmqueue.fleet.broker_tls`), and runs the bootstrap,
which installs a venv and starts ``cmq worker NAME`` under a supervisor. The worker
consumes the machine's queue, its labels' queues and the shared queue with the machine's
slots, runs jobs locally, and sends their events through the broker like any worker.
``cmq machines leave NAME`` undoes it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import yaml

from ..config.inventory import Machine
from ..config.settings import Settings
from ..core.errors import ConfigError, ServiceError, UsageError
from ..core.files import write_private
from ..machine import ssh
from ..queue.broker import connect
from ..transfer.machine_copy import Transfer, error_line, remote_path
from .machine_state import machine_key
from .services import Services

#: Where an agent's files live on its machine, under its workdir.
AGENT_DIR = ".cmq/agent"
SOURCE = Path(__file__).resolve().parents[2]
SCRIPTS = SOURCE / "workers"


def agent_machine(settings: Settings, name: str) -> Machine:
    """The inventory's machine ``name``, which must be an agent with a host."""
    machine = settings.inventory.machines.get(name)
    if machine is None:
        raise UsageError(f"no machine {name!r} in {settings.inventory.path}")
    if machine.mode != "agent":
        raise UsageError(f"machine {name}: join needs `mode: agent` in {settings.inventory.path} "
                         f"(it is {machine.mode}: `cmq up` runs its worker here)")
    if not machine.host:
        raise ConfigError(f"{settings.inventory.path}: machines.{name}.host: an agent needs a host to join over ssh")
    return machine


def build_wheelhouse(home: Path, python_version: str | None = None) -> Path:
    """Wheels of cmqueue (from this source tree) and of everything it needs on a Python
    of ``python_version`` (the machine's, as "3.11.2"), in ``home/wheelhouse``;
    dependencies already there are reused."""
    if not (SOURCE / "pyproject.toml").exists() or not SCRIPTS.is_dir():
        raise ConfigError(f"cmq machines join builds a wheel of cmqueue from its source tree; {SOURCE} "
                          "has no pyproject.toml and workers/ (install cmqueue from a checkout)")
    house = home / "wheelhouse"
    house.mkdir(parents=True, exist_ok=True)
    for old in house.glob("cmqueue-*.whl"):
        old.unlink()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    r = subprocess.run([*pip, "wheel", "--quiet", "--wheel-dir", str(house), "--find-links", str(house),
                        str(SOURCE)], capture_output=True, text=True)
    # Dependencies are chosen by markers such as python_full_version < "3.11.3": add what
    # the machine's own Python needs beyond this one's (wheels only).
    for _ in range(5):
        missing = missing_requirements(house, python_version) if r.returncode == 0 and python_version else []
        if not missing:
            break
        r = subprocess.run([*pip, "download", "--quiet", "--dest", str(house), "--find-links", str(house),
                            "--only-binary=:all:", f"--python-version={python_version}", *missing],
                           capture_output=True, text=True)
    if r.returncode != 0:
        raise ServiceError(f"building the wheelhouse for agents failed: {error_line(r.stderr.encode(), 'pip failed')}")
    return house


def missing_requirements(house: Path, python_version: str) -> list[str]:
    """Requirements of the wheels in ``house`` that apply on Python ``python_version``
    and that no wheel there provides."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = {"python_full_version": python_version,
           "python_version": ".".join(python_version.split(".")[:2]), "extra": ""}
    wheels = list(house.glob("*.whl"))
    have = {canonicalize_name(w.name.split("-")[0]) for w in wheels}
    missing: dict[str, str] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            meta = next((n for n in z.namelist() if n.endswith(".dist-info/METADATA")), None)
            text = z.read(meta).decode("utf-8", "replace") if meta else ""
        for line in text.splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            name = canonicalize_name(req.name)
            if name in have or (req.marker and not req.marker.evaluate(env)):
                continue
            missing[name] = f"{req.name}{req.specifier}"
    return sorted(missing.values())


def agent_config(settings: Settings, machine: Machine, broker: str | dict[str, Any]) -> str:
    """The inventory the agent's worker reads: itself as a local machine, the broker
    (a URL through the tunnel, or the mapping of a TLS broker) and this cluster's settings."""
    entry: dict[str, Any] = {"mode": "local", "workdir": machine.workdir, "slots": machine.slots}
    if machine.labels:
        entry["labels"] = list(machine.labels)
    if machine.env:
        entry["env"] = dict(machine.env)
    return yaml.safe_dump({"broker": broker, "settings": dict(settings.tunables),
                           "machines": {machine.name: entry}}, sort_keys=False)


class Agents:
    """Join and leave agent machines of one inventory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services = Services(settings)
        # Several machines may join at once (threads): the services record and the
        # wheelhouse are changed under this lock; the slow part, bootstrap, is not.
        self._lock = threading.Lock()

    def _transfer(self, machine: Machine) -> Transfer:
        return Transfer(machine.over_ssh(), None,
                        connect_timeout=int(self.settings.get("connect_timeout")))

    def _run(self, machine: Machine, script: str, *args: str, timeout: float = 300) -> str:
        """Run ``script`` of the agent directory with ``AGENT_DIR NAME args`` on the machine."""
        where = remote_path(machine.workdir, AGENT_DIR)
        argv = ssh.ssh_argv(machine.over_ssh(), ["sh", f"{where}/{script}", where, machine.name, *args])
        r = subprocess.run(argv, capture_output=True, timeout=timeout)
        if r.returncode != 0:
            raise ServiceError(f"machine {machine.name}: {script}: {error_line(r.stderr, f'exit code {r.returncode}')}")
        return r.stdout.decode(errors="replace")

    def _python_version(self, machine: Machine) -> str:
        """The full version of the machine's python3 ("3.11.2")."""
        argv = ssh.ssh_argv(machine.over_ssh(),
                            ["python3", "-c", "import platform; print(platform.python_version())"])
        r = subprocess.run(argv, capture_output=True, timeout=60)
        if r.returncode != 0:
            raise ServiceError(f"machine {machine.name}: python3 is needed there: "
                               f"{error_line(r.stderr, f'exit code {r.returncode}')}")
        version = r.stdout.decode().strip()
        mine = ".".join(map(str, sys.version_info[:2]))
        if not version.startswith(mine + "."):
            raise ServiceError(f"machine {machine.name}: its python3 is {version}, this one is {mine}: "
                               "wheels built here need the same minor version there")
        return version

    def join(self, name: str, timeout: float = 180) -> dict[str, Any]:
        """Make ``name`` an agent worker; returns what was done (``access``: tunnel with its
        ``port``, or tls with the broker's ``address``; supervisor, pid)."""
        machine = agent_machine(self.settings, name)
        tls = machine.broker_access == "tls"
        with self._lock:
            url, _ = self.services.ensure_redis()
            if tls:
                broker, files, where = self._tls_broker(machine, url)
                info: dict[str, Any] = {"access": "tls", "address": where}
            else:
                port = self.services.start_tunnel(machine, url)
                broker, files, info = _with_port(url, port), {}, {"access": "tunnel", "port": port}
        try:
            return self._install(machine, url, broker, files, info, timeout)
        except BaseException:
            if not tls:
                with self._lock:
                    self.services.stop_tunnel(name)      # a failed join leaves no tunnel behind
            raise

    def _tls_broker(self, machine: Machine, url: str) -> tuple[dict[str, Any], dict[str, Path], str]:
        """For an agent with ``broker_access: tls``: its ``broker:`` mapping, the files it
        gets (name in ``tls/`` -> file here) and the broker's host:port as it connects."""
        from ..config.broker import host_port, parse
        from .broker_tls import agent_broker, agent_files, bind_address, check_reachable
        from .private_ca import PrivateCA

        rec = self.services.records().get("redis") or {}
        address = parse(url)
        if not rec.get("tls") or rec.get("url") != url:
            now = ("the embedded one without TLS: `cmq down && cmq up --tls`" if rec.get("url") == url
                   else "named, not embedded: use broker_access: tunnel")
            raise ConfigError(f"machine {machine.name}: broker_access: tls needs the Redis that `cmq up --tls` runs "
                              f"(cmq gives agents certificates of its own CA); the broker here is {now}")
        host = check_reachable(self.settings, machine.host, machine.name)
        if rec.get("bind", "127.0.0.1") != bind_address(self.settings):
            raise ServiceError(f"machine {machine.name}: the broker listens on {rec.get('bind', '127.0.0.1')}, "
                               f"settings.broker_bind says {host}: `cmq down && cmq up` to listen there")
        port = address.hosts[0][1]
        files = agent_files(PrivateCA(self.settings.home), machine.name)
        return agent_broker(address.password or "", host, port), files, host_port(host, port)

    def _install(self, machine: Machine, url: str, broker: str | dict[str, Any], files: dict[str, Path],
                 info: dict[str, Any], timeout: float) -> dict[str, Any]:
        name = machine.name
        python_version = self._python_version(machine)
        transfer = self._transfer(machine)
        if files:
            self._private_folder(machine, "tls")
        with self._lock, tempfile.TemporaryDirectory(prefix="cmq-agent-") as tmp:
            house = build_wheelhouse(self.settings.home, python_version)
            stage = Path(tmp)
            write_private(stage / "cmq.yaml", agent_config(self.settings, machine, broker))
            for script in ("bootstrap.sh", "supervise.sh", "leave.sh"):
                (stage / script).write_bytes((SCRIPTS / script).read_bytes())
            transfer.put(house, f"{AGENT_DIR}/wheelhouse", recursive=True)
            for f in sorted(stage.iterdir()):
                transfer.put(f, f"{AGENT_DIR}/{f.name}")
            for there, here in sorted(files.items()):
                transfer.put(here, f"{AGENT_DIR}/tls/{there}")
        since = time.time()
        said = self._run(machine, "bootstrap.sh", timeout=600)
        supervisor = next((ln.split(":", 1)[1].strip() for ln in said.splitlines()
                           if ln.startswith("supervisor:")), "?")
        state = self._wait_consuming(name, url, since, timeout)
        info = {**info, "supervisor": supervisor, "pid": state.get("pid"), "joined": time.time()}
        with self._lock:
            self.services.record_agent(name, info)
        return info

    def _private_folder(self, machine: Machine, folder: str) -> None:
        """Make ``folder`` of the agent directory on the machine, 0700 and empty, before
        keys are sent into it."""
        where = f"{remote_path(machine.workdir, AGENT_DIR)}/{folder}"
        script = 'umask 077 && rm -rf "$1" && mkdir -p "$1" && chmod 700 "$1"'
        r = subprocess.run(ssh.ssh_argv(machine.over_ssh(), ["sh", "-c", script, "sh", where]),
                           capture_output=True, timeout=120)
        if r.returncode != 0:
            raise ServiceError(f"machine {machine.name}: cannot make {where}: "
                               f"{error_line(r.stderr, f'exit code {r.returncode}')}")

    def _wait_consuming(self, name: str, url: str, since: float, timeout: float) -> dict[str, str]:
        client = connect(url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                info = {k.decode(): v.decode() for k, v in client.hgetall(machine_key(name)).items()}
                if info.get("state") == "consuming" and float(info.get("since", 0)) >= since:
                    return info
                time.sleep(0.2)
        finally:
            client.close()
        raise ServiceError(f"machine {name}: its worker did not start consuming within {timeout:g}s; "
                           f"see {self.settings.inventory.machines[name].workdir}/{AGENT_DIR}/worker.log there")

    def leave(self, name: str) -> None:
        """Stop ``name``'s worker and remove its config there; close its tunnel."""
        machine = agent_machine(self.settings, name)
        try:
            self._run(machine, "leave.sh", timeout=120)
        finally:
            self.services.stop_tunnel(name)


def _with_port(url: str, port: int) -> str:
    """``url`` pointing at 127.0.0.1:``port`` instead of its own host and port."""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(url)
    auth = u.netloc.rsplit("@", 1)[0] + "@" if "@" in u.netloc else ""
    return urlunsplit((u.scheme, f"{auth}127.0.0.1:{port}", u.path, u.query, u.fragment))
