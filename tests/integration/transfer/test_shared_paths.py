"""`cmq put` to machines that share the destination's directory writes each file once
there: of two machines on one disk one copies and the other checks the copy's SHA-256."""

from __future__ import annotations

import json
import os

from tests.conftest import make_env, teardown


def test_a_put_to_machines_sharing_a_directory_writes_it_once_per_disk(tmp_path):
    disk_a, disk_b = tmp_path / "disk-a", tmp_path / "disk-b"
    disk_a.mkdir()
    disk_b.mkdir()
    shared = {"m1": {"workdir": str(disk_a)}, "m2": {"workdir": str(disk_a)},
              "m3": {"workdir": str(disk_b)}, "m4": {"workdir": str(disk_b)}}
    cenv = make_env(tmp_path / "env", machines=4, first=241, machine_fields=shared)
    try:
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(3 << 20))
        r = cenv.run("put", "--json", str(big), "m[1-4]:in/", timeout=180)
        assert r.code == 0, r.out + r.err
        records = {rec["machine"]: rec for rec in json.loads(r.out)}
        assert sorted(records) == ["m1", "m2", "m3", "m4"]
        assert all(rec["state"] == "succeeded" for rec in records.values()), records
        for pair in (("m1", "m2"), ("m3", "m4")):
            methods = sorted(records[m]["transfer"]["method"] for m in pair)
            writer = next(m for m in pair if not records[m]["transfer"]["method"].startswith("shared"))
            follower = next(m for m in pair if m != writer)
            assert records[follower]["transfer"]["method"] == f"shared with {writer}", methods
            assert records[follower]["transfer"]["verified"] == "sha256"
        for disk in (disk_a, disk_b):
            assert (disk / "in" / "big.bin").read_bytes() == big.read_bytes()
            assert sorted(p.name for p in (disk / "in").iterdir()) == ["big.bin"]     # no marker left
    finally:
        teardown(cenv)
