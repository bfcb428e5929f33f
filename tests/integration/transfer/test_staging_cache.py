"""The input cache under pressure: capacity, pinned inputs, LRU eviction, `cmq cache`,
and a machine whose disk is full."""

from __future__ import annotations

import os
import subprocess

import pytest

from cmqueue.transfer.machine_copy import sha256_file
from tests.conftest import make_env, need, teardown, wait_for
from tests.support import threads

MiB = 1 << 20


@pytest.fixture
def small_cache(tmp_path):
    cenv = make_env(tmp_path, machines=1, slots=2, first=91, fields={"cache": "3MiB"})
    yield cenv
    teardown(cenv)


def _file(tmp_path, name, size):
    p = tmp_path / name
    p.write_bytes(os.urandom(size))
    return p


def test_pinned_inputs_survive_eviction_and_lru_frees_space(small_cache, tmp_path):
    env = small_cache
    x, y = _file(tmp_path, "x.bin", 2 * MiB), _file(tmp_path, "y.bin", 2 * MiB)
    cache = env.workdir("m1") / "cache"
    gate = tmp_path / "gate"
    # A holds x in the cache while it runs (until the gate file appears).
    holder = threads.start(lambda: env.run(
        "submit", "--wait", f"--put={x}", f"while [ ! -e {gate} ]; do sleep 0.1; done"))
    wait_for(lambda: (cache / sha256_file(x)).exists(), timeout=60, what="x in the cache")
    r = env.run("submit", "--wait", "--json", f"--put={y}", "wc -c < y.bin")
    assert r.code == 0, r.err
    (b,) = r.json()
    assert b["stdout"].strip() == str(2 * MiB)
    assert "input cache on m1 is full" in b["reason"]          # said so, did not crash
    assert (cache / sha256_file(x)).exists()                   # pinned by the running job
    assert not (cache / sha256_file(y)).exists()               # staged without caching
    gate.touch()
    assert holder.result(timeout=60).code == 0
    # x is free now: the next input evicts it (least recently used) and is cached itself.
    r = env.run("submit", "--wait", "--json", f"--put={y}", "true")
    assert r.code == 0 and r.json()[0]["reason"] == ""
    assert not (cache / sha256_file(x)).exists() and (cache / sha256_file(y)).exists()
    ls = env.run("cache", "ls", "--json", check=True).json()
    assert [e["sha"] for e in ls] == [sha256_file(y)]
    (usage,) = env.run("cache", "usage", "--json", check=True).json()
    assert (usage["entries"], usage["bytes"], usage["capacity"]) == (1, 2 * MiB, 3 * MiB)
    cleared = env.run("cache", "clear", "--json", check=True).json()
    assert cleared == [{"machine": "m1", "removed": 1, "kept": 0, "error": ""}]
    assert list(cache.iterdir()) == [] and env.run("cache", "ls", "--json").json() == []


def test_full_disk_is_a_transfer_failure_naming_job_and_file(small_cache, tmp_path):
    need("root (to mount a tmpfs; CI runs as root)", os.geteuid() == 0)
    env = small_cache
    work = env.workdir("m1")
    other = work / "other-data.txt"
    other.write_text("keep me\n")
    (work / "cache").mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(work / "cache")], check=True)
    try:
        big = _file(tmp_path, "too-big.bin", 2 * MiB)
        r = env.run("submit", "--wait", "--json", f"--put={big}", "echo never", timeout=180)
        assert r.code == 1
        (rec,) = r.json()
        assert rec["state"] == "failed" and rec["exit_code"] is None and rec["stdout"] == ""
        assert rec["reason"].startswith(f"transfer failed: job {rec['id']}: staging inputs in: ")
        assert "too-big.bin" in rec["reason"] and "No space left on device" in rec["reason"]
        assert other.read_text() == "keep me\n"
        assert not (work / "jobs" / rec["id"]).exists()
        r = env.run("submit", "--wait", "echo still fine")
        assert (r.code, r.out) == (0, "still fine\n")
    finally:
        subprocess.run(["umount", str(work / "cache")], check=False)
