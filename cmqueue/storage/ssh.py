"""A directory on a machine of the inventory as a storage service, through an ssh master
of its own (the machine's options, as its jobs and transfers use them), which later
commands reuse.

Every operation is one POSIX sh script run there with the paths as its arguments (never
pasted into the script). A file is received under a temporary name, kept only when the
machine's SHA-256 of it (OpenSSL's, else coreutils' ``sha256sum``) matches the digest
computed here, and then renamed.
Listings use GNU find's ``-printf`` with NUL-separated names.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import itertools
import os
import posixpath
import subprocess
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.files import private_dir
from ..machine.runner import control_dir
from ..machine.ssh import control_path
from ..transfer.machine_copy import Transfer, error_line, remote_path
from .base import (
    CHUNK,
    Entry,
    Hashing,
    NotFoundError,
    OnBytes,
    Provider,
    StorageError,
    StorageUnavailableError,
    counted,
    file_chunks,
)
from .config import StorageConfig
from .localfiles import ChunkWriter, create_part, write_all
from .names import check_name

# Sets $sum to the machine's fastest SHA-256 tool: OpenSSL's (hardware SHA where the CPU
# has it, ~3x coreutils') when installed, else coreutils'. Both print "DIGEST NAME" with
# two characters between (" *" or "  "): :func:`sum_line` reads either.
_SUM = ('if command -v openssl >/dev/null 2>&1; then sum="openssl dgst -sha256 -r"; else sum=sha256sum; fi; ')

_STAT = ('if [ -d "$1" ]; then stat -c "d 0 %Y" -- "$1"; elif [ -f "$1" ]; then stat -c "f %s %Y" -- "$1"; '
         'else echo -; fi')
# Listings leave out what is being received: files *.cmq-part, directories .cmq-part-*.
_LIST_FILES = ('[ -d "$1" ] || exit 3; cd -- "$1" && find . -mindepth 1 -type d -name ".cmq-part-*" -prune '
               '-o -type f ! -name "*.cmq-part" -printf "f %s %T@ %P\\0"')
_LIST_FLAT = ('[ -d "$1" ] || exit 3; cd -- "$1" && find . -mindepth 1 -maxdepth 1 -name ".cmq-part-*" -prune '
              '-o \\( -type f ! -name "*.cmq-part" -printf "f %s %T@ %P\\0" \\) '
              '-o \\( -type d -printf "d 0 %T@ %P\\0" \\)')
_EMPTY_DIRS = ('[ -d "$1" ] || exit 3; cd -- "$1" && find . -mindepth 1 -type d -name ".cmq-part-*" -prune '
               '-o -type d -empty -printf "%P\\0"')
_READ = '[ -f "$1" ] || exit 3; exec cat -- "$1"'
_WRITE = _SUM + (
    '[ -d "$1" ] && { echo "is a directory" >&2; exit 4; }; '
    'mkdir -p -- "$(dirname -- "$1")" && tmp="$1.$$.cmq-part" && cat > "$tmp" || exit 1; '
    'got=$($sum < "$tmp"); got=${got%% *}; '
    'if [ "$got" != "$2" ]; then rm -f -- "$tmp"; echo "sha256 mismatch" >&2; exit 5; fi; '
    '[ -z "$3" ] || touch -d "@$3" -- "$tmp"; mv -f -- "$tmp" "$1" && stat -c "%Y" -- "$1"'
)
# Copy file $1 to $2 on the machine (time kept), renamed into place when complete; prints
# its SHA-256, size and time.
_COPY = _SUM + (
    '[ -f "$1" ] || exit 3; [ -d "$2" ] && { echo "is a directory" >&2; exit 4; }; '
    'mkdir -p -- "$(dirname -- "$2")" && tmp="$2.$$.cmq-part" && cp -p -- "$1" "$tmp" || exit 1; '
    'got=$($sum < "$tmp") && mv -f -- "$tmp" "$2" && echo "${got%% *} $(stat -c "%s %Y" -- "$2")"'
)
# Receive one file of $2 bytes on stdin, hashed as it is written (not after), then its
# expected SHA-256 on a line of its own; kept as $1 (time $3) only when both match.
_PUT_ONE = _SUM + (
    '[ -d "$1" ] && { echo "is a directory" >&2; exit 4; }; '
    'mkdir -p -- "$(dirname -- "$1")" && tmp="$1.$$.cmq-part" || exit 1; '
    'got=$(head -c "$2" | tee -- "$tmp" | $sum) && IFS= read -r want || { rm -f -- "$tmp"; exit 1; }; '
    'if [ "${got%% *}" != "$want" ] || [ "$(stat -c %s -- "$tmp")" != "$2" ]; then '
    'rm -f -- "$tmp"; echo "sha256 mismatch or a short write" >&2; exit 5; fi; '
    'touch -d "@$3" -- "$tmp" && mv -f -- "$tmp" "$1"'
)
_DELETE = ('if [ -d "$1" ]; then find "$1" -type f | wc -l; rm -rf -- "$1"; '
           'elif [ -e "$1" ]; then rm -f -- "$1" && echo 1; else exit 3; fi')
_MKDIR = '[ -e "$1" ] && [ ! -d "$1" ] && { echo "a file has that name" >&2; exit 4; }; mkdir -p -- "$1"'
_HASH = _SUM + '[ -f "$1" ] || exit 3; $sum < "$1"'
# Receive a tar stream of files and, last, their manifest (.cmq-manifest: sha256sum's
# format); keep them only when every file matches it, then link them into place.
_PUT_MANY = (
    'mkdir -p -- "$1" && tmp=$(mktemp -d "$1/.cmq-part-XXXXXX") || exit 1; '
    'if ! tar -xf - -C "$tmp"; then rm -rf -- "$tmp"; exit 1; fi; '
    'if ! (cd -- "$tmp" && sha256sum -c --quiet --strict .cmq-manifest >&2); then '
    'rm -rf -- "$tmp"; echo "sha256 mismatch" >&2; exit 5; fi; '
    'rm -f -- "$tmp/.cmq-manifest" && cp -alf -- "$tmp/." "$1/" && rm -rf -- "$tmp"'
)
# Send the files named on stdin (NUL-separated) as a tar stream while sha256sum reads them
# too (at once, not first); then, on stderr after a marker line, their sums.
_GET_MANY = _SUM + (
    'cd -- "$1" || exit 3; list=$(mktemp) || exit 1; cat > "$list"; '
    'xargs -0 $sum -- < "$list" > "$list.sum" 2> "$list.err" & sums=$!; '
    'tar -cf - --null -T "$list" 2> "$list.tar"; rc=$?; wait $sums; ok=$?; '
    'if [ $ok -ne 0 ]; then cat "$list.err" >&2; rm -f -- "$list" "$list".*; exit 3; fi; '
    '[ $rc -eq 0 ] || cat "$list.tar" >&2; '
    'echo "--cmq-sums--" >&2; cat "$list.sum" >&2; rm -f -- "$list" "$list".*; exit $rc'
)
# Size, time and SHA-256 of the files named on stdin (NUL-separated) that exist.
_DESCRIBE = _SUM + (
    'cd -- "$1" 2>/dev/null || { cat > /dev/null; exit 0; }; list=$(mktemp) || exit 1; cat > "$list"; '
    'xargs -0 stat -c "%s %Y %n" -- < "$list" 2>/dev/null; echo "--cmq--"; '
    'xargs -0 $sum -- < "$list" 2>/dev/null; rm -f -- "$list"; exit 0'
)
#: The line after which a machine sends the SHA-256 sums of the files it sent (stderr).
SUMS = b"--cmq-sums--\n"
#: Exit code of the scripts when the path is not there.
MISSING = 3
#: ssh masters of storage commands to a machine (beside its jobs' masters 0, 1...): each
#: provider takes the next, so that the sessions of many jobs at once stay under sshd's
#: MaxSessions (10 by default) per master; past it, ssh opens a connection of its own.
STORAGE_MASTERS = 4
_SPREAD = itertools.count(os.getpid())
#: Files sent in one tar stream at most.
BATCH = 500


def _plain(name: str) -> bool:
    """Whether sha256sum writes ``name`` as it is (it escapes backslashes and newlines)."""
    return "\\" not in name and "\n" not in name and "\r" not in name


class SshProvider(Provider):
    """Files under a directory of one machine (``directory`` relative to its workdir)."""

    def __init__(self, config: StorageConfig, machine) -> None:  # noqa: ANN001 (inventory.Machine)
        super().__init__(config)
        self.machine = machine
        spread = f"storage-{next(_SPREAD) % STORAGE_MASTERS}"
        control = control_path(private_dir(control_dir()), machine, spread) if machine.mode == "ssh" else None
        self.transfer = Transfer(machine, control)
        self.root = remote_path(machine.workdir, config.directory or ".")
        self._made = False

    def path(self, name: str) -> str:
        """The path of ``name`` on the machine."""
        check_name(name)
        return posixpath.join(self.root, name) if name else self.root

    def _failure(self, code: int, err: bytes, what: str, after: str = "") -> StorageError | StorageUnavailableError:
        """The error of a script that exited ``code`` (255: ssh itself failed; MISSING:
        the path is not there), about ``what``; ``after`` ends the message."""
        if code == 255:
            return StorageUnavailableError(f"{self.config.where}: cannot reach machine {self.machine.name}: "
                                           f"{error_line(err, 'ssh failed')}")
        if code == MISSING:
            return NotFoundError(f"{what}: no such file or directory")
        return StorageError(f"{what}: {error_line(err, f'exit code {code}')}{after}")

    def _run(self, script: str, *args: str, name: str = "", input: bytes | None = None) -> str:
        proc = self.transfer.run(script, *args, input=input)
        if proc.returncode != 0:
            raise self._failure(proc.returncode, proc.stderr, self.where(name))
        return proc.stdout.decode("utf-8", "surrogateescape")

    def stat(self, name: str) -> Entry | None:
        out = self._run(_STAT, self.path(name), name=name).split()
        if not out or out[0] == "-":
            return None
        return Entry(name=name, size=int(out[1]), mtime=float(out[2]), is_dir=out[0] == "d")

    def list(self, directory: str = "", recursive: bool = False) -> list[Entry]:
        path = self.path(directory)
        try:
            out = self._run(_LIST_FILES if recursive else _LIST_FLAT, path, name=directory)
        except NotFoundError:
            entry = self.stat(directory) if directory else None
            if entry is not None:
                return [entry]
            raise NotFoundError(f"{self.where(directory)}: no such directory") from None
        found = []
        for record in out.split("\0"):
            if not record:
                continue
            kind, size, mtime, rel = record.split(" ", 3)
            name = f"{directory}/{rel}" if directory else rel
            found.append(Entry(name=name, size=int(size), mtime=float(mtime), is_dir=kind == "d"))
        return sorted(found, key=lambda e: e.name)

    def empty_dirs(self, directory: str = "") -> list[str]:
        out = self._run(_EMPTY_DIRS, self.path(directory), name=directory)
        return sorted(f"{directory}/{rel}" if directory else rel for rel in out.split("\0") if rel)

    def read(self, name: str) -> Iterator[bytes]:
        self.stat_file(name)
        return self._stream(name)

    def stat_file(self, name: str) -> Entry:
        """The file ``name``; NotFoundError when there is no such file."""
        entry = self.stat(name)
        if entry is None or entry.is_dir:
            raise NotFoundError(f"{self.where(name)}: no such file")
        return entry

    def _stream(self, name: str) -> Iterator[bytes]:
        proc = subprocess.Popen(self.transfer.script(_READ, self.path(name)), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            while chunk := proc.stdout.read(CHUNK):
                yield chunk
            err = proc.stderr.read()
            if proc.wait() != 0:
                why = error_line(err, f"exit code {proc.returncode}")
                raise StorageError(f"{self.where(name)}: read failed: {why}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()

    def write(self, name: str, chunks: Iterable[bytes], sha256: str, mtime: float | None = None) -> Entry:
        if not check_name(name):
            raise StorageError(f"{self.where(name)}: the root is a directory")
        argv = self.transfer.script(_WRITE, self.path(name), sha256, "" if mtime is None else f"{mtime:.6f}")
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stream = Hashing(chunks)
        with _feeding(proc) as stdin:
            for chunk in stream:
                stdin.write(chunk)
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        if proc.returncode != 0:
            raise self._failure(proc.returncode, err, self.where(name), "; nothing was kept")
        if stream.hexdigest() != sha256:
            raise StorageError(f"{self.where(name)}: the data does not match its SHA-256; nothing was kept")
        stamp = out.split()
        return Entry(name=name, size=stream.size, mtime=float(stamp[-1]) if stamp else 0.0, sha256=sha256)

    def copy_within(self, source: str, dest: str) -> Entry | None:
        if not check_name(dest):
            raise StorageError(f"{self.where(dest)}: the root is a directory")
        digest, size, mtime = self._run(_COPY, self.path(source), self.path(dest), name=source).split()
        return Entry(name=dest, size=int(size), mtime=float(mtime), sha256=digest)

    def delete(self, name: str) -> int:
        if not name:
            raise StorageError(f"{self.where(name)}: the root of a service is not deleted")
        return int(self._run(_DELETE, self.path(name), name=name).split()[0])

    def mkdir(self, name: str) -> bool:
        self._run(_MKDIR, self.path(name), name=name)
        return True

    def hash(self, name: str) -> str:
        return self._run(_HASH, self.path(name), name=name).split()[0]

    def describe(self, names: list[str]) -> dict[str, Entry]:
        odd = [n for n in names if not _plain(n) or not n]
        found = super().describe(odd) if odd else {}
        plain = [check_name(n) for n in names if _plain(n) and n]
        for i in range(0, len(plain), BATCH):
            chunk = plain[i:i + BATCH]
            out = self._run(_DESCRIBE, self.root, name=chunk[0], input=_nul_separated(chunk))
            stats, _, sums = out.partition("--cmq--\n")
            sizes = {}
            for line in stats.splitlines():
                size, mtime, name = line.split(" ", 2)
                sizes[name] = (int(size), float(mtime))
            for line in sums.splitlines():
                digest, name = sum_line(line)
                if name in sizes:
                    found[name] = Entry(name=name, size=sizes[name][0], mtime=sizes[name][1], sha256=digest)
        return found

    def put_file(self, local: Path, name: str, on_bytes: OnBytes | None = None) -> Entry:
        # One read here: the file streams (hashed on the way) with its SHA-256 after it; the
        # machine hashes it as it writes it. (Several files go as one tar stream instead.)
        if not _plain(name) or not name:
            return super().put_file(local, name, on_bytes)
        if not check_name(name):
            raise StorageError(f"{self.where(name)}: the root is a directory")
        st = Path(local).stat()
        proc = subprocess.Popen(self.transfer.script(_PUT_ONE, self.path(name), str(st.st_size), f"{st.st_mtime:.6f}"),
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _widen(proc.stdin)
        stream = Hashing(counted(file_chunks(Path(local)), on_bytes))
        with _feeding(proc) as stdin:
            with ChunkWriter(stdin.fileno()) as out:      # ssh takes a chunk while the next is hashed
                for chunk in stream:
                    out.write(chunk)
            if stream.size == st.st_size:     # else the machine finds the stream short, and drops it
                write_all(stdin.fileno(), f"{stream.hexdigest()}\n".encode())
        err = proc.stderr.read()
        proc.wait()
        proc.stderr.close()
        if stream.size != st.st_size:
            raise StorageError(f"{local}: changed while it was sent; nothing was kept")
        if proc.returncode != 0:
            raise self._failure(proc.returncode, err, self.where(name), "; nothing was kept")
        return Entry(name=name, size=stream.size, mtime=st.st_mtime, sha256=stream.hexdigest())

    def get_file(self, name: str, local: Path, on_bytes: OnBytes | None = None) -> Entry:
        if not _plain(name) or not name:
            return super().get_file(name, local, on_bytes)
        entry = self.stat(name)
        if entry is None or entry.is_dir:
            raise NotFoundError(f"{self.where(name)}: no such file")
        return self._get_batch([(name, Path(local))], on_bytes)[0]

    # -- many files in one stream -----------------------------------------------------------
    def put_files(self, items: list[tuple[Path, str]], on_bytes: OnBytes | None = None) -> list[Entry]:
        """Send the files as tar streams of up to BATCH files, with their SHA-256 manifest
        computed while they stream; the machine keeps them only when it matches."""
        return _in_batches(items, [n for _, n in items], lambda odd: super(SshProvider, self).put_files(odd, on_bytes),
                           lambda batch: self._put_batch(batch, on_bytes))

    def _put_batch(self, items: list[tuple[Path, str]], on_bytes: OnBytes | None) -> list[Entry]:
        proc = subprocess.Popen(self.transfer.script(_PUT_MANY, self.root), stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        entries, manifest = [], []
        with _feeding(proc) as stdin:
            with tarfile.open(fileobj=stdin, mode="w|", format=tarfile.GNU_FORMAT, bufsize=CHUNK) as tar:
                for path, name in items:
                    check_name(name)
                    info = tar.gettarinfo(str(path), arcname=name)
                    if not info.isfile():
                        raise StorageError(f"{path}: not a regular file")
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    with open(path, "rb") as f:
                        reader = _HashingReader(f, on_bytes)
                        tar.addfile(info, reader)
                    manifest.append(f"{reader.hexdigest()}  {name}\n")
                    entries.append(Entry(name=name, size=info.size, mtime=info.mtime, sha256=reader.hexdigest()))
                data = "".join(manifest).encode()
                info = tarfile.TarInfo(".cmq-manifest")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        err = proc.stderr.read()
        proc.stderr.close()
        if proc.wait() != 0:
            raise self._failure(proc.returncode, err, f"{self.where(items[0][1])} and {len(items) - 1} more",
                                "; nothing was kept")
        return entries

    def get_files(self, items: list[tuple[str, Path]], on_bytes: OnBytes | None = None) -> list[Entry]:
        """Fetch the files as tar streams of up to BATCH files, each checked against the
        machine's SHA-256 of it, and kept (renamed into place) only when it matches."""
        return _in_batches(items, [n for n, _ in items], lambda odd: super(SshProvider, self).get_files(odd, on_bytes),
                           lambda batch: self._get_batch(batch, on_bytes))

    def _get_batch(self, items: list[tuple[str, Path]], on_bytes: OnBytes | None) -> list[Entry]:
        wanted = {check_name(name): Path(local) for name, local in items}
        proc = subprocess.Popen(self.transfer.script(_GET_MANY, self.root), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        received: dict[str, tuple[Path, str, int, float]] = {}
        manifest: dict[str, str] = {}
        _widen(proc.stdout)
        try:
            proc.stdin.write(_nul_separated(wanted))
            proc.stdin.close()
            with tarfile.open(fileobj=proc.stdout, mode="r|", bufsize=CHUNK) as tar:
                for member in tar:
                    source = tar.extractfile(member) if member.isfile() else None
                    if source is None:
                        continue
                    local = wanted.get(member.name)
                    if local is None:
                        raise StorageError(f"{self.config.where}: the machine sent {member.name!r}, not asked for")
                    local.parent.mkdir(parents=True, exist_ok=True)
                    fd, tmp = create_part(str(local.parent), local.name)
                    digest = hashlib.sha256()
                    try:
                        with ChunkWriter(fd) as out:
                            while chunk := source.read(CHUNK):
                                digest.update(chunk)
                                out.write(chunk)
                                if on_bytes is not None:
                                    on_bytes(len(chunk))
                    finally:
                        os.close(fd)
                    received[member.name] = (Path(tmp), digest.hexdigest(), member.size, float(member.mtime))
            err, _, sums = proc.stderr.read().partition(SUMS)
            code = proc.wait()
            if code != 0:
                raise self._failure(code, err, f"{self.where(items[0][0])} and {len(items) - 1} more")
            for line in sums.decode("utf-8", "surrogateescape").splitlines():
                digest, name = sum_line(line)
                manifest[name] = digest
            entries = []
            for name in wanted:
                tmp, got, size, mtime = received[name]
                if manifest.get(name) != got:
                    raise StorageError(f"{self.where(name)}: what arrived does not match its SHA-256; "
                                       "nothing was kept")
                os.utime(tmp, (mtime, mtime))
                entries.append(Entry(name=name, size=size, mtime=mtime, sha256=got))
            for name, local in wanted.items():
                os.replace(received[name][0], local)
            return entries
        except KeyError as e:
            raise StorageError(f"{self.where(str(e.args[0]))}: the machine did not send it") from None
        except tarfile.TarError as e:
            err = proc.stderr.read()
            code = proc.wait()
            if code in (MISSING, 255):
                raise self._failure(code, err, f"{self.where(items[0][0])} and {len(items) - 1} more") from None
            raise StorageError(f"{self.config.where}: a broken tar stream from {self.machine.name}: {e}") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for tmp, *_ in received.values():
                tmp.unlink(missing_ok=True)
            proc.stdout.close()
            proc.stderr.close()


@contextmanager
def _feeding(proc: subprocess.Popen) -> Iterator[Any]:
    """The block writes to ``proc``'s stdin, which is closed after it; a machine that hangs
    up early is judged by its exit code, and on any other error the command is killed."""
    try:
        yield proc.stdin
        proc.stdin.close()
    except BrokenPipeError:
        pass
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def sum_line(line: str) -> tuple[str, str]:
    """(digest, name) of a line of sha256sum's or ``openssl dgst -r``'s output."""
    return line[:64], line[66:]


def _widen(pipe: Any) -> None:
    """Let ``pipe`` hold CHUNK bytes (Linux), so that ssh keeps sending or receiving
    while this process reads, hashes or writes the next chunk."""
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, CHUNK)
    except (AttributeError, OSError):
        pass


def _nul_separated(names: Iterable[str]) -> bytes:
    """``names`` as the NUL-separated list the remote scripts read on stdin."""
    return b"".join(n.encode("utf-8", "surrogateescape") + b"\0" for n in names)


def _in_batches(items: list[Any], names: list[str], one_by_one: Any, batch: Any) -> list[Entry]:
    """Entries of ``items`` (in their order): names sha256sum would escape one by one,
    the others BATCH at a time."""
    odd = [x for x, n in zip(items, names, strict=True) if not _plain(n) or not n]
    plain = [x for x, n in zip(items, names, strict=True) if _plain(n) and n]
    done = one_by_one(odd) if odd else []
    for i in range(0, len(plain), BATCH):
        done += batch(plain[i:i + BATCH])
    by_name = {e.name: e for e in done}
    return [by_name[n] for n in names]


class _HashingReader:
    """A file object that hashes what is read from it (tarfile reads a member's data here)."""

    def __init__(self, f: Any, on_bytes: OnBytes | None) -> None:
        self.f = f
        self.digest = hashlib.sha256()
        self.on_bytes = on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.digest.update(data)
        if self.on_bytes is not None and data:
            self.on_bytes(len(data))
        return data

    def hexdigest(self) -> str:
        """SHA-256 of what was read."""
        return self.digest.hexdigest()
