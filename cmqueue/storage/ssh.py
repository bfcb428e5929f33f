"""A directory on a machine of the inventory as a storage service, through the machine's
ssh master (the same connection and options as its jobs and transfers).

Every operation is one POSIX sh script run there with the paths as its arguments (never
pasted into the script). A file is received under a temporary name, kept only when the
machine's ``sha256sum`` of it matches the digest computed here, and then renamed.
Listings use GNU find's ``-printf`` with NUL-separated names.
"""

from __future__ import annotations

import posixpath
import subprocess
from collections.abc import Iterable, Iterator

from ..runner import control_dir
from ..transfer import Transfer, error_line, remote_path
from .base import CHUNK, Entry, Hashing, NotFoundError, Provider, StorageError, StorageUnavailableError
from .config import StorageConfig
from .names import check_name

_STAT = ('if [ -d "$1" ]; then stat -c "d 0 %Y" -- "$1"; elif [ -f "$1" ]; then stat -c "f %s %Y" -- "$1"; '
         'else echo -; fi')
_LIST_FILES = ('[ -d "$1" ] || exit 3; cd -- "$1" && '
               'find . -mindepth 1 -type f ! -name "*.cmq-part" -printf "f %s %T@ %P\\0"')
_LIST_FLAT = ('[ -d "$1" ] || exit 3; cd -- "$1" && find . -mindepth 1 -maxdepth 1 \\( -type f'
              '  ! -name "*.cmq-part" -printf "f %s %T@ %P\\0" \\) -o \\( -type d -printf "d 0 %T@ %P\\0" \\)')
_READ = '[ -f "$1" ] || exit 3; exec cat -- "$1"'
_WRITE = (
    '[ -d "$1" ] && { echo "is a directory" >&2; exit 4; }; '
    'mkdir -p -- "$(dirname -- "$1")" && tmp="$1.$$.cmq-part" && cat > "$tmp" || exit 1; '
    'got=$(sha256sum < "$tmp"); got=${got%% *}; '
    'if [ "$got" != "$2" ]; then rm -f -- "$tmp"; echo "sha256 mismatch" >&2; exit 5; fi; '
    '[ -z "$3" ] || touch -d "@$3" -- "$tmp"; mv -f -- "$tmp" "$1" && stat -c "%Y" -- "$1"'
)
_DELETE = ('if [ -d "$1" ]; then find "$1" -type f | wc -l; rm -rf -- "$1"; '
           'elif [ -e "$1" ]; then rm -f -- "$1" && echo 1; else exit 3; fi')
_MKDIR = '[ -e "$1" ] && [ ! -d "$1" ] && { echo "a file has that name" >&2; exit 4; }; mkdir -p -- "$1"'
_HASH = '[ -f "$1" ] || exit 3; sha256sum < "$1"'
#: Exit code of the scripts when the path is not there.
MISSING = 3


class SshProvider(Provider):
    """Files under a directory of one machine (``directory`` relative to its workdir)."""

    def __init__(self, config: StorageConfig, machine) -> None:  # noqa: ANN001 (inventory.Machine)
        super().__init__(config)
        self.machine = machine
        self.transfer = Transfer(machine, str(control_dir()))
        self.root = remote_path(machine.workdir, config.directory or ".")
        self._made = False

    def path(self, name: str) -> str:
        """The path of ``name`` on the machine."""
        check_name(name)
        return posixpath.join(self.root, name) if name else self.root

    def _run(self, script: str, *args: str, name: str = "", input: bytes | None = None) -> str:
        proc = self.transfer.run(script, *args, input=input)
        if proc.returncode == 255:
            raise StorageUnavailableError(f"{self.config.where}: cannot reach machine {self.machine.name}: "
                                          f"{error_line(proc.stderr, 'ssh failed')}")
        if proc.returncode == MISSING:
            raise NotFoundError(f"{self.where(name)}: no such file or directory")
        if proc.returncode != 0:
            raise StorageError(f"{self.where(name)}: {error_line(proc.stderr, f'exit code {proc.returncode}')}")
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
        try:
            for chunk in stream:
                proc.stdin.write(chunk)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        if proc.returncode == 255:
            raise StorageUnavailableError(f"{self.config.where}: cannot reach machine {self.machine.name}: "
                                          f"{error_line(err, 'ssh failed')}")
        if proc.returncode != 0 or stream.hexdigest() != sha256:
            why = (error_line(err, f"exit code {proc.returncode}") if proc.returncode
                   else "the data does not match its SHA-256")
            raise StorageError(f"{self.where(name)}: {why}; nothing was kept")
        stamp = out.split()
        return Entry(name=name, size=stream.size, mtime=float(stamp[-1]) if stamp else 0.0, sha256=sha256)

    def delete(self, name: str) -> int:
        if not name:
            raise StorageError(f"{self.where(name)}: the root of a service is not deleted")
        return int(self._run(_DELETE, self.path(name), name=name).split()[0])

    def mkdir(self, name: str) -> bool:
        self._run(_MKDIR, self.path(name), name=name)
        return True

    def hash(self, name: str) -> str:
        return self._run(_HASH, self.path(name), name=name).split()[0]
