"""The relay test topology (tests/support/topology.py) by itself: machines in network
namespaces behind a bridge reach each other and the controller (ssh with host keys
checked), the controller's link is shaped at both ends, a cmq environment runs on it, and
teardown leaves nothing behind. Its speed is bench/relay.py's business, not a test's."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from tests.conftest import make_env, need, teardown
from tests.support import topology
from tests.support.topology import Topology


@pytest.fixture
def topo(tmp_path):
    need("network namespaces, tc and sshd (root)", topology.available())
    t = Topology(tmp_path / "net", machines=3).start()
    yield t
    t.stop()


def _ssh(topo: Topology, frm: str | None, to: str, command: str) -> str:
    """``command`` on ``to`` by ssh from the controller (``frm`` None) or from machine ``frm``."""
    argv = topo.ssh_argv(to, command)
    r = (subprocess.run(argv, capture_output=True, text=True, timeout=30) if frm is None
         else topo.run(frm, argv, timeout=30))
    assert r.returncode == 0, f"ssh {frm or 'controller'} -> {to}: {r.returncode} {r.stderr}"
    return r.stdout


@pytest.mark.timeout(60)
def test_machines_reach_each_other_and_the_controller(topo):
    addresses = topo.machine_addresses
    for name, address in addresses.items():                   # controller -> machine, over the shaped link
        said = _ssh(topo, None, name, 'echo "$SSH_CLIENT"; hostname -I').split()
        assert said[0] == topo.controller_address and address in said[3:]
    said = _ssh(topo, "m1", "m2", 'echo "$SSH_CLIENT"').split()  # machine -> machine, across the bridge
    assert said[0] == addresses["m1"]
    said = _ssh(topo, "m3", "m1", 'echo "$SSH_CLIENT"').split()
    assert said[0] == addresses["m3"]
    # Machine -> controller: a listener on the controller's address answers each machine.
    with socket.create_server((topo.controller_address, 0)) as server:
        port = server.getsockname()[1]
        seen: list[str] = []

        def accept() -> None:
            for _ in addresses:
                conn, peer = server.accept()
                seen.append(peer[0])
                conn.close()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        for name in addresses:
            code = (f"import socket; socket.create_connection(({topo.controller_address!r}, {port}), "
                    "timeout=10).close()")
            r = topo.run(name, [sys.executable, "-c", code], timeout=30)
            assert r.returncode == 0, r.stderr
        thread.join(timeout=10)
    assert sorted(seen) == sorted(addresses.values())


@pytest.mark.timeout(60)
def test_a_machine_cannot_be_reached_without_its_host_key(topo, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    argv = [a if not a.startswith("UserKnownHostsFile=") else f"UserKnownHostsFile={empty}"
            for a in topo.ssh_argv("m2", "true")]
    r = topo.run("m1", argv, timeout=30)
    assert r.returncode == 255 and "Host key verification failed" in r.stderr


@pytest.mark.timeout(60)
def test_the_controller_link_is_shaped_at_both_ends_and_machine_links_are_not(topo):
    shaped = topo.qdiscs()
    for end in ("controller", "switch"):
        assert "tbf" in shaped[end] and "rate 100Mbit" in shaped[end], shaped
    r = topo.run("m1", ["tc", "qdisc", "show"])
    assert r.returncode == 0 and "tbf" not in r.stdout, r.stdout
    # The bridge's namespace passes no bridged frame to netfilter.
    r = subprocess.run(["ip", "netns", "exec", topo.switch, "sysctl", "-n", "-e",
                        "net.bridge.bridge-nf-call-iptables"], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() in ("", "0")


@pytest.mark.timeout(60)
def test_rates_and_machine_shaping_are_parameters(tmp_path):
    need("network namespaces, tc and sshd (root)", topology.available())
    with Topology(tmp_path / "net", machines=2, rate_mbit=40, machine_rate_mbit=500).build() as t:
        assert all("rate 40Mbit" in q for q in t.qdiscs().values())
        for i, name in enumerate(t.machine_addresses, start=1):
            inside = t.run(name, ["tc", "qdisc", "show", "dev", f"cr{t.tag}m{i}"]).stdout
            outside = subprocess.run(["ip", "netns", "exec", t.switch, "tc", "qdisc", "show", "dev",
                                      f"cr{t.tag}s{i}"], capture_output=True, text=True, timeout=30).stdout
            assert "rate 500Mbit" in inside and "rate 500Mbit" in outside
    with Topology(tmp_path / "net2", machines=1, rate_mbit=None).build() as t:
        assert not any("tbf" in q for q in t.qdiscs().values())


@pytest.mark.timeout(60)
def test_teardown_leaves_no_namespace_link_or_daemon(tmp_path):
    need("network namespaces, tc and sshd (root)", topology.available())
    t = Topology(tmp_path / "net", machines=2).start()
    other = Topology(tmp_path / "other", machines=1).build()     # a second topology coexists
    try:
        assert t.controller_address != other.controller_address
        procs = [m.proc for m in t.cluster.machines]
        assert len(t.links()) == 4                         # 3 namespaces + the controller's veth
        t.stop()
        assert t.links() == []
        assert all(p.poll() is not None for p in procs)
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30).stdout
        addrs = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=30).stdout
        assert t.tag not in netns and t.tag not in links and t.controller_address not in addrs
        t.stop()                                           # twice is harmless
        assert len(other.links()) == 3                     # the other one is untouched
    finally:
        t.stop()
        other.stop()
    assert other.links() == []


@pytest.mark.timeout(90)
def test_a_cmq_environment_runs_on_the_topology(tmp_path):
    need("network namespaces, tc and sshd (root)", topology.available())
    topo = Topology(tmp_path / "net", machines=3)
    cenv = None
    try:
        cenv = make_env(tmp_path, machines=1, prepare=topo.prepare)
        assert [m.address for m in cenv.cluster.machines] == list(topo.machine_addresses.values())
        (tmp_path / "payload.txt").write_text("over the shaped link\n")
        cenv.run("put", str(tmp_path / "payload.txt"), "m[1-3]:in/", check=True)
        for name in topo.machine_addresses:
            assert (cenv.workdir(name) / "in" / "payload.txt").read_text() == "over the shaped link\n"
    finally:
        if cenv is not None:
            teardown(cenv)
        topo.stop()
    assert topo.links() == []
