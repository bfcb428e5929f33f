"""A put to several machines that see one directory (an NFS home, one disk) writes each
target once.

`cmq put FILE 'node[1-4]:in/'` sends one transfer job per machine. When the machines
share the destination, the jobs would all write the same file at once: four streams to
one disk, each slower than one alone. Instead, the machines of one batch that write the
same path take turns at a short step (a Redis lock): each looks on its own machine for
the marker file of a machine of the batch that already writes there. If it sees one, it
shares that machine's disk. It waits for that copy to end, and then checks the file's
SHA-256 on its own machine instead of writing it. Otherwise it leaves a marker of its
own, becomes a writer and copies as usual.

Machines that do not share a disk are held back only for the look and the marker: one
ssh round trip each, under the lock. When a writer's copy fails (or never ends), its
followers look again: the first becomes the writer and the others follow it. A follower
that cannot check the copy (no sha256sum there) copies by itself.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import subprocess
import time
from pathlib import Path
from typing import Any

from .machine_copy import Progress, Transfer, TransferError, TransferResult, local_manifest, local_size

log = logging.getLogger("cmq.transfer")

#: Seconds the look-and-mark step may hold its lock (it is one ssh round trip).
LOCK_TTL = 60
#: Seconds the look at the machine may take (within the lock's TTL).
LOOK_TIMEOUT = 45
#: Seconds a machine waits for its turn to look (every machine of the batch before it
#: takes one round trip).
LOCK_WAIT = 600
#: Times a machine looks again after the writer it followed failed, before it copies
#: by itself.
ROUNDS = 3
#: Seconds a follower waits for its writer's copy, at least (more for a large payload).
WAIT_LEAST = 600
#: Bytes a second a writer's copy is assumed to reach at worst, to size the wait.
SLOWEST_RATE = 1 << 20
#: Seconds the batch's keys stay in Redis.
KEYS_TTL = 24 * 3600

# Look in directory $1 for the markers $3...; print the first that exists, or else make
# the directory and leave marker $2.
_LOOK_AND_MARK = (
    'd=$1; me=$2; shift 2; for w in "$@"; do if [ -e "$d/$w" ]; then echo "$w"; exit 0; fi; done; '
    'mkdir -p -- "$d" && : > "$d/$me"'
)
_UNMARK = 'rm -f -- "$1"'


def marker(batch: str, machine: str) -> str:
    """File name of ``machine``'s marker for ``batch``, beside the target."""
    return f".cmq-put-{batch}-{machine}"


def _keys(batch: str, target: str) -> tuple[str, str]:
    digest = hashlib.sha256(target.encode()).hexdigest()[:16]
    base = f"cmq:put:{batch}:{digest}"
    return base, f"{base}:writers"


def _done_key(batch: str, target: str, writer: str) -> str:
    return f"{_keys(batch, target)[0]}:done:{writer}"


def put(transfer: Transfer, client: Any, batch: str, src: Path, dst: str, *, recursive: bool = False,
        progress: Progress | None = None) -> TransferResult:
    """:meth:`Transfer.put`, written once among the machines of ``batch`` that share the
    target's directory (see the module); ``client`` is a redis-py client of the broker."""
    src = Path(src)
    name = transfer.machine.name
    target = transfer.target_of(src, dst)
    t0 = time.monotonic()
    for _ in range(ROUNDS):
        writer = _look_and_mark(transfer, client, batch, target)
        if writer is None:
            ok = False
            try:
                moved = transfer.put(src, dst, recursive=recursive, progress=progress)
                ok = True
                return moved
            finally:
                _end_writing(transfer, client, batch, target, ok)
        size, files = local_size(src)
        if not _wait_for(client, batch, target, writer, max(WAIT_LEAST, size / SLOWEST_RATE)):
            log.warning("%s: %s shares %s with %s, whose copy did not end well: looking again", name, target,
                        writer, writer)
            continue                      # the first to look again writes, the others follow it
        try:
            transfer.verify(local_manifest(src), transfer.remote_manifest(target), f"put {src} to {target}")
        except TransferError as e:        # no sha256sum there, or the copy differs here: write it here
            log.warning("%s: cannot check the copy %s wrote to %s (%s): copying it here", name, writer, target, e)
            break
        if progress is not None:
            progress(size)
        return TransferResult(machine=name, direction="put", source=str(src), dest=target, bytes=size,
                              files=files, seconds=time.monotonic() - t0, method=f"shared with {writer}",
                              verified="sha256")
    return transfer.put(src, dst, recursive=recursive, progress=progress)


def _directory(target: str) -> str:
    return posixpath.dirname(target) or "."


def _look_and_mark(transfer: Transfer, client: Any, batch: str, target: str) -> str | None:
    """The writer of ``target`` whose marker this machine sees, or None once this machine
    is marked as a writer itself (its earlier outcome, from a failed attempt, forgotten)."""
    name = transfer.machine.name
    base, writers_key = _keys(batch, target)
    with client.lock(f"{base}:lock", timeout=LOCK_TTL, blocking_timeout=LOCK_WAIT):
        writers = [w.decode() if isinstance(w, bytes) else w for w in client.lrange(writers_key, 0, -1)]
        others = [marker(batch, w) for w in writers if w != name]
        try:
            proc = transfer.run(_LOOK_AND_MARK, _directory(target), marker(batch, name), *others,
                                timeout=LOOK_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise TransferError(f"{name}: no answer in {LOOK_TIMEOUT}s while looking beside {target}") from None
        if proc.returncode != 0:
            raise TransferError(f"{name}: cannot look for other machines' copies beside {target}: "
                                f"{proc.stderr.decode(errors='replace').strip()[-300:]}")
        lines = proc.stdout.decode(errors="replace").split()
        seen = next((w for w in writers if lines and marker(batch, w) == lines[-1]), None)
        if seen is not None:
            return seen
        pipe = client.pipeline()
        pipe.delete(_done_key(batch, target, name))
        if name not in writers:
            pipe.rpush(writers_key, name)
        pipe.expire(writers_key, KEYS_TTL)
        pipe.execute()
    return None


def _end_writing(transfer: Transfer, client: Any, batch: str, target: str, ok: bool) -> None:
    """Take the marker away and tell the followers how the copy ended."""
    name = transfer.machine.name
    path = posixpath.join(_directory(target), marker(batch, name))
    try:
        proc = transfer.run(_UNMARK, path, timeout=LOOK_TIMEOUT)
        if proc.returncode != 0:
            log.warning("%s: cannot remove the put marker %s: %s", name, path,
                        proc.stderr.decode(errors="replace").strip()[-300:])
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("%s: cannot remove the put marker %s: %s", name, path, e)
    key = _done_key(batch, target, name)
    pipe = client.pipeline()
    pipe.rpush(key, "ok" if ok else "failed")
    pipe.expire(key, KEYS_TTL)
    pipe.execute()


def _wait_for(client: Any, batch: str, target: str, writer: str, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``writer``'s copy of ``target`` to end; whether
    it succeeded. The answer stays for the other followers (read by rotating the list
    onto itself: one atomic command)."""
    key = _done_key(batch, target, writer)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        got = client.blmove(key, key, max(1, min(int(left), 30)), "LEFT", "RIGHT")
        if got is not None:
            return (got.decode() if isinstance(got, bytes) else got) == "ok"
