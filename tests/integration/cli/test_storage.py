"""`cmq storage` as a user types it, against a folder, an sshd machine, SeaweedFS (S3) and
Azurite (Azure Blob), all real and started by the tests."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
import yaml

from cmqueue.config.inventory import load
from tests.conftest import Result
from tests.support.storage_servers import storage_servers  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def user(storage_servers, tmp_path_factory):  # noqa: F811
    """Runs `cmq` with an inventory naming box, m1, s3 and az; a local tree to send."""
    root = tmp_path_factory.mktemp("storage-cli")
    (root / "box").mkdir()
    config = storage_servers.inventory(root / "cmq.yaml", root / "box")
    storage_servers.make_buckets(load(config))
    tree = root / "tree"
    (tree / "sub").mkdir(parents=True)
    for i in range(5):
        (tree / f"f{i}.txt").write_text(f"file {i}\n" * (i + 1))
    (tree / "sub" / "deep.csv").write_text("a,b\n1,2\n")
    env = {**os.environ, "CMQ_CONFIG": str(config), "CMQ_HOME": str(root / "home"), "CMQ_NO_LAUNCHER": "1"}

    def run(*args: str, stdin: str | None = None) -> Result:
        p = subprocess.run([sys.executable, "-m", "cmqueue", "storage", *args], capture_output=True, text=True,
                           env=env, input=stdin, timeout=120, cwd=root)
        return Result(p.returncode, p.stdout, p.stderr)

    run.root = root
    run.tree = tree
    run.config = config
    return run


SERVICES = ["box", "m1", "s3", "az"]


@pytest.mark.parametrize("service", SERVICES)
def test_put_list_get_a_tree_round_trips_every_file(user, service):
    r = user("put", "--recursive", str(user.tree), f"{service}:trees/t1")
    assert r.code == 0, r.err
    assert "6 files" in r.err and "verified by SHA-256" in r.err
    listed = user("list", f"{service}:trees/t1", "--recursive", "--output=json")
    assert listed.code == 0, listed.err
    names = sorted(e["name"] for e in json.loads(listed.out))
    assert names == sorted([f"trees/t1/f{i}.txt" for i in range(5)] + ["trees/t1/sub/deep.csv"])
    flat = user("list", f"{service}:trees/t1", "--output=csv")
    rows = list(csv.DictReader(io.StringIO(flat.out)))
    assert {(r["name"], r["type"]) for r in rows} >= {("trees/t1/sub", "dir"), ("trees/t1/f0.txt", "file")}
    back = user.root / f"back-{service}"
    r = user("get", "--recursive", f"{service}:trees/t1", str(back))
    assert r.code == 0, r.err
    for p in user.tree.rglob("*"):
        if p.is_file():
            assert (back / p.relative_to(user.tree)).read_bytes() == p.read_bytes()


def test_copy_between_every_pair_of_services_keeps_the_content(user):
    assert user("put", str(user.tree / "sub" / "deep.csv"), "box:pairs/").code == 0
    chain = ["box", "m1", "s3", "az", "box"]
    for i, (previous, service) in enumerate(zip(chain, chain[1:], strict=False)):
        source = "pairs/deep.csv" if i == 0 else f"pairs/hop{i - 1}.csv"
        r = user("copy", f"{previous}:{source}", f"{service}:pairs/hop{i}.csv")
        assert r.code == 0, r.err
        got = user.root / f"hop{i}.csv"
        assert user("get", f"{service}:pairs/hop{i}.csv", str(got)).code == 0
        assert got.read_text() == "a,b\n1,2\n"


def test_sync_moves_only_what_differs(user):
    assert user("put", "--recursive", str(user.tree), "s3:synced").code == 0
    r = user("sync", str(user.tree), "s3:synced")
    assert r.code == 0, r.err
    assert r.err.startswith("0 files, 0 B")                       # nothing changed: nothing moves
    (user.tree / "f1.txt").write_text("changed\n")
    r = user("sync", str(user.tree), "s3:synced")
    assert r.err.startswith("1 file,"), r.err
    (user.tree / "f1.txt").write_text("file 1\n" * 2)


def test_search_finds_by_name_or_glob_and_says_when_nothing_matches(user):
    assert user("put", "--recursive", str(user.tree), "az:found").code == 0
    r = user("search", "az:found", "*.csv", "--recursive", "--output=json")
    assert r.code == 0, r.err
    assert [e["name"] for e in json.loads(r.out)] == ["found/sub/deep.csv"]
    r = user("search", "az:found", "f3.txt")
    assert r.code == 0 and "found/f3.txt" in r.out
    assert user("search", "az:found", "nothing*").code == 1


@pytest.mark.parametrize("service", SERVICES)
def test_delete_and_create_dir(user, service):
    assert user("put", str(user.tree / "f0.txt"), f"{service}:gone/f0.txt").code == 0
    r = user("delete", f"{service}:gone")
    assert r.code == 0 and "1 file" in r.err
    assert user("list", f"{service}:gone").code != 0
    r = user("create", "dir", f"{service}:made/here")
    assert r.code == 0, r.err
    if service in ("box", "m1"):
        assert "made/here" in user("list", f"{service}:made").out
    else:
        assert "nothing was kept" in r.err


def test_config_list_masks_the_secrets(user, storage_servers):  # noqa: F811
    r = user("config", "list", "--output=json")
    assert r.code == 0, r.err
    rows = {row["name"]: row for row in json.loads(r.out)}
    assert set(rows) == {"box", "m1", "s3", "az"}
    assert rows["s3"]["secret"] == "***" and rows["az"]["secret"] == "***"
    everything = r.out + user("config", "list").out
    assert storage_servers.seaweed.secret not in everything and storage_servers.azurite.secret not in everything


@pytest.mark.parametrize("args, message", [
    (["list", "nosuch:x"], "unknown storage service 'nosuch'"),
    (["list", "box:../etc"], "'..' part"),
    (["put", "/no/such/file", "box:x"], "/no/such/file: no such file or directory"),
    (["get", "box:missing.txt", "out.txt"], "box:missing.txt: no such file"),
    (["list", "x"], "which storage service?"),
    (["list", "box:", "--output=xml"], "--output=xml: must be one of table, json, csv"),
])
def test_bad_input_gets_one_line_and_exit_2(user, args, message):
    """Bad usage and names that do not exist (a local file, a file on a service) are exit
    2, as in `cmq submit --put` and `cmq vdir`."""
    r = user(*args)
    assert r.code == 2, (r.code, r.err)
    assert message in r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err


def test_a_server_that_is_down_or_refuses_the_secret_is_one_line(user, tmp_path):
    inv = yaml.safe_load(user.config.read_text())
    inv["storage"]["s3"]["endpoint"] = "http://127.0.0.1:1"
    inv["storage"]["az"]["secret"] = "d3Jvbmc="
    inv["storage"]["az2"] = {**inv["storage"]["az"], "secret": yaml.safe_load(user.config.read_text())["storage"]
                             ["az"]["secret"], "container": "no-such-container"}
    inv["machines"]["dead"] = {"host": "127.0.0.1", "port": 1}          # nothing listens there
    inv["storage"]["gone"] = {"type": "ssh", "machine": "dead"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(inv))
    bad.chmod(0o600)
    for service, words in (("s3", "cannot reach"), ("az", "refused the key and secret"),
                           ("az2", "container (bucket) 'no-such-container' does not exist"),
                           ("gone", "cannot reach machine dead")):
        p = subprocess.run([sys.executable, "-m", "cmqueue", "-c", str(bad), "storage", "list", f"{service}:"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 3, p.stderr
        assert words in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_a_tbd_secret_without_a_terminal_is_refused_and_an_open_secret_file_too(user, tmp_path):
    inv = yaml.safe_load(user.config.read_text())
    inv["storage"]["s3"]["secret"] = "TBD"
    secret_file = tmp_path / "az.secret"
    secret_file.write_text(inv["storage"]["az"].pop("secret") + "\n")
    secret_file.chmod(0o644)
    inv["storage"]["az"]["secret_file"] = str(secret_file)
    bad = tmp_path / "tbd.yaml"
    bad.write_text(yaml.safe_dump(inv))
    bad.chmod(0o600)
    p = subprocess.run([sys.executable, "-m", "cmqueue", "-c", str(bad), "storage", "list", "s3:"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "storage.s3.secret: is TBD" in p.stderr
    p = subprocess.run([sys.executable, "-m", "cmqueue", "-c", str(bad), "storage", "list", "az:"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "chmod 600" in p.stderr
    secret_file.chmod(0o600)
    p = subprocess.run([sys.executable, "-m", "cmqueue", "-c", str(bad), "storage", "list", "az:"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("service", ["box", "m1", "az"])
def test_sync_leaves_a_newer_destination_file_alone_and_says_so(user, service):
    tree = user.root / f"newer-{service}"
    tree.mkdir()
    (tree / "x.txt").write_text("old content\n")
    os.utime(tree / "x.txt", (1_600_000_000, 1_600_000_000))
    assert user("sync", str(tree), f"{service}:newer").code == 0
    edited = user.root / f"edited-{service}.txt"
    edited.write_text("edited there, later\n")
    os.utime(edited, (1_700_000_000, 1_700_000_000))
    assert user("put", str(edited), f"{service}:newer/x.txt").code == 0
    r = user("sync", str(tree), f"{service}:newer")
    assert r.code == 0, r.err
    assert "left alone, newer at the destination" in r.err and "(1 left alone" in r.err
    back = user.root / f"kept-{service}.txt"
    assert user("get", f"{service}:newer/x.txt", str(back)).code == 0
    assert back.read_text() == "edited there, later\n"


def test_parallel_without_workers_says_to_start_them_and_sends_nothing(user):
    r = user("--parallel=2", "put", "-r", str(user.tree), "box:never")
    assert r.code == 3, r.err
    assert "cmq up" in r.err and len(r.err.strip().splitlines()) == 1
    assert not (user.root / "box" / "never").exists()


def test_one_rule_for_trees_and_slashes_in_put_get_copy_and_sync(user, tmp_path):
    """first-contact-round2: the rule of `cmq put`/`get` (rclone's): a directory gives its
    contents to the destination whatever the slashes; one file goes inside a destination
    that ends in / (or is a directory), else takes its name."""
    tree = user.tree
    want = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())

    def listed(where: str) -> list[str]:
        rows = json.loads(user("list", where, "--recursive", "--output=json").out)
        base = where.split(":", 1)[1].rstrip("/")
        return sorted(r["name"][len(base) + 1:] for r in rows if r["type"] == "file")

    for spelled, dest in ((f"{tree}/", "box:rule/a/"), (str(tree), "box:rule/b"), (str(tree), "box:rule/c/")):
        assert user("put", "-r", spelled, dest).code == 0
        assert listed(dest) == want, dest
    assert user("copy", "-r", "box:rule/a/", "m1:rule/d").code == 0 and listed("m1:rule/d") == want
    assert user("sync", f"{tree}/", "box:rule/e/").code == 0 and listed("box:rule/e") == want
    for spelled, dest in (("box:rule/a/", tmp_path / "x"), ("box:rule/a", tmp_path / "y")):
        assert user("get", "-r", spelled, f"{dest}/").code == 0
        assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == want
    assert user("put", str(tree / "f0.txt"), "box:rule/f/").code == 0 and listed("box:rule/f") == ["f0.txt"]
    assert user("put", str(tree / "f0.txt"), "box:rule/g.txt").code == 0
    assert user("get", "box:rule/g.txt", f"{tmp_path}/z/").code == 0 and (tmp_path / "z" / "g.txt").exists()
