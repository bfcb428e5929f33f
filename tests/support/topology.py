"""A fleet in network namespaces behind one switch, the controller on a slow link: the
topology relays are measured and tested on.

                     controller (this host, root namespace) CONTROLLER_ADDRESS
                        | veth, shaped to ``rate_mbit`` both ways (tc tbf)
    switch namespace:  bridge ---- veth ---- m1 namespace (sshd)   10.214.K.11
                           |------ veth ---- m2 namespace (sshd)   10.214.K.12
                           ...                                     (10.214.K.(10+i))

Every machine is a namespace of its own with an sshd in it (:class:`LoopbackCluster`'s
``Sshd`` with ``netns=``): its traffic to another machine crosses the bridge only, so
machine-to-machine links are fast (unshaped, or ``machine_rate_mbit``), while everything
between the controller and the machines shares the one shaped veth. All namespaces share
this host's filesystem; each machine has its own work directory. The bridge lives in its
own namespace, whose netfilter tables are empty: the host's br_netfilter and iptables rules
(docker's FORWARD DROP) never see the bridged frames.

Names carry a random tag, so builders in parallel test processes never clash; ``subnet``
(K in 10.214.K.0/24; by default a K no address here is in) lets two topologies coexist.
Teardown deletes every namespace and link it made and stops the sshd's by pid; it adds no
iptables rule. Over the 100 Mbit/s link one scp of 40 MB takes ~3.6 s (3.2 s of bytes);
between two machines ~0.5 s.

Standalone (its own cluster of sshd's)::

    with Topology(tmp_path / "net", machines=8).start() as topo:
        topo.cluster.write_inventory(path, redis_url)
        topo.run("m1", ["ssh", ...])               # a command inside m1's namespace

In a test's cmq environment (``make_env`` starts the sshd's; see :meth:`Topology.prepare`)::

    topo = Topology(tmp_path / "net", machines=8)
    try:
        cenv = make_env(tmp_path, machines=1, prepare=topo.prepare)
        ...
    finally:
        teardown(cenv)
        topo.stop()
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from cmqueue.cli.demo_machines import LoopbackCluster, Sshd

#: The topologies' addresses: 10.214.K.0/24 for ``subnet`` K (tests/support/netns.py has 10.213).
SUBNET = "10.214"
#: The prefix length of each topology's subnet.
PREFIX = 24
#: The controller's address is SUBNET.K.CONTROLLER_HOST; machine i (from 1) is SUBNET.K.(FIRST_HOST + i).
CONTROLLER_HOST = 1
FIRST_HOST = 10
#: The most machines one topology holds (the /24 ends at .254).
MAX_MACHINES = 254 - FIRST_HOST
#: The controller link's rate by default, Mbit/s.
RATE_MBIT = 100.0
#: tbf's bucket and queue: a 256 KiB bucket holds a few GSO frames of a TCP burst, and 50 ms
#: of queue keeps one TCP stream at the full rate without drops on a sub-millisecond RTT.
BURST = "256kb"
LATENCY = "50ms"


def available() -> bool:
    """Whether the topology can be built here (root, iproute2 with tc, and sshd)."""
    from cmqueue.cli.demo_machines import sshd_binary

    return (os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("tc") is not None
            and sshd_binary() is not None)


def unused_subnet() -> int:
    """A K, at random, such that no address of this host is in SUBNET.K.0/24."""
    used = _run("ip", "-o", "-4", "addr", "show")
    free = [k for k in range(256) if f" {SUBNET}.{k}." not in used]
    if not free:
        raise RuntimeError(f"every {SUBNET}.K.0/24 is in use here")
    return secrets.choice(free)


@contextmanager
def _claiming() -> Iterator[None]:
    """Hold this host's lock on choosing a subnet and adding its address."""
    with open(Path(tempfile.gettempdir()) / "cmq-topology.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(*argv: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


class Topology:
    """``machines`` namespaces m1..mN behind a bridge, the controller's veth shaped to
    ``rate_mbit`` (None: unshaped) both ways, machine veths to ``machine_rate_mbit``
    (default unshaped); addresses in SUBNET.``subnet``.0/24 (None: one no address of this
    host is in, chosen at random). ``slots`` is the slots of each machine when the
    topology makes its own cluster (:meth:`start`)."""

    def __init__(self, root: Path, machines: int, rate_mbit: float | None = RATE_MBIT, subnet: int | None = None,
                 machine_rate_mbit: float | None = None, slots: int = 2) -> None:
        if not 1 <= machines <= MAX_MACHINES:
            raise ValueError(f"machines: 1 to {MAX_MACHINES}, not {machines}")
        if subnet is not None and not 0 <= subnet <= 255:
            raise ValueError(f"subnet: 0 to 255, not {subnet}")
        self._auto = subnet is None
        self.root = Path(root)
        self.machines = machines
        self.rate_mbit = rate_mbit
        self.machine_rate_mbit = machine_rate_mbit
        self.slots = slots
        self.tag = secrets.token_hex(3)
        self._address(unused_subnet() if subnet is None else subnet)
        #: Machine name -> its namespace.
        self.namespaces = {name: f"cmqr-{self.tag}-{name}" for name in self.machine_addresses}
        #: The namespace holding the bridge.
        self.switch = f"cmqr-{self.tag}-sw"
        #: The controller's veth: its end here (root namespace) and its end on the bridge.
        self.controller_if, self.switch_if = f"cr{self.tag}c", f"cr{self.tag}cs"
        #: The sshd's: this topology's own after :meth:`start`, or the one :meth:`prepare` was given.
        self.cluster: LoopbackCluster | None = None
        self._made: list[str] = []                       # namespaces made, in order
        self._owns_cluster = False

    def _address(self, subnet: int) -> None:
        self.net = f"{SUBNET}.{subnet}"
        #: The controller's address on the shaped link (this host, root namespace).
        self.controller_address = f"{self.net}.{CONTROLLER_HOST}"
        #: Machine name (m1...) -> its address.
        self.machine_addresses = {f"m{i}": f"{self.net}.{FIRST_HOST + i}" for i in range(1, self.machines + 1)}

    # -- building ---------------------------------------------------------------------------

    def build(self) -> Topology:
        """Make the namespaces, the bridge, the veths and the shaping (no sshd yet)."""
        if self._made:
            return self
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        return self

    def _build(self) -> None:
        sw = self.switch
        self._netns_add(sw)
        _run("ip", "-n", sw, "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
        _run("ip", "-n", sw, "link", "set", "br0", "up")
        _run("ip", "-n", sw, "link", "set", "lo", "up")
        # The namespace's own netfilter tables are empty; br_netfilter (per namespace, on by
        # default once loaded) would still pass every bridged frame through them: turn it off.
        _run("ip", "netns", "exec", sw, "sysctl", "-q", "-e", "-w", "net.bridge.bridge-nf-call-iptables=0",
             "net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0")
        # The controller's veth: one end here in the root namespace, one on the bridge.
        _run("ip", "link", "add", self.controller_if, "type", "veth", "peer", "name", self.switch_if,
             "netns", sw)
        with _claiming():                               # two builders never take one subnet
            if self._auto and f" {self.net}." in _run("ip", "-o", "-4", "addr", "show"):
                self._address(unused_subnet())
            _run("ip", "addr", "add", f"{self.controller_address}/{PREFIX}", "dev", self.controller_if)
        _run("ip", "link", "set", self.controller_if, "up")
        _run("ip", "-n", sw, "link", "set", self.switch_if, "master", "br0", "up")
        if self.rate_mbit:
            self._shape(None, self.controller_if, self.rate_mbit)
            self._shape(sw, self.switch_if, self.rate_mbit)
        for i, (name, address) in enumerate(self.machine_addresses.items(), start=1):
            ns = self.namespaces[name]
            self._netns_add(ns)
            inner, outer = f"cr{self.tag}m{i}", f"cr{self.tag}s{i}"
            _run("ip", "-n", ns, "link", "add", inner, "type", "veth", "peer", "name", outer, "netns", sw)
            _run("ip", "-n", ns, "addr", "add", f"{address}/{PREFIX}", "dev", inner)
            _run("ip", "-n", ns, "link", "set", inner, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", sw, "link", "set", outer, "master", "br0", "up")
            if self.machine_rate_mbit:
                self._shape(ns, inner, self.machine_rate_mbit)
                self._shape(sw, outer, self.machine_rate_mbit)

    def _netns_add(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self._made.append(name)

    @staticmethod
    def _shape(ns: str | None, dev: str, mbit: float) -> None:
        """A token bucket on ``dev``'s egress in namespace ``ns`` (None: this one)."""
        where = ["ip", "netns", "exec", ns] if ns else []
        _run(*where, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{mbit:g}mbit",
             "burst", BURST, "latency", LATENCY)

    def machine_sshds(self, port: int, cluster: LoopbackCluster) -> list[Sshd]:
        """An sshd per machine, in its namespace, on ``port``, sharing ``cluster``'s keys."""
        return [Sshd(name=name, address=address, port=port, root=cluster.root / name,
                     authorized_keys=cluster.authorized, netns=self.namespaces[name])
                for name, address in self.machine_addresses.items()]

    def prepare(self, cluster: LoopbackCluster) -> None:
        """A ``make_env(..., prepare=)`` callback: build the network and make ``cluster``'s
        machines this topology's, m1..mN in their namespaces, in place of the loopback
        machines it was made with (``make_env(tmp, machines=1, ...)``: LoopbackCluster
        needs one to choose its port). ``cluster.start()`` then starts their sshd's."""
        self.build()
        port = cluster.machines[0].port
        cluster.machines[:] = self.machine_sshds(port, cluster)
        self.cluster = cluster

    def start(self) -> Topology:
        """Build the network, then start an sshd in every machine's namespace (a cluster
        of this topology's own, with a client key and a known_hosts by ssh-keyscan)."""
        self.build()
        cluster = LoopbackCluster(self.root / "cluster", n=1, slots=self.slots, first=2)
        self.prepare(cluster)
        self._owns_cluster = True
        try:
            cluster.start()
        except BaseException:
            self.stop()
            raise
        return self

    # -- using ------------------------------------------------------------------------------

    def netns_argv(self, machine: str, argv: list[str]) -> list[str]:
        """``argv`` as run inside ``machine``'s namespace."""
        return ["ip", "netns", "exec", self.namespaces[machine], *argv]

    def run(self, machine: str, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``argv`` inside ``machine``'s namespace (captured, not checked)."""
        return subprocess.run(self.netns_argv(machine, argv), capture_output=True, text=True, timeout=timeout)

    def ssh_argv(self, machine: str, command: str) -> list[str]:
        """An ssh command line (host keys checked) that runs ``command`` on ``machine``."""
        assert self.cluster is not None, "no sshd's: start() or prepare() first"
        m = self.cluster.machine(machine)
        return ["ssh", "-i", str(self.cluster.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.cluster.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-p", str(m.port), m.address, command]

    def qdiscs(self) -> dict[str, str]:
        """``tc qdisc show`` of the controller link's two ends: {"controller": ..., "switch": ...}."""
        return {"controller": _run("tc", "qdisc", "show", "dev", self.controller_if),
                "switch": _run("ip", "netns", "exec", self.switch, "tc", "qdisc", "show", "dev", self.switch_if)}

    def links(self) -> list[str]:
        """The names of this topology's links and namespaces that exist now (empty after stop)."""
        found = [ns for ns in _run("ip", "netns", "list").split() if ns.startswith(f"cmqr-{self.tag}-")]
        found += [line.split(":")[1].strip().split("@")[0] for line in _run("ip", "-o", "link", "show").splitlines()
                  if f"cr{self.tag}" in line]
        return found

    # -- teardown ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the sshd's (by pid), then delete every namespace and link made here."""
        if self.cluster is not None:
            for m in self.cluster.machines:
                if m.netns in self.namespaces.values():
                    m.stop()
        subprocess.run(["ip", "link", "del", self.controller_if], capture_output=True, timeout=30)
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self._made.clear()

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
