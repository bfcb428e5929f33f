"""`cmq put` to machines that share the destination's directory writes each file once
there: of two machines on one disk one copies and the other checks the copy's SHA-256."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from tests.conftest import make_env, teardown
from tests.support import threads


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


def test_when_the_writer_fails_its_follower_looks_again_and_writes_itself(cmq, tmp_path):
    # Two names for one machine (one disk): "twin" follows "m3"; m3's copy fails while
    # twin waits, and twin then writes the file itself (the writer's marker is gone).
    import dataclasses
    import threading

    import redis
    import yaml

    from cmqueue.config.inventory import parse
    from cmqueue.machine.runner import control_dir
    from cmqueue.machine.ssh import control_path
    from cmqueue.transfer import shared_paths
    from cmqueue.transfer.machine_copy import Transfer, TransferError
    from tests.conftest import wait_for

    os.environ["CMQ_HOME"] = str(cmq.home)               # the ssh masters live in that home's control dir
    inv = parse(yaml.safe_dump(cmq.cluster.inventory(None)), tmp_path / "i.yaml")
    m3 = inv.machine("m3")
    control = control_path(control_dir(), m3, 0)
    release = threading.Event()

    class FailingTransfer(Transfer):
        def put(self, *args, **kwargs):                  # the writer's copy: fails once told to
            assert release.wait(60), "never released"
            raise TransferError("m3: the copy broke off")

    client = redis.Redis.from_url(cmq.redis.url)
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(1 << 20))
    dest = f"shared-{uuid.uuid4().hex}/"
    writer = threads.start(lambda: shared_paths.put(FailingTransfer(m3, control), client, "bfail", src, dest))
    mark = cmq.workdir("m3") / dest / shared_paths.marker("bfail", "m3")
    wait_for(mark.exists, what="the writer's marker")
    twin = Transfer(dataclasses.replace(m3, name="twin"), control)
    follower = threads.start(lambda: shared_paths.put(twin, client, "bfail", src, dest))
    wait_for(lambda: any(c.get("cmd") == "blmove" for c in client.client_list()), what="the follower waiting")
    release.set()
    with pytest.raises(AssertionError, match="the copy broke off"):
        writer.result()                                  # the helper's error, as it raised it
    result = follower.result()
    assert not result.method.startswith("shared") and result.bytes == 1 << 20
    assert cmq.workdir("m3").joinpath(dest, "payload.bin").read_bytes() == src.read_bytes()
    client.close()

