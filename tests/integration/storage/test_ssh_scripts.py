"""The shell scripts a machine runs for the ssh storage provider, run here with sh: the
SHA-256 they report is the same whichever tool the machine has (OpenSSL or coreutils)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from cmqueue.storage import ssh
from tests.conftest import need

NAMES = ["plain.txt", "-starts-with-dash.txt", "with space.txt", "d/deep.bin"]


@pytest.fixture(params=["openssl", "coreutils"])
def tools(request, tmp_path):
    """A PATH with the tools the scripts use, with OpenSSL or without it."""
    bin_dir = tmp_path / f"bin-{request.param}"
    bin_dir.mkdir()
    wanted = ["sh", "cat", "xargs", "sha256sum", "rm", "mktemp", "stat", "mv", "head", "tee", "mkdir", "dirname",
              "touch", "cp"]
    if request.param == "openssl":
        wanted.append("openssl")
    for tool in wanted:
        found = shutil.which(tool)
        need(tool, found is not None)
        (bin_dir / tool).symlink_to(found)
    return request.param, str(bin_dir)


def run(script: str, *args: str, path: str, data: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("sh"), "-c", script, "cmq", *args], input=data, capture_output=True,
                          env={**os.environ, "PATH": path}, check=False)


def test_the_hash_tool_is_openssl_when_installed_else_sha256sum(tools):
    kind, path = tools
    out = run(ssh._SUM + 'echo "$sum"', path=path).stdout.decode().strip()
    assert out == ("openssl dgst -sha256 -r" if kind == "openssl" else "sha256sum")


def test_describe_gives_the_same_digests_with_either_tool(tools, tmp_path):
    _, path = tools
    root = tmp_path / "root"
    for i, name in enumerate(NAMES):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(f"content {i}".encode() * 1000)
    listed = b"".join(n.encode() + b"\0" for n in [*NAMES, "missing.txt"])
    out = run(ssh._DESCRIBE, str(root), path=path, data=listed)
    assert out.returncode == 0, out.stderr
    sums = out.stdout.decode().partition("--cmq--\n")[2].splitlines()
    got = dict(ssh.sum_line(line)[::-1] for line in sums)
    assert got == {n: hashlib.sha256((root / n).read_bytes()).hexdigest() for n in NAMES}


def test_one_file_received_is_kept_only_when_its_digest_matches(tools, tmp_path):
    _, path = tools
    data = os.urandom(300_000)
    dest = tmp_path / "out" / "file.bin"
    good = run(ssh._PUT_ONE, str(dest), str(len(data)), "1700000000.5", path=path,
               data=data + hashlib.sha256(data).hexdigest().encode() + b"\n")
    assert good.returncode == 0, good.stderr
    assert dest.read_bytes() == data and int(dest.stat().st_mtime) == 1700000000
    bad = run(ssh._PUT_ONE, str(tmp_path / "out" / "bad.bin"), str(len(data)), "1700000000", path=path,
              data=data + b"0" * 64 + b"\n")
    assert bad.returncode == 5 and b"sha256 mismatch" in bad.stderr
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]


def test_the_hash_of_a_file_is_its_sha256_with_either_tool(tools, tmp_path):
    _, path = tools
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(70_000))
    out = run(ssh._HASH, str(f), path=path)
    assert out.stdout.split()[0].decode() == hashlib.sha256(f.read_bytes()).hexdigest()
    assert run(ssh._HASH, str(tmp_path / "absent"), path=path).returncode == ssh.MISSING


def test_sum_lines_of_both_tools_read_alike():
    digest = "ab" * 32
    assert ssh.sum_line(f"{digest} *dir/a b.txt") == (digest, "dir/a b.txt")
    assert ssh.sum_line(f"{digest}  -x.txt") == (digest, "-x.txt")
