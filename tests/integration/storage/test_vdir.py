"""`cmq vdir` as a user types it: names over files on a folder, an sshd machine, S3
(SeaweedFS) and Azure Blob (Azurite), kept in the history store's database (SQLite and
MongoDB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cmqueue.config.inventory import load
from tests.conftest import Result
from tests.support.storage_servers import storage_servers  # noqa: F401 (a fixture)


@pytest.fixture(scope="module", params=["sqlite", "mongo"])
def user(request, storage_servers, tmp_path_factory):  # noqa: F811
    """Runs `cmq` with services box, m1, s3, az; the history in SQLite or MongoDB."""
    root = tmp_path_factory.mktemp(f"vdir-{request.param}")
    (root / "box").mkdir()
    config = storage_servers.inventory(root / "cmq.yaml", root / "box", directory=f"vdir-{request.param}")
    storage_servers.make_buckets(load(config))
    env = {**os.environ, "CMQ_CONFIG": str(config), "CMQ_HOME": str(root / "home"), "CMQ_NO_LAUNCHER": "1"}
    if request.param == "mongo":
        url = request.getfixturevalue("mongo_url")
        env["CMQ_HISTORY"] = f"{url}/cmq_vdir_{os.getpid()}"
    prefix = f"v{request.param}"

    def run(*args: str) -> Result:
        p = subprocess.run([sys.executable, "-m", "cmqueue", *args], capture_output=True, text=True, env=env,
                           timeout=120, cwd=root)
        return Result(p.returncode, p.stdout, p.stderr)

    def put(text: str, where: str) -> None:
        src = root / "src.txt"
        src.write_text(text)
        r = run("storage", "put", str(src), where)
        assert r.code == 0, r.err

    run.root, run.put, run.prefix, run.config = root, put, prefix, config
    return run


def test_names_replicas_and_a_preferred_copy(user):
    p = user.prefix
    user.put("alpha\n", f"box:{p}/in/a.txt")
    assert user("vdir", "mkdir", "/proj/raw").code == 0
    assert user("vdir", "cd", "/proj/raw").out.strip() == "/proj/raw"
    assert user("vdir", "pwd").out.strip() == "/proj/raw"          # the working directory lasts
    r = user("vdir", "add", f"box:{p}/in/a.txt", "a.txt")
    assert r.code == 0 and "added" in r.err, r.err
    r = user("vdir", "replicate", "a.txt", "s3", "az", "m1")
    assert r.code == 0, r.err
    status = user("vdir", "status", "a.txt", "--verify", "--output=json")
    assert status.code == 0, status.err
    info = json.loads(status.out)
    assert {r["service"] for r in info["replicas"]} == {"box", "s3", "az", "m1"}
    assert all(r["state"] == "ok" for r in info["replicas"])
    assert user("vdir", "prefer", "a.txt", "az").code == 0
    out = user.root / "got.txt"
    r = user("vdir", "get", "/proj/raw/a.txt", str(out))
    assert r.code == 0 and "from az" in r.err, r.err
    assert out.read_text() == "alpha\n"
    # {service}/{dirname}/{basename}: one replica
    r = user("vdir", "get", "/m1/proj/raw/a.txt", str(user.root / "from-m1.txt"))
    assert r.code == 0 and "from m1" in r.err, r.err
    listed = json.loads(user("vdir", "ls", "--output=json").out)
    assert [(f["name"], f["preferred"]) for f in listed] == [("a.txt", "az")]
    top = user("vdir", "ls", "/").out
    assert "proj/" in top


def test_newer_content_updates_every_replica_and_older_is_a_conflict(user):
    p = user.prefix
    assert user("vdir", "mkdir", "/upd").code == 0
    user.put("one\n", f"box:{p}/upd/f.txt")
    assert user("vdir", "add", f"box:{p}/upd/f.txt", "/upd/f.txt").code == 0
    assert user("vdir", "replicate", "/upd/f.txt", "s3").code == 0
    user.put("two, newer\n", f"az:{p}/upd/f.txt")                    # written after: newer
    r = user("vdir", "add", f"az:{p}/upd/f.txt", "/upd/f.txt")
    assert r.code == 0 and "updated" in r.err, r.err
    for service, name in (("box", f"{p}/upd/f.txt"), ("s3", "upd/f.txt")):
        got = user.root / f"upd-{service}.txt"
        assert user("storage", "get", f"{service}:{name}", str(got)).code == 0
        assert got.read_text() == "two, newer\n"
    # Older content under the same name: refused, nothing changes.
    src = user.root / "old.txt"
    src.write_text("older\n")
    os.utime(src, (1_000_000_000, 1_000_000_000))
    assert user("storage", "put", str(src), f"m1:{p}/upd/old.txt").code == 0
    r = user("vdir", "add", f"m1:{p}/upd/old.txt", "/upd/f.txt")
    assert r.code == 1 and "conflict" in r.err and "nothing changed" in r.err
    assert len(r.err.strip().splitlines()) == 1
    info = json.loads(user("vdir", "status", "/upd/f.txt", "--output=json").out)
    assert info["size"] == len("two, newer\n") and {x["service"] for x in info["replicas"]} == {"box", "s3", "az"}


def test_status_finds_a_replica_that_went_missing_and_get_falls_back(user):
    p = user.prefix
    assert user("vdir", "mkdir", "/miss").code == 0
    user.put("keep me\n", f"s3:{p}/miss/k.txt")
    assert user("vdir", "add", f"s3:{p}/miss/k.txt", "/miss/").code == 0
    assert user("vdir", "replicate", "/miss/k.txt", "box").code == 0
    assert user("storage", "delete", f"s3:{p}/miss/k.txt").code == 0
    r = user("vdir", "status", "/miss/k.txt")
    assert r.code == 1 and "missing" in r.out
    got = user.root / "fallback.txt"
    r = user("vdir", "get", "/miss/k.txt", str(got))
    assert r.code == 0 and "from box" in r.err, r.err
    assert got.read_text() == "keep me\n"


def test_delete_forgets_names_and_purge_removes_the_files(user):
    p = user.prefix
    assert user("vdir", "mkdir", "/del/sub").code == 0
    user.put("x\n", f"box:{p}/del/x.txt")
    assert user("vdir", "add", f"box:{p}/del/x.txt", "/del/sub/x.txt").code == 0
    r = user("vdir", "delete", "/del")
    assert r.code == 0 and "1 file" in r.err and "stay on their services" in r.err
    assert user("vdir", "ls", "/del").code != 0
    assert (user.root / "box" / p / "del" / "x.txt").exists()
    assert user("vdir", "mkdir", "/del").code == 0
    assert user("vdir", "add", f"box:{p}/del/x.txt", "/del/x.txt").code == 0
    assert user("vdir", "delete", "/del/x.txt", "--purge").code == 0
    assert not (user.root / "box" / p / "del" / "x.txt").exists()


@pytest.mark.parametrize("args, message, code", [
    (["vdir", "cd", "/no/such"], "vdir /no/such: no such directory", 2),
    (["vdir", "add", "box:nothing-here.txt", "/"], "box:nothing-here.txt: no such file", 2),
    (["vdir", "add", "nothing", "/"], "give the file as SERVICE:PATH", 2),
    (["vdir", "get", "/none.txt", "x"], "vdir /none.txt: no such file", 2),
    (["vdir", "prefer", "/none.txt", "s3"], "vdir /none.txt: no such file", 2),
    (["vdir", "delete", "/"], "the root is not deleted", 2),
])
def test_bad_input_is_one_line(user, args, message, code):
    """A name that does not exist is exit 2 here as in every command (MissingError)."""
    r = user(*args)
    assert r.code == code, (r.code, r.err)
    assert message in r.err and len(r.err.strip().splitlines()) == 1


def test_a_name_under_a_missing_directory_says_how_to_make_it(user):
    p = user.prefix
    user.put("y\n", f"box:{p}/y.txt")
    r = user("vdir", "add", f"box:{p}/y.txt", "/nowhere/y.txt")
    assert r.code == 2 and "cmq vdir mkdir /nowhere" in r.err


def test_get_of_a_directory_brings_every_file_under_it(user):
    p = user.prefix
    assert user("vdir", "mkdir", "/tree/sub").code == 0
    user.put("top\n", f"box:{p}/tree/top.txt")
    assert user("vdir", "add", f"box:{p}/tree/top.txt", "/tree/").code == 0
    user.put("deep\n", f"s3:{p}/tree/deep.txt")
    assert user("vdir", "add", f"s3:{p}/tree/deep.txt", "/tree/sub/").code == 0
    r = user("vdir", "get", "/tree", str(user.root / "tree-out"))
    assert r.code == 0 and "2 file(s)" in r.err, r.err
    assert (user.root / "tree-out" / "top.txt").read_text() == "top\n"
    assert (user.root / "tree-out" / "sub" / "deep.txt").read_text() == "deep\n"
