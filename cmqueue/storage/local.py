"""A folder on this machine as a storage service (plain files, no libcloud).

libcloud's LOCAL driver accepts ``/abs`` and ``../x`` as object names and writes outside
its container, and its deletes race; here every name is checked and resolved inside the
folder (symbolic links that lead out are refused), and a file is written to a temporary
name beside it and renamed once its SHA-256 matched.
"""

from __future__ import annotations

import errno
import os
import posixpath
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
    file_chunks,
)
from .config import StorageConfig
from .localfiles import copy_file
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

    def empty_dirs(self, directory: str = "") -> list[str]:
        top = self.path(directory)
        if not top.is_dir():
            return []
        found = []
        for base, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".cmq-part-"))
            if base != str(top) and not dirs and not [f for f in files if not f.endswith(PART)]:
                found.append(os.path.relpath(base, self.root).replace(os.sep, "/"))
        return sorted(found)

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
    # copied) is enough; the copy appears under its name only when complete. Each
    # directory is checked (and made) once per call, not once per file.
    def put_file(self, local: Path, name: str, on_bytes: OnBytes | None = None) -> Entry:
        return self.put_files([(Path(local), name)], on_bytes)[0]

    def put_files(self, items: list[tuple[Path, str]], on_bytes: OnBytes | None = None) -> list[Entry]:
        folders: dict[str, str] = {}
        entries = []
        for local, name in items:
            directory, base = self._folder(name, folders)
            entries.append(self._copy(str(local), directory, base, name, on_bytes, incoming=True))
        return entries

    def get_file(self, name: str, local: Path, on_bytes: OnBytes | None = None) -> Entry:
        return self.get_files([(name, Path(local))], on_bytes)[0]

    def get_files(self, items: list[tuple[str, Path]], on_bytes: OnBytes | None = None) -> list[Entry]:
        folders: dict[str, str] = {}
        made: set[str] = set()
        entries = []
        for name, local in items:
            directory, base = self._folder(name, folders, make=False)
            target = Path(local)
            if str(target.parent) not in made:
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StorageError(f"{target.parent}: {e.strerror or e}") from None
                made.add(str(target.parent))
            entries.append(self._copy(os.path.join(directory, base), str(target.parent), target.name, name,
                                      on_bytes, incoming=False))
        return entries

    def copy_within(self, source: str, dest: str) -> Entry | None:
        folders: dict[str, str] = {}
        directory, base = self._folder(source, folders, make=False)
        into, dest_base = self._folder(dest, folders)
        return self._copy(os.path.join(directory, base), into, dest_base, dest, None, incoming=False,
                          source_name=source)

    def _folder(self, name: str, folders: dict[str, str], make: bool = True) -> tuple[str, str]:
        """(the local directory of file ``name``, its base name); each directory is
        checked to stay inside the folder (and, with ``make``, made) once per ``folders``."""
        if not check_name(name):
            raise StorageError(f"{self.where(name)}: the root is a directory")
        parent, base = posixpath.split(name)
        directory = folders.get(parent)
        if directory is None:
            p = self.path(parent)
            if make:
                try:
                    p.mkdir(parents=True, exist_ok=True)
                except FileExistsError:
                    raise StorageError(f"{self.where(parent)}: a file has that name") from None
                except OSError as e:
                    raise StorageError(f"{self.where(parent)}: {e.strerror or e}") from None
            directory = folders[parent] = str(p)
        return directory, base

    def _copy(self, source: str, directory: str, base: str, name: str, on_bytes: OnBytes | None,
              incoming: bool, source_name: str | None = None) -> Entry:
        """Copy one file (``incoming``: from this machine into the folder, else out of it,
        or within it for ``source_name``), with the errors said in cmq's words."""
        inside = not incoming
        try:
            size, sha, mtime = copy_file(source, directory, base, on_bytes, follow=not inside)
        except OSError as e:
            if inside and e.errno == errno.ELOOP and e.filename == source:
                # a symbolic link in the folder: followed only when it stays inside
                self.path(source_name or name)
                size, sha, mtime = copy_file(source, directory, base, on_bytes)
            else:
                raise self._error(e, source, name, incoming, source_name) from None
        return Entry(name=name, size=size, mtime=mtime, sha256=sha)

    def _error(self, e: OSError, source: str, name: str, incoming: bool, source_name: str | None) -> StorageError:
        if e.filename == source or e.errno == errno.EISDIR and e.filename is None:
            if incoming:
                gone = e.errno == errno.ENOENT
                return (NotFoundError if gone else StorageError)(f"{source}: {e.strerror or e}")
            return NotFoundError(f"{self.where(source_name or name)}: no such file")
        where = self.where(name) if incoming or source_name else str(e.filename2 or e.filename or name)
        if e.errno == errno.EISDIR:
            return StorageError(f"{where}: is a directory")
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        return StorageError(f"{where}: {why}; nothing was kept")
