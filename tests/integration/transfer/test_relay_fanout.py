"""relay-fanout: 8 machines in network namespaces behind one switch, the controller's link
shaped to 100 Mbit/s (tests/support/topology.py). `cmq put FILE 'm[1-8]:in/'` sends the
file over the controller's link once and every copy arrives whole; a relay killed or
stopped in the middle is routed around and every copy still ends verified.

What the slow link carries is counted (the bytes the controller's veth sent), not timed:
speed lives in bench/relay.py, which times the same put against one scp.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_env, need, teardown, wait_for
from tests.support import topology

MACHINES = 8
SIZE = 40 << 20


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    need("network namespaces and tc (root, iproute2)", topology.available())
    root = tmp_path_factory.mktemp("fanout")
    topo = topology.Topology(root / "net", machines=MACHINES)
    cenv = None
    try:
        cenv = make_env(root, machines=1, slots=2, first=50, prepare=topo.prepare,
                        settings={"relay_stall": 3})
        yield cenv, topo
    finally:
        if cenv is not None:
            teardown(cenv)
        topo.stop()


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("payload") / "payload.bin"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _sent(topo: topology.Topology) -> int:
    return int(Path(f"/sys/class/net/{topo.controller_if}/statistics/tx_bytes").read_text())


def _copies(cenv, folder: str, name: str) -> dict[str, str | None]:
    out = {}
    for i in range(1, MACHINES + 1):
        p = cenv.workdir(f"m{i}") / folder / name
        out[f"m{i}"] = hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None
    return out


def test_one_copy_crosses_the_slow_link_and_every_copy_is_whole(fleet, payload):
    cenv, topo = fleet
    src, want = payload
    before = _sent(topo)
    r = cenv.run("put", "--json", str(src), f"m[1-{MACHINES}]:in/", timeout=300)
    sent = _sent(topo) - before
    assert r.code == 0, r.err
    assert _copies(cenv, "in", src.name) == {f"m{i}": want for i in range(1, MACHINES + 1)}
    fed = {rec["machine"]: rec["transfer"]["fed_by"] for rec in json.loads(r.out)}
    assert fed == {"m1": "controller", **{f"m{i}": f"m{i - 1}" for i in range(2, MACHINES + 1)}}
    # One copy and the sessions' overhead: 8 direct copies would be 8 x SIZE.
    assert SIZE <= sent < 1.25 * SIZE, f"{sent / SIZE:.2f} copies crossed the controller's link"


def _node_pid(topo: topology.Topology, machine: str, sshd_port: int) -> int | None:
    """The pid of the relay node listening in ``machine``'s namespace (not its sshd)."""
    out = topo.run(machine, ["ss", "-Hltnp"]).stdout
    for line in out.splitlines():
        if f":{sshd_port} " not in line and "pid=" in line:
            return int(line.split("pid=")[1].split(",")[0])
    return None


def _part_size(cenv, machine: str, folder: str) -> int:
    d = cenv.workdir(machine) / folder
    parts = list(d.glob("*.cmq-part-*")) if d.exists() else []
    return max((p.stat().st_size for p in parts), default=0)


def _put_and_hit(cenv, topo, src: Path, folder: str, victim: str, sig: int) -> tuple[subprocess.CompletedProcess,
                                                                                     int]:
    """`cmq put --relay=chain` in the background; once ``victim`` has a quarter of the
    file, send its relay node ``sig``; the put's outcome and the node's pid."""
    argv = [sys.executable, "-m", "cmqueue", "put", "--relay=chain", "--json", str(src), f"m[1-{MACHINES}]:{folder}/"]
    put = subprocess.Popen(argv, env=cenv.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = 0
    try:
        port = cenv.cluster.machines[0].port
        wait_for(lambda: _part_size(cenv, victim, folder) > SIZE // 4, timeout=120, what=f"{victim} a quarter in")
        pid = int(wait_for(lambda: _node_pid(topo, victim, port), timeout=30, what=f"{victim}'s relay node"))
        os.kill(pid, sig)
        out, err = put.communicate(timeout=240)
    finally:
        if put.poll() is None:
            put.kill()
            put.communicate(timeout=30)
    return subprocess.CompletedProcess(put.args, put.returncode, out, err), pid


def test_a_relay_killed_mid_stream_is_routed_around(fleet, payload):
    """m3's node is SIGKILLed a quarter in: m4 gets the rest from m2 (or the controller),
    from the byte it had; m3's own job copies directly; every copy is whole."""
    cenv, topo = fleet
    src, want = payload
    r, _ = _put_and_hit(cenv, topo, src, "killed", "m3", signal.SIGKILL)
    assert r.returncode == 0, r.stderr
    assert _copies(cenv, "killed", src.name) == {f"m{i}": want for i in range(1, MACHINES + 1)}
    records = {rec["machine"]: rec["transfer"] for rec in json.loads(r.stdout)}
    assert records["m3"]["fed_by"] == "controller" and records["m3"]["note"].startswith("relay failed"), records["m3"]
    assert records["m4"]["fed_by"] in ("m2", "m1", "controller"), records["m4"]
    assert all(records[f"m{i}"]["fed_by"] == f"m{i - 1}" for i in range(5, MACHINES + 1))
    assert not list((cenv.workdir("m3") / "killed").glob("*.cmq-part-*"))


def test_a_stalled_relay_is_routed_around(fleet, payload):
    """m3's node is stopped (SIGSTOP) a quarter in: once it is silent for 3 s, m4 is fed by
    m2 (and the machines behind m4 stay with their feeders, which wait for data
    themselves); m3 gains nothing for four stall periods, fails, and its job copies
    directly. Every copy is whole, and the controller's link carried two copies, not six."""
    cenv, topo = fleet
    src, want = payload
    before = _sent(topo)
    r, pid = _put_and_hit(cenv, topo, src, "stalled", "m3", signal.SIGSTOP)
    sent = _sent(topo) - before
    try:
        assert r.returncode == 0, r.stderr
        # One copy for the chain and one for m3's own job; not one for each machine behind m3.
        assert sent < 2.5 * SIZE, f"{sent / SIZE:.2f} copies crossed the controller's link"
        assert _copies(cenv, "stalled", src.name) == {f"m{i}": want for i in range(1, MACHINES + 1)}
        records = {rec["machine"]: rec["transfer"] for rec in json.loads(r.stdout)}
        assert records["m3"]["note"].startswith("relay failed"), records["m3"]
        assert records["m4"]["fed_by"] != "m3", records["m4"]
    finally:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
