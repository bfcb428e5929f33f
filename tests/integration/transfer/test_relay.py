"""Relayed puts on loopback sshd machines: `cmq put` of one file to several machines goes
through one relay (a chain or a tree), every copy verified, each record naming its feeder;
the relay's own code run directly against real relay nodes: tokens, an empty file, a
machine that cannot start its node."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from cmqueue.config.inventory import load
from cmqueue.transfer import relay_plan
from cmqueue.transfer.relay import Relay
from tests.conftest import make_env, teardown

FIRST = 46     # loopback addresses 127.0.0.46-49


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("relay")
    box = root / "box"
    box.mkdir()
    storage = {f"n{i}": {"type": "ssh", "machine": f"m{i}", "directory": "store"} for i in (1, 2, 3)}
    cenv = make_env(root, machines=4, slots=2, first=FIRST, machine_fields={"m4": {"zone": "b"}},
                    sections={"storage": {**storage, "box": {"type": "local", "directory": str(box)}}},
                    settings={"relay_gather": 30})     # the batch's three jobs always meet
    cenv.box = box
    yield cenv
    teardown(cenv)


def _payload(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _staged(env, job: str) -> dict:
    """What staging did for ``job``, as the history recorded it."""
    c = env.cluster_api()
    try:
        (record,) = c.status([job])
        return record.result.data["staged"]
    finally:
        c.close()


def _listeners(addresses: list[str]) -> list[str]:
    """Listening TCP sockets on ``addresses`` (the sshd's excepted by the caller)."""
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    return [ln.split()[3] for ln in out.splitlines() if any(ln.split()[3].startswith(a + ":") for a in addresses)]


def test_put_relayed_along_a_chain_per_zone(env, tmp_path):
    """m1-m3 share a zone and m4 has its own: m1 is fed by the controller, m2 by m1, m3 by
    m2; m4, alone in its zone, by the controller. Every copy is whole, no part file is
    left, and nothing listens on the machines' addresses once the put is over."""
    src = tmp_path / "payload.bin"
    want = _payload(src, 6 << 20)
    r = env.run("put", "--relay=chain", "--json", str(src), "m[1-4]:in/")
    assert r.code == 0, r.err
    records = {rec["machine"]: rec["transfer"] for rec in json.loads(r.out)}
    assert {m: t["fed_by"] for m, t in records.items()} == {"m1": "controller", "m2": "m1", "m3": "m2",
                                                            "m4": "controller"}
    assert all(t["method"] == "relay" and t["verified"] == "sha256 on the machine" for t in records.values())
    for m in ("m1", "m2", "m3", "m4"):
        folder = env.workdir(m) / "in"
        assert _digest(folder / "payload.bin") == want, m
        assert [p.name for p in folder.iterdir()] == ["payload.bin"], m
    sshd_port = env.cluster.machines[0].port
    left = [a for a in _listeners([m.address for m in env.cluster.machines]) if not a.endswith(f":{sshd_port}")]
    assert left == []
    m2 = next(rec for rec in json.loads(r.out) if rec["machine"] == "m2")
    shown = env.run("logs", m2["id"])
    assert shown.code == 0 and "by relay from m1" in shown.out, shown.out


def test_auto_sends_a_small_file_directly_and_tree_feeds_two(env, tmp_path):
    """auto relays nothing under RELAY_MIN_BYTES; tree:2 gives m1 two machines to feed."""
    small = tmp_path / "small.txt"
    small.write_text("hello\n")
    r = env.run("put", "--json", str(small), "m[1-3]:in/")
    assert r.code == 0, r.err
    assert all(rec["transfer"]["fed_by"] == "" for rec in json.loads(r.out))
    big = tmp_path / "tree.bin"
    want = _payload(big, 5 << 20)
    r = env.run("put", "--relay=tree:2", "--json", str(big), "m[1-3]:in/")
    assert r.code == 0, r.err
    assert {rec["machine"]: rec["transfer"]["fed_by"] for rec in json.loads(r.out)} == {
        "m1": "controller", "m2": "m1", "m3": "m1"}
    assert all(_digest(env.workdir(m) / "in" / "tree.bin") == want for m in ("m1", "m2", "m3"))


def test_a_bad_relay_mode_is_a_usage_error(env, tmp_path):
    src = tmp_path / "x"
    src.write_text("x")
    r = env.run("put", "--relay=tree:0", str(src), "m1:")
    assert r.code == 2
    assert "--relay: 'tree:0' is not a relay mode" in r.err
    assert "Traceback" not in r.err


def test_a_connection_without_the_token_is_refused_and_counts_nothing(env, tmp_path, caplog):
    """A stranger who connects to a node's port while it receives, with a wrong token and
    bytes after it, is closed without a word; the copy arrives from its feeder, whole."""
    inv = load(env.config)
    src = tmp_path / "tokens.bin"
    want = _payload(src, 32 << 20)
    names = ["m1", "m2"]
    targets = {m: (inv.machines[m], f"{inv.machines[m].workdir}/tok/tokens.bin") for m in names}
    relay = Relay(src, targets, relay_plan.plan(names, "chain"))
    strangers: list[bytes] = []

    def knock(machine: str, have: int, feeder: str) -> None:
        node = relay.nodes[machine]
        if machine == "m2" and feeder == "m1" and have > 0 and not strangers:
            with socket.create_connection((node.address, node.port), timeout=5) as s:
                s.sendall(b"not-the-token\n" + b"\0" * 65536)
                s.settimeout(10)
                try:
                    strangers.append(s.recv(16))
                except ConnectionResetError:        # closed with our bytes unread: a reset
                    strangers.append(b"")

    relay.on_progress = knock
    with caplog.at_level("WARNING", logger="cmq.transfer"):
        out = relay.run()
    assert all(o.ok for o in out.values()), out
    assert strangers == [b""]            # closed without a word: no offset, no data
    assert "m2 refused a connection without its token" in caplog.text
    assert all(_digest(Path(t)) == want for _, t in targets.values())


def test_a_copy_that_is_not_the_expected_file_is_not_kept(env, tmp_path):
    """A relay told the SHA-256 a job was submitted with, of a file changed since: every
    machine refuses it, and nothing is left where it would have gone."""
    inv = load(env.config)
    src = tmp_path / "changed.bin"
    _payload(src, 5 << 20)
    targets = {m: (inv.machines[m], f"{inv.machines[m].workdir}/changed/c.bin") for m in ("m1", "m2")}
    out = Relay(src, targets, relay_plan.plan(["m1", "m2"], "chain"), sha256="0" * 64).run()
    assert not any(o.ok for o in out.values())
    assert all("checksum mismatch" in o.error for o in out.values()), out
    for m in ("m1", "m2"):
        assert list((env.workdir(m) / "changed").iterdir()) == []


def test_machines_that_share_a_disk_get_one_copy(env, tmp_path):
    """m1 and m2 write the same path on one disk (as an NFS home would be): m1 writes, m2's
    copy is m1's (no second writer), and m3, planned behind m2, is fed by m1."""
    inv = load(env.config)
    src = tmp_path / "shared.bin"
    want = _payload(src, 5 << 20)
    same = tmp_path / "nfs" / "shared.bin"
    targets = {"m1": (inv.machines["m1"], str(same)), "m2": (inv.machines["m2"], str(same)),
               "m3": (inv.machines["m3"], f"{inv.machines['m3'].workdir}/own/shared.bin")}
    out = Relay(src, targets, relay_plan.plan(["m1", "m2", "m3"], "chain")).run()
    assert out["m1"].ok and out["m1"].fed_by == "controller"
    assert out["m2"].ok and out["m2"].shared_with == "m1" and out["m2"].feeders == []
    assert out["m3"].ok and out["m3"].fed_by == "m1"
    assert _digest(same) == want and [p.name for p in same.parent.iterdir()] == ["shared.bin"]


def test_a_machine_without_its_node_is_reported_and_the_chain_goes_around_it(env, tmp_path):
    """m2's target cannot be written (a file where its folder should be): m2 fails at once
    with the reason, and m3, planned behind m2, is fed by m1."""
    inv = load(env.config)
    src = tmp_path / "around.bin"
    want = _payload(src, 5 << 20)
    blocker = env.workdir("m2") / "blocked"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file, not a folder")
    targets = {m: (inv.machines[m], f"{inv.machines[m].workdir}/{'blocked' if m == 'm2' else 'ok'}/a.bin")
               for m in ("m1", "m2", "m3")}
    out = Relay(src, targets, relay_plan.plan(["m1", "m2", "m3"], "chain")).run()
    assert not out["m2"].ok and "Error" in out["m2"].error
    assert out["m3"].ok and out["m3"].fed_by == "m1"
    assert _digest(Path(targets["m3"][1])) == want


def test_an_empty_file_is_relayed(env, tmp_path):
    inv = load(env.config)
    src = tmp_path / "empty"
    src.write_bytes(b"")
    targets = {m: (inv.machines[m], f"{inv.machines[m].workdir}/empty/e") for m in ("m1", "m2")}
    out = Relay(src, targets, relay_plan.plan(["m1", "m2"], "chain")).run()
    assert all(o.ok for o in out.values()), out
    assert all(Path(t).read_bytes() == b"" for _, t in targets.values())


def test_an_input_several_machines_need_is_relayed_into_their_caches(env, tmp_path):
    """`submit --on='m[1-3]' --put=big.bin`: the three jobs' machines get the input into
    their caches through one relay (m1 fed by the controller, each next by the one
    before); each job reads it whole; a second submit finds it cached everywhere."""
    big = tmp_path / "big.bin"
    want = _payload(big, 6 << 20)
    r = env.run("submit", "--on=m[1-3]", f"--put={big}", "--wait", "--json", "sha256sum big.bin", timeout=180)
    assert r.code == 0, r.err
    records = json.loads(r.out)
    assert sorted(rec["stdout"].split()[0] for rec in records) == [want] * 3
    fed = {rec["machine"]: _staged(env, rec["id"])["relayed"] for rec in records}
    assert fed == {"m1": {want: "controller"}, "m2": {want: "m1"}, "m3": {want: "m2"}}
    for m in ("m1", "m2", "m3"):
        cached = env.workdir(m) / "cache" / want
        assert _digest(cached) == want
        assert oct(cached.stat().st_mode & 0o777) == "0o444"      # hard-linked into jobs: read-only
    again = env.run("submit", "--on=m[1-3]", f"--put={big}", "--wait", "--json", "true", timeout=120)
    assert again.code == 0, again.err
    for rec in json.loads(again.out):
        staged = _staged(env, rec["id"])
        assert staged["hits"] == 1 and staged["relayed"] == {}, staged


def test_storage_put_and_copy_to_several_machine_services_are_relayed(env, tmp_path):
    """`storage put FILE 'n[1-3]:images/'` (three machine services) and `storage copy
    box:FILE 'n[1-3]:again/'`: one relay each, a line per destination naming its feeder,
    every copy whole with the source's time."""
    src = tmp_path / "image.bin"
    want = _payload(src, 5 << 20)
    os.utime(src, (1_700_000_000, 1_700_000_000))
    r = env.run("storage", "put", str(src), "n[1-3]:images/")
    assert r.code == 0, r.err
    assert "-> n2:images/image.bin: 5.2 MB by relay from m1" in r.err, r.err
    assert "-> n3:images/image.bin: 5.2 MB by relay from m2" in r.err, r.err
    (env.box / "image.bin").write_bytes(src.read_bytes())
    r = env.run("storage", "copy", "--relay=tree:2", "box:image.bin", "n[1-3]:again/")
    assert r.code == 0, r.err
    assert r.err.count("from m1") == 2, r.err
    for i in (1, 2, 3):
        for folder in ("images", "again"):
            copy = env.workdir(f"m{i}") / "store" / folder / "image.bin"
            assert _digest(copy) == want
        assert int((env.workdir(f"m{i}") / "store" / "images" / "image.bin").stat().st_mtime) == 1_700_000_000
    bad = env.run("storage", "put", str(src), "n1,box:x/")
    assert bad.code == 2 and "box is a local service; several destinations are machine directories" in bad.err
