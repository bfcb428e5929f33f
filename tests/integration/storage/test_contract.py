"""One contract, every provider: a folder, a directory on an sshd machine, SeaweedFS
through libcloud's S3 driver, Azurite through libcloud's Azure Blob driver (real servers,
started here). Each test runs once per provider in a directory of its own."""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest

from cmqueue.config.inventory import load
from cmqueue.machine.runner import close_all_masters
from cmqueue.storage import NotFoundError, StorageError, open_service
from cmqueue.storage.names import BadNameError
from cmqueue.storage.signed_http import SignedHttp
from cmqueue.storage.ssh import STORAGE_MASTERS
from tests.support.storage_servers import storage_servers  # noqa: F401 (a fixture)

#: s3 and az again through libcloud's own HTTP session (requests), as a proxy or a client
#: certificate makes them go, instead of the kept-alive connection.
PROVIDERS = ["box", "m1", "s3", "az", "s3/requests", "az/requests"]


@pytest.fixture(scope="module")
def inventory(storage_servers, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("inv")
    (root / "box").mkdir()
    inv = load(storage_servers.inventory(root / "cmq.yaml", root / "box"))
    storage_servers.make_buckets(inv)
    return inv


@pytest.fixture(params=PROVIDERS)
def service(request, inventory, tmp_path, monkeypatch):
    """A provider and a fresh directory name on it (every test works under it)."""
    monkeypatch.setenv("CMQ_HOME", str(tmp_path / "home"))
    name, _, through = request.param.partition("/")
    if through == "requests":
        monkeypatch.setattr(SignedHttp, "usable", staticmethod(lambda conn: False))
    provider = open_service(inventory, name)
    assert (getattr(provider, "_http", None) is None) == (name in ("box", "m1") or through == "requests")
    top = f"t-{secrets.token_hex(4)}"
    yield provider, top
    provider.close()
    close_all_masters()                              # a machine's master, this test's home


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(provider, name: str, data: bytes, mtime: float | None = None):
    return provider.write(name, [data[i:i + 65536] for i in range(0, len(data), 65536)] or [b""], sha(data), mtime)


def test_a_file_written_reads_back_with_its_size_hash_and_time(service):
    provider, top = service
    data = secrets.token_bytes(3 * (1 << 20) + 17)            # more than one chunk
    entry = put(provider, f"{top}/a.bin", data, mtime=1_700_000_000.25)
    assert entry.size == len(data) and entry.sha256 == sha(data)
    assert b"".join(provider.read(f"{top}/a.bin")) == data
    st = provider.stat(f"{top}/a.bin")
    assert st.size == len(data) and not st.is_dir
    assert abs(st.mtime - 1_700_000_000.25) < 1.0
    assert provider.hash(f"{top}/a.bin") == sha(data)


def test_data_that_does_not_match_its_hash_is_not_kept(service):
    provider, top = service
    with pytest.raises(StorageError, match="SHA-256|sha256"):
        provider.write(f"{top}/bad.txt", [b"what was sent"], sha(b"what was meant"))
    assert provider.stat(f"{top}/bad.txt") is None
    names = [e.name for e in provider.list(top, recursive=True)] if provider.stat(top) else []
    assert names == []                                    # no temporary file either


def test_listing_shows_files_and_directories_and_recursive_every_file(service):
    provider, top = service
    for name in ("a.txt", "sub/b.txt", "sub/deeper/c.txt", "with space é.txt", "-dash.txt"):
        put(provider, f"{top}/{name}", name.encode())
    flat = {(e.name, e.is_dir) for e in provider.list(top)}
    assert flat == {(f"{top}/a.txt", False), (f"{top}/sub", True), (f"{top}/with space é.txt", False),
                    (f"{top}/-dash.txt", False)}
    deep = [e.name for e in provider.list(top, recursive=True)]
    assert deep == sorted([f"{top}/a.txt", f"{top}/sub/b.txt", f"{top}/sub/deeper/c.txt",
                           f"{top}/with space é.txt", f"{top}/-dash.txt"])
    sizes = {e.name: e.size for e in provider.list(f"{top}/sub", recursive=True)}
    assert sizes == {f"{top}/sub/b.txt": len(b"sub/b.txt"), f"{top}/sub/deeper/c.txt": len(b"sub/deeper/c.txt")}
    assert provider.stat(f"{top}/sub").is_dir
    with pytest.raises(NotFoundError):
        provider.list(f"{top}/nothing-here")


def test_delete_removes_a_file_or_a_whole_directory(service):
    provider, top = service
    for name in ("keep.txt", "d/x.txt", "d/e/y.txt"):
        put(provider, f"{top}/{name}", b"x")
    assert provider.delete(f"{top}/keep.txt") == 1
    assert provider.stat(f"{top}/keep.txt") is None
    assert provider.delete(f"{top}/d") == 2
    assert provider.stat(f"{top}/d") is None and provider.stat(f"{top}/d/e/y.txt") is None
    with pytest.raises(NotFoundError):
        provider.delete(f"{top}/d")


def test_mkdir_makes_a_directory_where_the_service_has_them(service):
    provider, top = service
    made = provider.mkdir(f"{top}/new/dir")
    assert made == provider.has_dirs
    if provider.has_dirs:
        assert provider.stat(f"{top}/new/dir").is_dir
        assert provider.list(f"{top}/new/dir") == []
    else:
        assert provider.stat(f"{top}/new/dir") is None    # a prefix exists by what is under it


@pytest.mark.parametrize("bad", ["../escape.txt", "a/../../escape.txt", "a//b", "./a", "a\0b", "a\\b"])
def test_names_that_escape_are_refused(service, bad):
    provider, top = service
    with pytest.raises(BadNameError):
        provider.write(bad, [b"x"], sha(b"x"))
    with pytest.raises(BadNameError):
        provider.stat(bad)
    with pytest.raises(BadNameError):
        provider.delete(bad)


def test_put_file_and_get_file_copy_local_files_verified(service, tmp_path):
    provider, top = service
    src = tmp_path / "src.bin"
    src.write_bytes(secrets.token_bytes(200_000))
    os.utime(src, (1_600_000_000, 1_600_000_000))
    provider.put_file(src, f"{top}/copy.bin")
    dest = tmp_path / "out" / "copy.bin"
    entry = provider.get_file(f"{top}/copy.bin", dest)
    assert dest.read_bytes() == src.read_bytes()
    assert entry.sha256 == sha(src.read_bytes())
    assert abs(dest.stat().st_mtime - 1_600_000_000) < 1.0       # the time travels with the file
    assert [p.name for p in dest.parent.iterdir()] == ["copy.bin"]  # no partial file left
    with pytest.raises(NotFoundError):
        provider.get_file(f"{top}/missing.bin", tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_a_file_replaced_reads_its_new_content(service):
    provider, top = service
    put(provider, f"{top}/v.txt", b"one")
    time.sleep(0.01)
    put(provider, f"{top}/v.txt", b"two, longer")
    assert b"".join(provider.read(f"{top}/v.txt")) == b"two, longer"
    assert provider.hash(f"{top}/v.txt") == sha(b"two, longer")


def test_many_files_at_once_go_and_come_back_verified_with_their_times(service, tmp_path):
    provider, top = service
    src = tmp_path / "src"
    items = []
    for i in range(30):
        p = src / f"d{i % 3}" / f"file {i}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(secrets.token_bytes(100 * i))
        os.utime(p, (1_650_000_000 + i, 1_650_000_000 + i))
        items.append((p, f"{top}/many/d{i % 3}/file {i}.txt"))
    moved = []
    entries = provider.put_files(items, on_bytes=moved.append)
    assert sum(moved) == sum(p.stat().st_size for p, _ in items)
    assert [e.sha256 for e in entries] == [sha(p.read_bytes()) for p, _ in items]
    assert len(provider.list(f"{top}/many", recursive=True)) == 30
    back = [(name, tmp_path / "back" / name) for _, name in items]
    provider.get_files(back)
    for (p, _), (_, local) in zip(items, back, strict=True):
        assert local.read_bytes() == p.read_bytes()
        assert abs(local.stat().st_mtime - p.stat().st_mtime) < 1.0
    with pytest.raises(NotFoundError):
        provider.get_files([(f"{top}/many/absent.txt", tmp_path / "absent.txt")])
    assert not (tmp_path / "absent.txt").exists()


def test_describe_gives_size_and_a_content_hash_of_many_files_and_skips_missing_ones(service):
    provider, top = service
    assert provider.describe([f"{top}/none/a.txt"]) == {}             # not even the directory exists
    data = {f"{top}/x/a.txt": b"alpha", f"{top}/x/y/b.txt": b"beta!", f"{top}/c.txt": b"c"}
    for name, content in data.items():
        put(provider, name, content)
    found = provider.describe([*data, f"{top}/x/missing.txt"])
    assert set(found) == set(data)
    for name, content in data.items():
        entry = found[name]
        assert entry.size == len(content)
        assert entry.sha256 == sha(content) or entry.md5 == hashlib.md5(content).hexdigest()


def test_a_copy_within_the_service_keeps_content_hash_and_time_and_the_source(service):
    """Every provider here copies on the service itself: the bytes never come through cmq."""
    provider, top = service
    data = secrets.token_bytes(70_000)
    put(provider, f"{top}/src/a.bin", data, mtime=1_690_000_000.0)
    entry = provider.copy_within(f"{top}/src/a.bin", f"{top}/dst/deep/b.bin")
    assert entry is not None and entry.size == len(data)
    assert provider.hash(f"{top}/dst/deep/b.bin") == sha(data)
    assert b"".join(provider.read(f"{top}/dst/deep/b.bin")) == data
    assert abs(provider.stat(f"{top}/dst/deep/b.bin").mtime - 1_690_000_000.0) < 1.0
    assert provider.stat(f"{top}/src/a.bin").size == len(data)
    with pytest.raises(NotFoundError):
        provider.copy_within(f"{top}/src/absent.bin", f"{top}/dst/c.bin")
    assert provider.stat(f"{top}/dst/c.bin") is None


@pytest.mark.parametrize("name", ["s3", "az"])
def test_an_object_store_keeps_one_connection_and_replaces_one_the_server_closed(inventory, tmp_path, monkeypatch,
                                                                                 name):
    monkeypatch.setenv("CMQ_HOME", str(tmp_path / "home"))
    provider = open_service(inventory, name)
    top = f"t-{secrets.token_hex(4)}"
    try:
        local = tmp_path / "a.txt"
        local.write_bytes(b"kept alive")
        provider.put_file(local, f"{top}/a.txt")
        kept = provider._http.http.sock
        assert kept is not None
        for i in range(3):
            provider.get_file(f"{top}/a.txt", tmp_path / f"got{i}.txt")
        assert provider._http.http.sock is kept                    # every request on one connection
        kept.shutdown(socket.SHUT_RDWR)                            # as a server does with an idle one
        entry = provider.get_file(f"{top}/a.txt", tmp_path / "after.txt")
        assert (tmp_path / "after.txt").read_bytes() == b"kept alive" and entry.sha256 == sha(b"kept alive")
        assert provider._http.http.sock is not kept
    finally:
        provider.delete(top)
        provider.close()


def test_a_machine_is_reached_through_a_few_ssh_masters_that_later_commands_reuse(inventory, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setenv("CMQ_HOME", str(tmp_path / "home"))
    providers = [open_service(inventory, "m1") for _ in range(STORAGE_MASTERS + 2)]
    controls = {p.transfer.control for p in providers}
    try:
        assert len(controls) == STORAGE_MASTERS                        # providers take turns
        for p in providers:
            assert p.stat("no-such-file") is None
        for control in controls:                                       # the first command left each one
            check = ["ssh", "-o", f"ControlPath={control}", "-O", "check", "--", "cmq-master"]
            assert subprocess.run(check, capture_output=True).returncode == 0
        put(providers[0], "reused.txt", b"through a master")
        assert providers[-1].stat("reused.txt").size == len(b"through a master")
        providers[1].delete("reused.txt")
    finally:
        for p in providers:
            p.close()
        assert close_all_masters() == STORAGE_MASTERS
    assert subprocess.run(check, capture_output=True).returncode != 0


def test_a_machine_never_lists_what_it_is_still_receiving(inventory, tmp_path, monkeypatch):
    monkeypatch.setenv("CMQ_HOME", str(tmp_path / "home"))
    provider = open_service(inventory, "m1")
    top = f"t-{secrets.token_hex(4)}"
    put(provider, f"{top}/done.txt", b"done")
    root = Path(provider.root)                       # the loopback machine's directory, here
    (root / top / ".cmq-part-abc123").mkdir()
    (root / top / ".cmq-part-abc123" / "half.txt").write_bytes(b"ha")
    (root / top / ".half.txt.1234.cmq-part").write_bytes(b"ha")
    assert [e.name for e in provider.list(top)] == [f"{top}/done.txt"]
    assert [e.name for e in provider.list(top, recursive=True)] == [f"{top}/done.txt"]
