"""Local files written the verified way: the chunk writer's thread, and its errors."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from cmqueue.storage.localfiles import CHUNK, INLINE, ChunkWriter, copy_file


def writers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "cmq-writer")


def test_a_small_file_is_written_without_a_thread(tmp_path):
    fd = os.open(tmp_path / "small", os.O_WRONLY | os.O_CREAT)
    with ChunkWriter(fd) as out:
        out.write(b"a" * 1000)
        out.write(b"b" * 1000)
        assert writers() == 0
    os.close(fd)
    assert (tmp_path / "small").read_bytes() == b"a" * 1000 + b"b" * 1000


def test_a_large_file_goes_on_in_a_thread_and_arrives_whole_and_in_order(tmp_path):
    chunks = [bytes([i]) * CHUNK for i in range(INLINE // CHUNK + 6)]
    fd = os.open(tmp_path / "large", os.O_WRONLY | os.O_CREAT)
    with ChunkWriter(fd) as out:
        for chunk in chunks:
            out.write(chunk)
        assert writers() == 1
    os.close(fd)
    assert writers() == 0
    assert (tmp_path / "large").read_bytes() == b"".join(chunks)


WRITE_PAST_THE_LIMIT = """
import errno, os, resource, sys
from cmqueue.storage.localfiles import CHUNK, ChunkWriter
resource.setrlimit(resource.RLIMIT_FSIZE, (6 * CHUNK, 6 * CHUNK))   # writes past it: EFBIG
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)
try:
    with ChunkWriter(fd) as out:
        for _ in range(12):
            out.write(b"x" * CHUNK)
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def test_a_write_that_fails_in_the_thread_is_raised_in_the_caller(tmp_path):
    r = subprocess.run([sys.executable, "-c", WRITE_PAST_THE_LIMIT, str(tmp_path / "f")], capture_output=True,
                       text=True, timeout=60)
    assert r.stdout.strip() == "EFBIG", r.stderr


COPY_PAST_THE_LIMIT = """
import os, resource, sys
from cmqueue.storage.localfiles import CHUNK, copy_file
resource.setrlimit(resource.RLIMIT_FSIZE, (6 * CHUNK, 6 * CHUNK))
try:
    copy_file(sys.argv[1], sys.argv[2], "copy.bin")
except OSError as e:
    print(e.strerror)
"""


def test_a_copy_that_cannot_be_written_leaves_nothing(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(12 * CHUNK))
    (tmp_path / "out").mkdir()
    r = subprocess.run([sys.executable, "-c", COPY_PAST_THE_LIMIT, str(source), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "File too large", r.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_a_copy_is_the_same_bytes_with_their_sha256_and_time(tmp_path):
    import hashlib

    source = tmp_path / "source.bin"
    data = os.urandom(INLINE + 3 * CHUNK + 17)
    source.write_bytes(data)
    os.utime(source, (1_700_000_000, 1_700_000_000))
    size, sha, mtime = copy_file(str(source), str(tmp_path), "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == data
    assert (size, sha, mtime) == (len(data), hashlib.sha256(data).hexdigest(), 1_700_000_000)
    assert (tmp_path / "copy.bin").stat().st_mtime == 1_700_000_000
