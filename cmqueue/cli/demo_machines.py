"""The demo's machines: real sshd daemons on loopback addresses (127.0.0.x), each with its
own host key, port and work directory, a client key and a known_hosts filled by
ssh-keyscan (host keys stay checked). Every process is started here and stopped by pid.
The tests, the benchmarks and the README's examples build their clusters with it too."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from ..core.files import write_private
from ..fleet.local_servers import free_port, port_free


def sshd_binary() -> str | None:
    """Path of sshd, or None when openssh-server is not installed."""
    return shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.path.exists(p)), None)


def random_free_port(host: str = "127.0.0.1") -> int:
    """A free port on ``host`` from a random start (so parallel runs do not collide)."""
    return free_port(20000 + secrets.randbelow(20000), host=host, tries=2000)


def wait_port(host: str, port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """Block until something accepts on host:port (or raise)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``pid`` and all its descendants. A SIGKILL comes to all of them as
    at once: they are stopped first, so that none sees another die and acts on it (a
    job's shell reporting its command killed, as if the command had failed)."""
    try:
        parent = psutil.Process(pid)
        procs = [*parent.children(recursive=True), parent]
    except psutil.Error:
        return
    signals = (signal.SIGSTOP, sig) if sig == signal.SIGKILL else (sig,)
    for each in signals:
        for p in procs:
            try:
                p.send_signal(each)
            except psutil.Error:
                pass
    psutil.wait_procs(procs, timeout=5)


@dataclass
class Sshd:
    """One sshd daemon standing in for a machine."""

    name: str
    address: str
    port: int
    root: Path
    authorized_keys: Path
    proc: subprocess.Popen | None = None
    #: A network namespace to run the daemon in (its address is then on a veth there).
    netns: str | None = None
    #: Variables set in every session (sshd's SetEnv), e.g. libfaketime's for a clock that is off.
    env: dict[str, str] = field(default_factory=dict)

    @property
    def workdir(self) -> Path:
        """The machine's work directory."""
        return self.root / "work"

    def start(self) -> None:
        """Write the config and host key, start sshd in the foreground, wait for the port."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(exist_ok=True)
        key = self.root / "ssh_host_ed25519_key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {self.address}:{self.port}", f"HostKey {key}", f"PidFile {self.root}/sshd.pid",
            f"AuthorizedKeysFile {self.authorized_keys}", "UsePAM no", "StrictModes no",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password", "MaxStartups 200:30:400", "MaxSessions 10",
            " ".join(["SetEnv SHLVL=1", *(f"{k}={v}" for k, v in self.env.items())]),
            "LogLevel ERROR", "Subsystem sftp internal-sftp", "",
        ]))
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        with open(self.root / "sshd.log", "ab") as log:          # the daemon keeps its own copy
            self.proc = subprocess.Popen([*prefix, sshd_binary(), "-D", "-e", "-f", str(config)],
                                         stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        wait_port(self.address, self.port, proc=self.proc)

    def stop(self) -> None:
        """Kill the daemon and every session it runs (the machine 'goes down')."""
        if self.proc is not None:
            kill_tree(self.proc.pid)
            self.proc.wait(timeout=30)
            self.proc = None

    @property
    def running(self) -> bool:
        """Whether the daemon runs."""
        return self.proc is not None and self.proc.poll() is None


class LoopbackCluster:
    """``n`` sshd machines on 127.0.0.(first)..., a client key and a known_hosts file.
    ``subnet`` (say "127.1") puts them on SUBNET.X.Y instead, 200 to a /24, for fleets
    of hundreds."""

    def __init__(self, root: Path, n: int = 3, slots: int = 2, first: int = 11, subnet: str | None = None) -> None:
        self.root = Path(root)
        self.slots = slots
        self.client = self.root / "client"
        self.key = self.client / "id_ed25519"
        self.known_hosts = self.client / "known_hosts"
        self.authorized = self.client / "authorized_keys"
        addresses = ([f"{subnet}.{(first + i) // 200}.{(first + i) % 200 + 1}" for i in range(n)] if subnet
                     else [f"127.0.0.{first + i}" for i in range(n)])
        port = self._common_port(addresses)
        self.machines = [Sshd(name=f"m{i + 1}", address=a, port=port, root=self.root / f"m{i + 1}",
                              authorized_keys=self.authorized) for i, a in enumerate(addresses)]

    @staticmethod
    def _common_port(addresses: list[str]) -> int:
        for _ in range(50):
            port = random_free_port(addresses[0])
            if all(port_free(a, port) for a in addresses):
                return port
        raise RuntimeError("no port free on every loopback address")

    def start(self) -> LoopbackCluster:
        """Create keys, start every sshd, and record their host keys with ssh-keyscan."""
        if sshd_binary() is None:
            raise RuntimeError("sshd not found (Debian: apt-get install openssh-server)")
        self.client.mkdir(parents=True, exist_ok=True)
        os.chmod(self.client, 0o700)
        if not self.key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        self.authorized.write_text(self.key.with_suffix(".pub").read_text())
        for m in self.machines:
            m.start()
        lines = []
        for m in self.machines:
            r = subprocess.run(["ssh-keyscan", "-t", "ed25519", "-p", str(m.port), m.address],
                               capture_output=True, text=True, timeout=30)
            lines += [ln for ln in r.stdout.splitlines() if ln and not ln.startswith("#")]
        self.known_hosts.write_text("\n".join(lines) + "\n")
        return self

    def add(self, name: str, address: str, netns: str | None = None) -> Sshd:
        """Add a machine at ``address`` (in namespace ``netns``) before :meth:`start`."""
        m = Sshd(name=name, address=address, port=self.machines[0].port, root=self.root / name,
                 authorized_keys=self.authorized, netns=netns)
        self.machines.append(m)
        return m

    def stop(self) -> None:
        """Stop every sshd."""
        for m in self.machines:
            m.stop()

    def machine(self, name: str) -> Sshd:
        """The sshd called ``name``."""
        return next(m for m in self.machines if m.name == name)

    def inventory(self, broker: str | None, labels: dict[str, list[str]] | None = None,
                  settings: dict | None = None, extra: dict | None = None, transport: str = "auto",
                  fields: dict | None = None, history: str | None = None,
                  machine_fields: dict[str, dict] | None = None) -> dict:
        """An inventory (as a dict) for these machines; ``fields`` go into ``defaults:``,
        ``machine_fields[name]`` into that machine's entry."""
        machines = {}
        for m in self.machines:
            entry = {"host": m.address, "port": m.port, "workdir": str(m.workdir)}
            if labels and m.name in labels:
                entry["labels"] = labels[m.name]
            entry.update((machine_fields or {}).get(m.name, {}))
            machines[m.name] = entry
        machines.update(extra or {})
        inv: dict = {
            "defaults": {"user": user_name(), "identity": str(self.key), "slots": self.slots,
                         "transport": transport,
                         "ssh_options": {"UserKnownHostsFile": str(self.known_hosts)}, **(fields or {})},
            "machines": machines,
        }
        if broker:
            inv["broker"] = broker
        if history:
            inv["history"] = history
        if settings:
            inv["settings"] = settings
        return inv

    def write_inventory(self, path: Path, broker: str | None, **kw) -> Path:
        """Write :meth:`inventory` as YAML to ``path`` (0600: the broker URL has a password)."""
        write_private(path, yaml.safe_dump(self.inventory(broker, **kw), sort_keys=False))
        return path


def user_name() -> str:
    """The name of the user this process runs as."""
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
