"""Transfers with real sshd's: the transfer module by itself (both methods), and
`cmq put` / `cmq get` through the workers."""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest

from cmqueue.config.inventory import parse
from cmqueue.machine.runner import control_dir
from cmqueue.machine.ssh import control_path
from cmqueue.transfer.machine_copy import Transfer, TransferError, local_manifest


def _tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b b.bin").write_bytes(os.urandom(200_000))
    (root / "sub" / "deeper" / "c;$(x).txt").write_text("hostile name\n")
    return root


@pytest.fixture(scope="module")
def machine(cmq, tmp_path_factory):
    import yaml

    inv = parse(yaml.safe_dump(cmq.cluster.inventory(None)), tmp_path_factory.mktemp("inv") / "i.yaml")
    os.environ["CMQ_HOME"] = str(cmq.home)               # its ssh masters live in that home's control dir
    return inv.machine("m3")


@pytest.mark.parametrize("method", ["rsync", "tar"])
def test_transfer_round_trip_of_a_tree_and_a_file(machine, tmp_path, method):
    m = dataclasses.replace(machine, transfer=method)
    t = Transfer(m, control_path(control_dir(), m, 0))
    src = _tree(tmp_path / "src")
    seen: list[int] = []
    put = t.put(src, f"tree-{method}", recursive=True, progress=seen.append)
    assert (put.method, put.files, put.bytes) == (method, 3, 200_000 + 6 + 13)
    assert put.verified == ("sha256" if method == "tar" else "rsync whole-file checksum")
    assert seen and seen[-1] >= put.bytes          # progress reached the end (tar counts headers too)
    t.get(f"tree-{method}", tmp_path / "back", recursive=True)
    assert local_manifest(tmp_path / "back") == local_manifest(src)
    one = t.put(src / "a.txt", f"files-{method}/")
    assert one.dest.endswith(f"files-{method}/a.txt")
    # A new file goes as a plain stream, checked by cksum at both ends; one that is there
    # already goes by rsync where both ends have it (only its changes travel).
    assert (one.method, one.verified) == ("stream", "cksum (CRC and size) of both ends")
    assert t.put(src / "a.txt", f"files-{method}/").method == ("rsync" if method == "rsync" else "stream")
    got = t.get(f"files-{method}/a.txt", tmp_path)
    assert Path(got.dest).read_text() == "alpha\n"


def test_a_streamed_file_that_arrives_different_is_not_kept(machine, tmp_path, monkeypatch):
    from cmqueue.transfer import machine_copy as transfer

    t = Transfer(machine, control_path(control_dir(), machine, 0))
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(300_000))
    real = transfer.local_cksum
    monkeypatch.setattr(transfer, "local_cksum", lambda path: "1 " + real(path).split()[1])  # a wrong CRC
    with pytest.raises(TransferError, match=r"m3: put .*data.bin: checksum mismatch: cksum \d+ 300000 here"):
        t.put(src, "mismatch/")
    listing = t.run('ls -A -- "$1"', "mismatch").stdout.decode()
    assert listing == ""                                  # neither the file nor its part is left


@pytest.mark.parametrize("method", ["rsync", "tar"])
def test_transfer_errors_name_machine_and_path(machine, tmp_path, method):
    m = dataclasses.replace(machine, transfer=method)
    t = Transfer(m, control_path(control_dir(), m, 0))
    with pytest.raises(TransferError, match=r"m3:.*/no-such-file: no such file or directory"):
        t.get("no-such-file", tmp_path)
    with pytest.raises(TransferError, match="is a directory; use --recursive"):
        t.put(_tree(tmp_path / "d"), "x")
    with pytest.raises(TransferError, match=r"m3: .*/proc/cmq-forbidden"):
        t.put(tmp_path / "d" / "a.txt", "/proc/cmq-forbidden/a.txt")


def test_put_fans_out_and_get_collects_per_machine(cmq, tmp_path):
    src = _tree(tmp_path / "src")
    r = cmq.run("put", "--recursive", "--json", str(src), "m[1-2]:staged/tree")
    assert r.code == 0, r.err
    rows = r.json()
    assert sorted(row["machine"] for row in rows) == ["m1", "m2"]
    assert all(row["state"] == "succeeded" and row["transfer"]["verified"] for row in rows)
    for name in ("m1", "m2"):
        assert local_manifest(cmq.workdir(name) / "staged" / "tree") == local_manifest(src)
    out = tmp_path / "collected"
    r = cmq.run("get", "-r", "m[1-2]:staged/tree", str(out))
    assert r.code == 0, r.err
    assert "verified by" in r.out
    for name in ("m1", "m2"):
        assert local_manifest(out / name) == local_manifest(src)
    jobs = cmq.run("jobs", "--json", "--last=2").json()
    assert {j["command"].split()[0] for j in jobs} == {"get"}


def test_put_missing_file_is_a_usage_error(cmq, tmp_path):
    r = cmq.run("put", str(tmp_path / "nope.txt"), "m1:")
    assert r.code == 2
    assert "nope.txt: no such file or directory" in r.err
    assert "Traceback" not in r.err
    r = cmq.run("put", str(tmp_path), "m1")
    assert r.code == 2 and "expected MACHINES:PATH" in r.err


def test_get_of_a_missing_file_fails_as_a_transfer_at_once(cmq, tmp_path):
    r = cmq.run("get", "m2:does/not/exist", str(tmp_path))          # default: 2 retries
    assert r.code == 1
    assert "transfer failed" in r.err and "does/not/exist: no such file or directory" in r.err
    # Trying again cannot make a missing file appear: it failed on its first attempt.
    (rec,) = cmq.run("jobs", "--json", "--last=1", check=True).json()
    assert rec["command"].startswith("get ") and rec["state"] == "failed" and rec["attempt"] == 1


def test_one_rule_for_trees_and_slashes_in_put_and_get(cmq, tmp_path):
    """first-contact-round2: a directory gives its contents to the destination whatever
    the slashes (rclone's rule, as `cmq storage` has it); one file goes inside a
    destination that ends in / (or is a directory), else takes its name."""
    src = _tree(tmp_path / "inputs")
    tag = uuid.uuid4().hex[:8]
    spellings = ((str(src) + "/", f"rule-{tag}/a/"), (str(src), f"rule-{tag}/b"), (str(src), f"rule-{tag}/c/"))
    for spelled, dest in spellings:
        assert cmq.run("put", "-r", spelled, f"m1:{dest}").code == 0
        assert local_manifest(cmq.workdir("m1") / dest) == local_manifest(src), dest       # contents, no inputs/
    one = src / "a.txt"
    assert cmq.run("put", str(one), f"m1:rule-{tag}/d/").code == 0
    assert (cmq.workdir("m1") / f"rule-{tag}" / "d" / "a.txt").read_bytes() == one.read_bytes()
    assert cmq.run("put", str(one), f"m1:rule-{tag}/e.txt").code == 0
    assert (cmq.workdir("m1") / f"rule-{tag}" / "e.txt").read_bytes() == one.read_bytes()
    back = tmp_path / "back"
    for spelled, dest in ((f"m1:rule-{tag}/a/", back / "x"), (f"m1:rule-{tag}/a", back / "y")):
        assert cmq.run("get", "-r", spelled, str(dest) + "/").code == 0
        assert local_manifest(dest) == local_manifest(src)
    assert cmq.run("get", f"m1:rule-{tag}/e.txt", str(back / "new") + "/").code == 0
    assert (back / "new" / "e.txt").read_bytes() == one.read_bytes()
    assert cmq.run("get", f"m1:rule-{tag}/e.txt", str(back / "named.txt")).code == 0
    assert (back / "named.txt").read_bytes() == one.read_bytes()
