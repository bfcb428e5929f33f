"""A folder on this machine as a storage service (plain files, no libcloud).

libcloud's LOCAL driver accepts ``/abs`` and ``../x`` as object names and writes outside
its container, and its deletes race; here every name is checked and resolved inside the
folder (symbolic links that lead out are refused), and a file is written to a temporary
name beside it and renamed once its SHA-256 matched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from .base import (
    CHUNK,
    PART,
    Entry,
    NotFoundError,
    OnBytes,
    Provider,
    StorageError,
    StorageUnavailableError,
    counted,
    file_chunks,
)
from .config import StorageConfig
from .names import check_name


class LocalProvider(Provider):
    """Files under one directory of this machine."""

    def __init__(self, config: StorageConfig) -> None:
        super().__init__(config)
        self.root = Path(config.directory).expanduser()
        if not self.root.is_dir():
            raise StorageUnavailableError(f"{config.where}.directory: {self.root} is not a directory")
        self.root = self.root.resolve()

    def path(self, name: str) -> Path:
        """The local path of ``name``, which must stay inside the folder."""
        check_name(name)
        p = self.root / name if name else self.root
        try:
            resolved = p.resolve()
        except OSError as e:
            raise StorageError(f"{self.where(name)}: {e.strerror or e}") from None
        if resolved != self.root and self.root not in resolved.parents:
            raise StorageError(f"{self.where(name)}: leads out of {self.root} (a symbolic link)")
        return p

    def _entry(self, name: str, p: Path) -> Entry:
        st = p.stat()
        return Entry(name=name, size=0 if p.is_dir() else st.st_size, mtime=st.st_mtime, is_dir=p.is_dir())

    def stat(self, name: str) -> Entry | None:
        p = self.path(name)
        try:
            return self._entry(name, p)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def list(self, directory: str = "", recursive: bool = False) -> list[Entry]:
        top = self.path(directory)
        if not top.is_dir():
            if top.exists():
                return [self._entry(directory, top)]
            raise NotFoundError(f"{self.where(directory)}: no such directory")
        found: list[Entry] = []
        if recursive:
            for base, dirs, files in os.walk(top):
                dirs.sort()
                rel = os.path.relpath(base, self.root)
                for f in files:
                    if not f.endswith(PART):
                        name = f if rel == "." else f"{rel}/{f}"
                        found.append(self._entry(name, Path(base) / f))
        else:
            for p in top.iterdir():
                if not p.name.endswith(PART):
                    found.append(self._entry(f"{directory}/{p.name}" if directory else p.name, p))
        return sorted(found, key=lambda e: e.name)

    def read(self, name: str) -> Iterator[bytes]:
        p = self.path(name)
        if not p.is_file():
            raise NotFoundError(f"{self.where(name)}: no such file")
        return file_chunks(p, CHUNK)

    def write(self, name: str, chunks: Iterable[bytes], sha256: str, mtime: float | None = None) -> Entry:
        return self.receive(name, chunks, self._file_target(name), sha256, mtime)

    def _file_target(self, name: str) -> Path:
        """Where file ``name`` goes: refused for the root and for a directory."""
        if not name:
            raise StorageError(f"{self.where(name)}: the root is a directory")
        target = self.path(name)
        if target.is_dir():
            raise StorageError(f"{self.where(name)}: is a directory")
        return target

    def delete(self, name: str) -> int:
        p = self.path(name)
        if p.is_dir() and not p.is_symlink():
            count = sum(len(files) for _, _, files in os.walk(p))
            shutil.rmtree(p)
            return count
        try:
            p.unlink()
        except FileNotFoundError:
            raise NotFoundError(f"{self.where(name)}: no such file or directory") from None
        return 1

    def mkdir(self, name: str) -> bool:
        p = self.path(name)
        try:
            p.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise StorageError(f"{self.where(name)}: a file has that name") from None
        return True

    # A folder on this machine: nothing travels, so one read of each file (hashed as it is
    # copied) is enough; the copy appears under its name only when complete.
    def put_file(self, local: Path, name: str, on_bytes: OnBytes | None = None) -> Entry:
        entry = self.receive(name, counted(file_chunks(Path(local)), on_bytes), self._file_target(name), None,
                             Path(local).stat().st_mtime)
        return Entry(name=name, size=entry.size, mtime=entry.mtime, sha256=entry.sha256)

    def copy_within(self, source: str, dest: str) -> Entry | None:
        src = self.path(source)
        if not src.is_file():
            raise NotFoundError(f"{self.where(source)}: no such file")
        return self.receive(dest, file_chunks(src), self._file_target(dest), None, src.stat().st_mtime)

    def get_file(self, name: str, local: Path, on_bytes: OnBytes | None = None) -> Entry:
        source = self.path(name)
        if not source.is_file():
            raise NotFoundError(f"{self.where(name)}: no such file")
        return self.receive(name, counted(file_chunks(source), on_bytes), Path(local), None, source.stat().st_mtime)

