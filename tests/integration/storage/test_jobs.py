"""`cmq storage --parallel=N`: the files of one command go as N jobs on the storage
queue, run by the workers `cmq up` started, recorded in the history, verified."""

from __future__ import annotations

import pytest

from cmqueue.config.inventory import load
from tests.conftest import make_env, teardown
from tests.support.storage_servers import BUCKET, storage_servers  # noqa: F401 (a fixture)

#: First loopback address of this module's two machines.
FIRST = 205


@pytest.fixture(scope="module")
def cenv(storage_servers, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("storage-queue")
    (root / "box").mkdir()
    s3, az = storage_servers.seaweed, storage_servers.azurite
    sections = {"storage": {
        "box": {"type": "local", "directory": str(root / "box")},
        "node": {"type": "ssh", "machine": "m1", "directory": "store"},
        "s3": {"type": "s3", "endpoint": s3.endpoint, "bucket": BUCKET, "key": s3.key, "secret": s3.secret},
        "az": {"type": "azure", "endpoint": az.endpoint, "container": BUCKET, "key": az.account, "secret": az.secret},
    }}
    env = make_env(root, machines=2, slots=2, first=FIRST, sections=sections)
    storage_servers.make_buckets(load(env.config))
    tree = root / "tree"
    for d in range(3):
        (tree / f"d{d}").mkdir(parents=True)
        for i in range(7):
            (tree / f"d{d}" / f"f{i}.bin").write_bytes(bytes([d, i]) * (1000 * (i + 1)))
    env.tree = tree
    yield env
    teardown(env)


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def storage_jobs(cenv):
    rows = cenv.run("jobs", "--json", "--last=1000", check=True).json()
    return [r for r in rows if r["kind"] == "storage"]


def test_a_tree_goes_as_n_jobs_on_the_queue_and_comes_back_whole(cenv):
    before = {j["id"] for j in storage_jobs(cenv)}
    r = cenv.run("storage", "--parallel=4", "put", "--recursive", str(cenv.tree), "s3:queued/t")
    assert r.code == 0, r.err
    assert "21 files" in r.err
    new = [j for j in storage_jobs(cenv) if j["id"] not in before]
    assert len(new) == 4 and all(j["state"] == "succeeded" for j in new)
    assert sum(int(j["command"].split(": ")[-1].split(" file")[0]) for j in new) == 21
    back = cenv.root / "back"
    r = cenv.run("storage", "--parallel=3", "get", "--recursive", "s3:queued/t", str(back))
    assert r.code == 0, r.err
    assert files(back) == files(cenv.tree)


def test_relative_local_paths_name_the_same_files_for_the_workers(cenv):
    """A worker runs in its own directory: the client's relative paths go as absolute ones."""
    r = cenv.run("storage", "--parallel=2", "put", "-r", "tree/d2", "box:relative", cwd=cenv.root)
    assert r.code == 0, r.err
    assert files(cenv.root / "box" / "relative") == files(cenv.tree / "d2")
    r = cenv.run("storage", "--parallel=2", "get", "-r", "box:relative", "back-relative/", cwd=cenv.root)
    assert r.code == 0, r.err
    assert files(cenv.root / "back-relative") == files(cenv.tree / "d2")


def test_copy_between_services_through_the_queue(cenv):
    assert cenv.run("storage", "--parallel=2", "put", "-r", str(cenv.tree / "d1"), "az:c/d1").code == 0
    r = cenv.run("storage", "--parallel=3", "copy", "--recursive", "az:c/d1", "node:copied")
    assert r.code == 0, r.err
    listed = cenv.run("storage", "list", "node:copied", "--output=json", check=True).json()
    assert sorted(e["name"] for e in listed) == [f"copied/f{i}.bin" for i in range(7)]
    on_machine = cenv.workdir("m1") / "store" / "copied"
    assert files(on_machine) == files(cenv.tree / "d1")


def test_a_file_that_cannot_be_stored_fails_its_job_with_the_reason(cenv):
    blocker = cenv.root / "box" / "blocked" / "d0" / "f0.bin"
    blocker.mkdir(parents=True)                        # a directory where a file must go
    r = cenv.run("storage", "--parallel=2", "put", "-r", str(cenv.tree), "box:blocked", timeout=180)
    assert r.code == 1
    assert "1 of 2 storage job(s) failed" in r.err
    failed = [j for j in storage_jobs(cenv) if j["state"] == "failed"]
    assert len(failed) == 1
    assert "box:blocked/d0/f0.bin: is a directory" in failed[0]["reason"]
    assert failed[0]["attempt"] == 3                       # retried twice, as storage jobs are
    status = cenv.run("status", failed[0]["id"])
    assert "failed" in status.out
    # the other job's files are there, verified
    assert (cenv.root / "box" / "blocked" / "d2" / "f6.bin").read_bytes() == (cenv.tree / "d2" / "f6.bin").read_bytes()


def test_an_async_sync_returns_its_batch_and_sync_status_follows_it(cenv):
    r = cenv.run("storage", "sync", str(cenv.tree), "box:mirror", "--name=nightly", "--async", "--parallel=2")
    assert r.code == 0, r.err
    batch = r.out.strip()
    assert batch.startswith("sync-nightly-")
    assert cenv.run("wait", batch, timeout=120).code == 0
    status = cenv.run("storage", "sync", "status", "--name=nightly", "--output=json", check=True).json()
    assert [(s["sync"], s["state"], s["files"], s["skipped"]) for s in status] == [("nightly", "done", 21, 0)]
    # Again, nothing changed: every file is already there and nothing moves.
    r = cenv.run("storage", "sync", str(cenv.tree), "box:mirror", "--name=nightly", "--parallel=2")
    assert r.code == 0, r.err
    assert r.err.startswith("0 files, 0 B") and "(21 already there)" in r.err
    r = cenv.run("storage", "sync", str(cenv.tree), "box:mirror", "--name=nightly", "--async")
    assert r.code == 0 and r.out == "" and "nothing to move (21 file(s) already there)" in r.err
    (cenv.tree / "d1" / "f3.bin").write_bytes(b"changed")
    r = cenv.run("storage", "sync", str(cenv.tree), "box:mirror", "--name=nightly", "--parallel=2")
    assert r.code == 0 and r.err.startswith("1 file,") and "(20 already there)" in r.err, r.err
    status = cenv.run("storage", "sync", "status", "--name=nightly", "--output=json", check=True).json()
    assert [(s["files"], s["state"]) for s in status] == [(21, "done"), (1, "done")]
    (cenv.tree / "d1" / "f3.bin").write_bytes(bytes([1, 3]) * 4000)
    everything = cenv.run("storage", "sync", "status", check=True)
    assert "nightly" in everything.out
    missing = cenv.run("storage", "sync", "status", "--name=never")
    assert missing.code == 2 and "no sync called never" in missing.err
