"""Vagrant test clusters: ``cmq vagrant up N`` boots N VMs and adds them as machines.

Everything lives beside the inventory (say ``cmq.yaml``):

- ``cmq.vagrant/Vagrantfile``: rendered from ``templates/Vagrantfile.template``;
- ``cmq.vagrant/cluster.json``: what was asked (count, box, slots, provider, mode);
- ``cmq.vagrant/known_hosts``: the VMs' host keys, pinned when they were created;
- ``cmq.vagrant.yaml``: the VMs as machines vm1..vmN, which ``inventory.load`` merges
  into the inventory. It is written only once the VMs answer, and removed by destroy.

Vagrant is driven through python-vagrant; ``vagrant ssh-config`` gives each VM's address,
user and key. Vagrant's own ssh settings switch host key checking off, so cmq does not
use them: it pins each VM's host keys (``ssh-keyscan`` over the VM's private network,
right after it was created) and checks them strictly from then on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template
from typing import Any, TextIO

import yaml

from ..config.inventory import companion_path
from ..core.errors import ConfigError, UsageError, VagrantError
from ..core.files import write_private

#: Providers the Vagrantfile template has settings for; any other installed provider
#: works with its own defaults.
PROVIDERS = ("libvirt", "virtualbox")
_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
MODES = ("agent", "ssh")
#: How libvirt runs the VMs: KVM, software emulation (TCG), or KVM when /dev/kvm is usable.
ACCELS = ("auto", "kvm", "tcg")
DEFAULT_BOX = "debian/bookworm64"
#: Label every VM carries, so `cmq submit --label vagrant` runs on the VMs only.
LABEL = "vagrant"
TEMPLATE = Path(__file__).with_name("templates") / "Vagrantfile.template"
_BOX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+~-]*$")
#: What vagrant prints when a box is neither installed nor found in a catalogue...
_NO_BOX = re.compile(r"box .*(could not be found|couldn't be found|could not be accessed)", re.I)
#: ... and when the provider asked for is not installed or cannot run here.
_NO_PROVIDER = re.compile(r"provider .*(could not be found|isn't usable|is not usable)", re.I)


@dataclass(frozen=True)
class ClusterSpec:
    """What ``cmq vagrant up`` was asked for."""

    count: int
    box: str = DEFAULT_BOX
    slots: int = 2
    provider: str = "libvirt"
    mode: str = "agent"
    memory: int = 1024
    cpus: int = 1
    boot_timeout: int = 600
    accel: str = "auto"
    workdir: str | None = None

    def check(self) -> ClusterSpec:
        """This spec, or UsageError naming the option that is wrong."""
        for option, value in (("N", self.count), ("--slots", self.slots), ("--memory", self.memory),
                              ("--cpus", self.cpus), ("--timeout", self.boot_timeout)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"cmq vagrant up: {option} must be a positive integer, got {value!r}")
        if not _PROVIDER.match(self.provider):
            raise UsageError(f"cmq vagrant up: --provider: not a provider name: {self.provider!r} "
                             f"(for example {' or '.join(PROVIDERS)})")
        if self.mode not in MODES:
            raise UsageError(f"cmq vagrant up: --mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.accel not in ACCELS:
            raise UsageError(f"cmq vagrant up: --accel must be one of {', '.join(ACCELS)}, got {self.accel!r}")
        if not _BOX.match(self.box):
            raise UsageError(f"cmq vagrant up: --box: not a box name, path or URL: {self.box!r}")
        return self

    @property
    def names(self) -> list[str]:
        """The VMs' names: vm1..vmN."""
        return [f"vm{i}" for i in range(1, self.count + 1)]


@dataclass(frozen=True)
class ClusterPaths:
    """Where a Vagrant cluster of the inventory at ``inventory`` keeps its files."""

    inventory: Path

    @property
    def root(self) -> Path:
        """The Vagrant project directory (holds the Vagrantfile and vagrant's .vagrant/)."""
        return self.inventory.with_name(f"{self.inventory.stem}.vagrant")

    @property
    def vagrantfile(self) -> Path:
        """The rendered Vagrantfile."""
        return self.root / "Vagrantfile"

    @property
    def spec(self) -> Path:
        """The ClusterSpec of the last ``cmq vagrant up``, as JSON."""
        return self.root / "cluster.json"

    @property
    def known_hosts(self) -> Path:
        """The VMs' pinned host keys."""
        return self.root / "known_hosts"

    @property
    def log(self) -> Path:
        """Everything vagrant printed, for when it fails."""
        return self.root / "vagrant.log"

    @property
    def machines(self) -> Path:
        """The inventory's companion file that lists the VMs as machines."""
        return companion_path(self.inventory)


def render(spec: ClusterSpec, paths: ClusterPaths) -> str:
    """The Vagrantfile for ``spec``; without KVM, libvirt runs the VMs in software (TCG)."""
    kvm = spec.accel == "kvm" or (spec.accel == "auto" and os.access("/dev/kvm", os.R_OK | os.W_OK))
    extra = "" if kvm else (
        "        # No KVM (--accel): QEMU emulates the CPU in software.\n"
        '        libvirt.cpu_mode = "custom"\n'
        '        libvirt.cpu_model = "qemu64"\n'
    )
    return Template(TEMPLATE.read_text()).substitute(
        names=json.dumps(spec.names), box=json.dumps(spec.box), boot_timeout=spec.boot_timeout,
        memory=spec.memory, cpus=spec.cpus, libvirt_driver=json.dumps("kvm" if kvm else "qemu"),
        libvirt_extra=extra, machines_file=paths.machines.name,
    )


def machine_entry(name: str, conf: dict[str, str], spec: ClusterSpec, paths: ClusterPaths) -> dict[str, Any]:
    """The inventory entry of VM ``name`` from its parsed ``vagrant ssh-config``.

    Vagrant's StrictHostKeyChecking/UserKnownHostsFile settings are dropped: the entry
    checks the host key pinned in the cluster's known_hosts under the alias ``name``.
    """
    missing = [k for k in ("HostName", "User", "IdentityFile") if not conf.get(k)]
    if missing:
        raise VagrantError(f"{name}: `vagrant ssh-config` gave no {', '.join(missing)}")
    entry: dict[str, Any] = {"host": conf["HostName"]}
    if conf.get("Port") and conf["Port"] != "22":
        entry["port"] = int(conf["Port"])
    entry.update({
        "user": conf["User"], "identity": conf["IdentityFile"], "slots": spec.slots,
        "labels": [LABEL], "mode": spec.mode,
        "ssh_options": {"HostKeyAlias": name, "UserKnownHostsFile": str(paths.known_hosts)},
    })
    if spec.workdir:
        entry["workdir"] = spec.workdir
    return entry


def machines_text(entries: dict[str, dict[str, Any]]) -> str:
    """The companion inventory file listing ``entries``."""
    head = ("# Written by `cmq vagrant up`; `cmq vagrant destroy` removes it.\n"
            "# cmq reads it with the inventory beside it.\n")
    return head + yaml.safe_dump({"machines": entries}, sort_keys=False)


#: Lines of vagrant's progress, not of its reason.
_PROGRESS = ("==> ", "Bringing machine ")
_RUBY_FRAME = re.compile(r"^\S+\.rb:\d+:in `[^']*': ")


def vagrant_reason(output: str) -> str:
    """The reason vagrant gave for failing, in one line, from its output: the first
    paragraph after its last progress line (and the next, where it ends with a colon),
    without Ruby's backtrace."""
    lines = output.splitlines()
    last = max((i for i, ln in enumerate(lines) if ln.startswith(_PROGRESS)), default=-1)
    kept: list[str] = []
    for raw in lines[last + 1:]:
        line = _RUBY_FRAME.sub("", raw.strip())
        if line.startswith("from ") or line.startswith("Progress"):
            continue
        if not line:
            if kept and not kept[-1].endswith(":"):     # "The reason is shown below:" goes on
                break
            continue
        kept.append(line)
    reason = " ".join(kept)
    return (reason[:600] + "...") if len(reason) > 600 else reason or "no reason given"


def pin_host_keys(name: str, host: str, port: int, timeout: float = 20) -> list[str]:
    """``name``'s host keys as known_hosts lines under the alias ``name``."""
    r = subprocess.run(["ssh-keyscan", "-T", str(int(timeout)), "-p", str(port), host],
                       capture_output=True, text=True, timeout=timeout + 10)
    lines = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            lines.append(" ".join([name, *parts[1:]]))
    if not lines:
        why = (r.stderr.strip().splitlines() or ["no key offered"])[-1]
        raise VagrantError(f"{name}: could not read its ssh host keys at {host}:{port}: {why}")
    return lines


def fingerprints(lines: list[str]) -> list[str]:
    """``ssh-keygen -l`` of known_hosts lines ("256 SHA256:... vm1 (ED25519)"), one call."""
    r = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input="\n".join(lines) + "\n",
                       capture_output=True, text=True)
    return r.stdout.splitlines() or [line.split()[1] for line in lines]


class VagrantCluster:
    """The Vagrant cluster beside one inventory file: up, status, halt, destroy."""

    def __init__(self, inventory: Path, echo: Callable[[str], None] | None = None) -> None:
        self.paths = ClusterPaths(Path(inventory).expanduser().resolve())
        self.echo = echo or (lambda line: None)

    # -- files -------------------------------------------------------------------

    def spec(self) -> ClusterSpec | None:
        """The spec of the cluster that exists here, or None."""
        try:
            return ClusterSpec(**json.loads(self.paths.spec.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{self.paths.spec}: not a cluster spec: {e}") from None

    def entries(self) -> dict[str, dict[str, Any]]:
        """The machines of the companion file (empty when there is none)."""
        try:
            data = yaml.safe_load(self.paths.machines.read_text()) or {}
        except FileNotFoundError:
            return {}
        return dict(data.get("machines") or {})

    def _write_entries(self, entries: dict[str, dict[str, Any]]) -> None:
        if entries:
            write_private(self.paths.machines, machines_text(entries))
        else:
            self.paths.machines.unlink(missing_ok=True)

    # -- vagrant -----------------------------------------------------------------

    @contextmanager
    def _log(self) -> Iterator[TextIO]:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        # Line-buffered: vagrant's stdout (written here) and stderr (its own handle on the
        # same file) stay in the order vagrant printed them.
        with self.paths.log.open("a", buffering=1) as f:
            yield f

    def _vagrant(self) -> Any:
        if shutil.which("vagrant") is None:
            raise ConfigError("cmq vagrant needs the vagrant command (Debian: apt-get install vagrant "
                              "vagrant-libvirt); it is not on PATH")
        import vagrant

        return vagrant.Vagrant(root=str(self.paths.root), out_cm=self._log, err_cm=self._log,
                               env={**os.environ, "VAGRANT_NO_COLOR": "1"})

    def _failure(self, what: str, since: int) -> str:
        """vagrant's own reason, from what it wrote to the log since offset ``since``."""
        try:
            with self.paths.log.open() as f:
                f.seek(since)
                text = f.read()
        except OSError:
            text = ""
        return f"{what} failed: {vagrant_reason(text)} (all of it: {self.paths.log})"

    def _log_size(self) -> int:
        try:
            return self.paths.log.stat().st_size
        except FileNotFoundError:
            return 0

    def created(self) -> bool:
        """Whether vagrant created any VM here (it keeps an id per machine and provider);
        a cluster whose `up` failed before that has nothing to destroy."""
        return any(self.paths.root.glob(".vagrant/machines/*/*/id"))

    def states(self) -> dict[str, str]:
        """VM name -> vagrant's state ("running", "shutoff", "not created"...)."""
        if not self.paths.vagrantfile.exists():
            return {}
        v = self._vagrant()
        since = self._log_size()
        try:
            return {s.name: s.state for s in v.status()}
        except subprocess.CalledProcessError:
            raise VagrantError(self._failure("vagrant status", since)) from None

    def up(self, spec: ClusterSpec) -> dict[str, dict[str, Any]]:
        """Boot the VMs of ``spec`` and write them to the companion file; returns the entries."""
        spec.check()
        old = self.spec()
        if old is not None and (old.count, old.provider) != (spec.count, spec.provider):
            raise UsageError(f"a cluster of {old.count} {old.provider} VMs exists in {self.paths.root}; "
                             f"run `cmq vagrant up {old.count} --provider={old.provider}` to start it, "
                             "or `cmq vagrant destroy` first")
        v = self._vagrant()
        self.paths.root.mkdir(parents=True, exist_ok=True)
        write_private(self.paths.vagrantfile, render(spec, self.paths))
        write_private(self.paths.spec, json.dumps(asdict(spec), indent=1) + "\n")
        since = self._log_size()
        try:
            with self._log() as log:
                for line in v.up(provider=spec.provider, stream_output=True):
                    if "Progress:" not in line:
                        self.echo(line.rstrip("\n"))
                    log.write(line)
        except subprocess.CalledProcessError:
            reason = self._failure("vagrant up", since)
            running = [n for n, s in self._states_quietly().items() if s == "running"]
            booted = (f"; VMs that did boot: {', '.join(running)} (`cmq vagrant destroy` removes them)"
                      if running else "; no VM is running")
            self._write_entries({n: e for n, e in self.entries().items() if n in running})
            if _NO_PROVIDER.search(reason):
                raise ConfigError(f"--provider={spec.provider}: {reason}{booted}") from None
            if _NO_BOX.search(reason):
                raise ConfigError(f"--box={spec.box}: {reason}{booted}") from None
            raise VagrantError(reason + booted) from None
        return self._record(v, spec)

    def _states_quietly(self) -> dict[str, str]:
        try:
            return self.states()
        except VagrantError:
            return {}

    def _record(self, v: Any, spec: ClusterSpec) -> dict[str, dict[str, Any]]:
        """Read each VM's ssh-config and pin its host keys; the VMs that answer go to the
        companion file, and VagrantError names the ones that did not."""
        entries: dict[str, dict[str, Any]] = {}
        pinned: list[str] = []
        failed: list[str] = []
        for name in spec.names:
            since = self._log_size()
            try:
                conf = v.conf(vm_name=name)
                entry = machine_entry(name, conf, spec, self.paths)
                keys = pin_host_keys(name, entry["host"], entry.get("port", 22))
            except subprocess.CalledProcessError:
                failed.append(self._failure(f"vagrant ssh-config {name}", since))
                continue
            except VagrantError as e:
                failed.append(str(e))
                continue
            for printed in fingerprints(keys):
                self.echo(f"{name}: pinned host key {printed}")
            pinned += keys
            entries[name] = entry
        write_private(self.paths.known_hosts, "\n".join(pinned) + "\n")
        self._write_entries(entries)
        if failed:
            kept = f"in the inventory: {', '.join(entries)}" if entries else "none is in the inventory"
            raise VagrantError(f"{'; '.join(failed)}; {kept} (`cmq vagrant destroy` removes every VM)")
        return entries

    def halt(self) -> None:
        """Shut the VMs down; they stay in the inventory, disabled, until the next up."""
        v = self._vagrant()
        since = self._log_size()
        try:
            v.halt()
        except subprocess.CalledProcessError:
            raise VagrantError(self._failure("vagrant halt", since)) from None
        self._write_entries({n: {**e, "enabled": False} for n, e in self.entries().items()})

    def destroy(self) -> list[str]:
        """Destroy every VM of the cluster and remove its files and inventory entries;
        returns the names that were in the inventory."""
        names = list(self.entries())
        if self.created():
            v = self._vagrant()
            since = self._log_size()
            try:
                v.destroy()
            except subprocess.CalledProcessError:
                raise VagrantError(self._failure("vagrant destroy", since)) from None
        self.paths.machines.unlink(missing_ok=True)
        shutil.rmtree(self.paths.root, ignore_errors=True)
        return names

