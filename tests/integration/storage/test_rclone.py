"""What cmq writes, rclone (a tool nobody here wrote) reads the same way, and the reverse:
contents, file times, empty directories, on SeaweedFS (S3) and Azurite (Azure Blob)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cmqueue.config.inventory import load
from tests.conftest import Result, need
from tests.support.storage_servers import BUCKET, storage_servers  # noqa: F401 (a fixture)

RCLONE = shutil.which("rclone")
#: Files and their times (a fraction of a second included: it must survive both ways).
TIMES = {"a.txt": 1_600_000_000.25, "sub/b.bin": 1_700_000_000.5, "sub/deeper/c.csv": 1_650_000_000.0}
SERVICES = {"s3": "cmqs3", "az": "cmqaz"}


@pytest.fixture(scope="module")
def world(storage_servers, tmp_path_factory):  # noqa: F811
    """`cmq storage` and rclone, both configured for the same S3 and Azure servers."""
    need("rclone (bash .ci/setup --tests)", RCLONE is not None)
    root = tmp_path_factory.mktemp("rclone")
    (root / "box").mkdir()
    config = storage_servers.inventory(root / "cmq.yaml", root / "box")
    storage_servers.make_buckets(load(config))
    cmq_env = {**os.environ, "CMQ_CONFIG": str(config), "CMQ_HOME": str(root / "home"), "CMQ_NO_LAUNCHER": "1"}
    seaweed, azurite = storage_servers.seaweed, storage_servers.azurite
    (root / "rclone.conf").write_text("")
    # rclone 1.60 on Azure takes an account's endpoint as a domain (https://ACCOUNT.ENDPOINT):
    # Azurite on loopback is reached by a container SAS URL, made with Microsoft's SDK.
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    sas = generate_container_sas(azurite.account, BUCKET, account_key=azurite.secret,
                                 permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True,
                                                                    add=True, create=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=2))
    inherited = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}    # rclone 1.60 refuses it on http
    rclone_env = {**inherited, "RCLONE_CONFIG": str(root / "rclone.conf"),
                  "RCLONE_CONFIG_CMQS3_TYPE": "s3", "RCLONE_CONFIG_CMQS3_PROVIDER": "SeaweedFS",
                  "RCLONE_CONFIG_CMQS3_ENDPOINT": seaweed.endpoint,
                  "RCLONE_CONFIG_CMQS3_ACCESS_KEY_ID": seaweed.key,
                  "RCLONE_CONFIG_CMQS3_SECRET_ACCESS_KEY": seaweed.secret,
                  "RCLONE_CONFIG_CMQAZ_TYPE": "azureblob",
                  "RCLONE_CONFIG_CMQAZ_SAS_URL": f"{azurite.endpoint}/{azurite.account}/{BUCKET}?{sas}"}

    class World:
        def cmq(self, *args: str) -> Result:
            p = subprocess.run([sys.executable, "-m", "cmqueue", "storage", *args], capture_output=True, text=True,
                               env=cmq_env, timeout=120, cwd=root)
            return Result(p.returncode, p.stdout, p.stderr)

        def rclone(self, *args: str) -> Result:
            p = subprocess.run([RCLONE, *args], capture_output=True, text=True, env=rclone_env, timeout=120)
            return Result(p.returncode, p.stdout, p.stderr)

    world = World()
    world.root = root
    return world


def _tree(root: Path, empty: bool = True) -> Path:
    """Files with known contents and times, and an empty directory."""
    for rel, mtime in TIMES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{rel}\n".encode() * 100)
        os.utime(path, (mtime, mtime))
    if empty:
        (root / "empty").mkdir()
    return root


def _rfc3339(text: str) -> float:
    """rclone's ModTime (RFC 3339, up to nanoseconds) as epoch seconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    zone = "+00:00"
    for sign in "+-":
        if sign in frac:
            frac, _, rest = frac.partition(sign)
            zone = sign + rest
    return datetime.fromisoformat(head + zone).timestamp() + (float(f"0.{frac}") if frac else 0.0)


@pytest.mark.parametrize("service", list(SERVICES))
def test_what_cmq_writes_rclone_reads_with_its_times_and_empty_directories(world, service):
    tree = _tree(world.root / f"cmq-tree-{service}")
    r = world.cmq("put", "--recursive", str(tree), f"{service}:rc/from-cmq")
    assert r.code == 0, r.err
    remote = f"{SERVICES[service]}:{BUCKET}/rc/from-cmq"
    listed = world.rclone("lsjson", "--recursive", remote)
    assert listed.code == 0, listed.err
    assert "parse" not in listed.err.lower(), listed.err          # rclone: "Couldn't parse mtime"
    files = {e["Path"]: e for e in json.loads(listed.out) if not e["IsDir"]}
    assert set(files) == set(TIMES)
    for rel, mtime in TIMES.items():
        assert _rfc3339(files[rel]["ModTime"]) == pytest.approx(mtime, abs=0.001), (rel, files[rel])
    top = world.rclone("lsjson", "--dirs-only", remote)
    assert top.code == 0, top.err
    assert {e["Path"] for e in json.loads(top.out)} == {"empty", "sub"}                # the marker: a directory
    back = world.root / f"rclone-got-{service}"
    copied = world.rclone("copy", remote, str(back))
    assert copied.code == 0 and "parse" not in copied.err.lower(), copied.err
    for rel, mtime in TIMES.items():
        assert (back / rel).read_bytes() == (tree / rel).read_bytes()
        assert (back / rel).stat().st_mtime == pytest.approx(mtime, abs=0.001)
    checked = world.rclone("check", str(tree), remote)          # sizes and the MD5s both sides give
    assert checked.code == 0, checked.err


@pytest.mark.parametrize("service", list(SERVICES))
def test_what_rclone_writes_cmq_lists_gets_and_syncs_with_its_times_and_says_how_it_verified(world, service):
    tree = _tree(world.root / f"rclone-tree-{service}", empty=False)
    remote = f"{SERVICES[service]}:{BUCKET}/rc/from-rclone"
    sent = world.rclone("copy", str(tree), remote)
    assert sent.code == 0, sent.err

    listed = world.cmq("list", "--recursive", "--output=json", f"{service}:rc/from-rclone")
    assert listed.code == 0, listed.err
    entries = {e["name"].removeprefix("rc/from-rclone/"): e for e in json.loads(listed.out)}
    for rel, mtime in TIMES.items():
        assert entries[rel]["mtime"] == pytest.approx(mtime, abs=0.001), entries[rel]    # rclone's, not the upload's
        assert entries[rel]["sha256"] is None                   # rclone keeps none: nothing is made up

    back = world.root / f"cmq-got-{service}"
    got = world.cmq("get", "--recursive", f"{service}:rc/from-rclone", str(back))
    assert got.code == 0, got.err
    assert "verified 3 by the service's MD5" in got.err and "by SHA-256" not in got.err, got.err
    for rel, mtime in TIMES.items():
        assert (back / rel).read_bytes() == (tree / rel).read_bytes()
        assert (back / rel).stat().st_mtime == pytest.approx(mtime, abs=0.001)

    synced = world.cmq("sync", f"{service}:rc/from-rclone", f"box:from-rclone-{service}")
    assert synced.code == 0, synced.err
    for rel, mtime in TIMES.items():
        kept = world.root / "box" / f"from-rclone-{service}" / rel
        assert kept.read_bytes() == (tree / rel).read_bytes()
        assert kept.stat().st_mtime == pytest.approx(mtime, abs=0.001)
    again = world.cmq("sync", f"{service}:rc/from-rclone", f"box:from-rclone-{service}")
    assert again.code == 0 and "3 already there" in again.err, again.err


def test_a_directory_marker_another_tool_made_is_a_directory_and_comes_back_empty(world, storage_servers):  # noqa: F811
    from cmqueue.storage.cloud_drivers import make_driver

    driver = make_driver(load(world.root / "cmq.yaml").storage["s3"])
    marker = driver.connection.request(f"/{BUCKET}/rc/markers/empty/", method="PUT", data=b"",   # as the S3
                                       headers={"Content-Length": "0"}, raw=False)               # console does
    assert marker.status == 200
    driver.upload_object_via_stream(iter([b"x\n"]), driver.get_container(BUCKET), "rc/markers/full/x.txt")
    listed = world.cmq("list", "--output=json", "s3:rc/markers")
    assert listed.code == 0, listed.err
    assert {(e["name"], e["type"]) for e in json.loads(listed.out)} == {("rc/markers/empty", "dir"),
                                                                       ("rc/markers/full", "dir")}
    back = world.root / "markers-back"
    got = world.cmq("get", "--recursive", "s3:rc/markers", str(back))
    assert got.code == 0, got.err
    assert (back / "empty").is_dir() and not list((back / "empty").iterdir())
    assert (back / "full" / "x.txt").read_text() == "x\n"
    copied = world.cmq("copy", "--recursive", "s3:rc/markers", "az:markers-copy")      # no directories there
    assert copied.code == 0, copied.err
    azure = make_driver(load(world.root / "cmq.yaml").storage["az"])
    made = {o.name for o in azure.list_container_objects(azure.get_container(BUCKET), prefix="markers-copy/")}
    assert made == {"markers-copy/empty/", "markers-copy/full/x.txt"}
