"""What every storage provider does (one interface; one contract test runs against all).

A provider holds files under names (see :mod:`cmqueue.storage.names`). Every file it
writes is checked against the SHA-256 the caller gives: a transfer cut halfway, or data
that changed on the way, leaves nothing behind that looks like the file (a folder or a
machine writes a temporary name and renames it; an object store commits an upload only
when it is whole, and one that fails the check is removed). Directories exist on providers that have them (a folder, a
machine); on object stores a directory is the prefix of the names under it.
"""

from __future__ import annotations

import errno
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import CmqError, MissingError, ServiceError
from .config import StorageConfig
from .localfiles import CHUNK, PART, ChunkWriter, create_part  # noqa: F401 (CHUNK and PART: for the providers)


class StorageError(CmqError):
    """A storage operation failed; the message names the service and the path."""


class NotFoundError(StorageError, MissingError):
    """The file or directory is not on the service."""


class StorageUnavailableError(ServiceError):
    """The service (its server, its bucket, its machine) cannot be reached."""


@dataclass
class Entry:
    """A file (or a directory) on a service."""

    name: str                           #: full name from the service's root
    size: int = 0
    mtime: float = 0.0
    sha256: str | None = None           #: known without reading the file, else None
    is_dir: bool = False
    md5: str | None = None              #: an object store's MD5 (an S3 ETag), when that is all it lists
    verified: str = "sha256"            #: what a copy that made this entry checked (see VERIFIED)

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain data."""
        return {"name": self.name, "size": self.size, "mtime": self.mtime, "sha256": self.sha256,
                "type": "dir" if self.is_dir else "file"}


#: What a copy checked, as :attr:`Entry.verified` says it and the summary line prints it:
#: the SHA-256 kept with the file (or computed at its source) against what arrived; the
#: MD5 the service keeps (Content-MD5, or the ETag of an object put in one piece); the
#: SHA-256 of a second read (nothing kept to compare with); or nothing read by cmq (a copy
#: the service made inside itself).
VERIFIED = {"sha256": "by SHA-256", "md5": "by the service's MD5", "reread": "by reading twice",
            "service": "copied inside the service, not read by cmq"}


class Hashing:
    """Wraps chunks, hashing (SHA-256, and MD5 when asked) and counting them as they pass."""

    def __init__(self, chunks: Iterable[bytes], md5: bool = False) -> None:
        self._chunks = chunks
        self.digest = hashlib.sha256()
        self.md5 = hashlib.md5() if md5 else None
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.digest.update(chunk)
            if self.md5 is not None:
                self.md5.update(chunk)
            self.size += len(chunk)
            yield chunk

    def hexdigest(self) -> str:
        """SHA-256 of what passed so far."""
        return self.digest.hexdigest()


#: Called with the bytes of each chunk as it passes (progress).
OnBytes = Callable[[int], None]


def counted(chunks: Iterable[bytes], on_bytes: OnBytes | None) -> Iterable[bytes]:
    """``chunks``, reporting each one's size to ``on_bytes`` (when given) as it passes."""
    if on_bytes is None:
        return chunks

    def counting() -> Iterator[bytes]:
        for chunk in chunks:
            on_bytes(len(chunk))
            yield chunk

    return counting()


def file_chunks(path: Path, size: int = CHUNK) -> Iterator[bytes]:
    """The bytes of a local file, a chunk at a time."""
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def digests(path: Path) -> tuple[str, str]:
    """SHA-256 and MD5 (hex) of a local file, from one read."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    for chunk in file_chunks(path):
        sha.update(chunk)
        md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def sha256_of(path: Path) -> str:
    """SHA-256 of a local file."""
    h = hashlib.sha256()
    for chunk in file_chunks(path):
        h.update(chunk)
    return h.hexdigest()


class Provider(ABC):
    """A storage service: files under names, written only when verified."""

    #: Whether the service has directories of its own (a folder does, a bucket does not).
    has_dirs = True
    #: Whether :meth:`hash` of a file that has no hash kept reads it through cmq (an object
    #: store), rather than hashing it where it lies (a folder, a machine).
    reads_to_hash = False

    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        self.name = config.name

    def where(self, name: str) -> str:
        """``SERVICE:NAME``, for messages."""
        return f"{self.name}:{name or '/'}"

    # -- the contract -----------------------------------------------------------------
    @abstractmethod
    def stat(self, name: str) -> Entry | None:
        """The file or directory ``name``, or None when there is none."""

    @abstractmethod
    def list(self, directory: str = "", recursive: bool = False) -> list[Entry]:
        """What is in ``directory`` (the root: ``""``), sorted by name; with ``recursive``
        every file below it (and no directories). NotFoundError when it does not exist."""

    @abstractmethod
    def read(self, name: str) -> Iterator[bytes]:
        """The bytes of file ``name``, a chunk at a time."""

    @abstractmethod
    def write(self, name: str, chunks: Iterable[bytes], sha256: str, mtime: float | None = None) -> Entry:
        """Store ``chunks`` as file ``name`` (replacing it), kept only if they hash to
        ``sha256`` (else StorageError); ``mtime``, when given, is kept as its time."""

    @abstractmethod
    def delete(self, name: str) -> int:
        """Remove file ``name``, or directory ``name`` with everything in it; returns how
        many files went. NotFoundError when there is nothing by that name."""

    @abstractmethod
    def mkdir(self, name: str) -> bool:
        """Make directory ``name`` (and its parents); False where directories are only
        prefixes (object stores), which keeps nothing."""

    def hash(self, name: str) -> str:
        """SHA-256 of file ``name``: kept with it where the service can, else computed."""
        entry = self.stat(name)
        if entry is None or entry.is_dir:
            raise NotFoundError(f"{self.where(name)}: no such file")
        if entry.sha256:
            return entry.sha256
        h = hashlib.sha256()
        for chunk in self.read(name):
            h.update(chunk)
        return h.hexdigest()

    # -- built on the contract (providers may do better) ---------------------------------
    def put_file(self, local: Path, name: str, on_bytes: OnBytes | None = None) -> Entry:
        """Store local file ``local`` as ``name``, verified."""
        return self.write(name, counted(file_chunks(local), on_bytes), sha256_of(local), mtime=local.stat().st_mtime)

    def get_file(self, name: str, local: Path, on_bytes: OnBytes | None = None) -> Entry:
        """Copy file ``name`` to the local path ``local``, verified against the SHA-256 the
        service keeps (or computed there); the file appears only when complete."""
        entry = self.stat(name)
        if entry is None or entry.is_dir:
            raise NotFoundError(f"{self.where(name)}: no such file")
        expected = entry.sha256 or self.hash(name)
        return self.receive(name, counted(self.read(name), on_bytes), local, expected, entry.mtime)

    def receive(self, name: str, chunks: Iterable[bytes], local: Path, expected: str | None,
                mtime: float | None, md5: str | None = None,
                reread: Callable[[], Iterable[bytes]] | None = None) -> Entry:
        """Write ``chunks`` (file ``name``'s bytes) to ``local``, kept only when they hash to
        ``expected``; the file gets ``mtime``. Without an ``expected`` SHA-256, what
        arrived is checked against the service's ``md5`` (hex), else against the SHA-256
        of a second read (``reread``); the entry says which (``verified``)."""
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = create_part(str(local.parent), local.name)
        except OSError as e:
            raise StorageError(f"{local}: {e.strerror or e}") from None
        try:
            stream = Hashing(chunks, md5=expected is None and md5 is not None)
            try:
                with ChunkWriter(fd) as out:
                    for chunk in stream:
                        out.write(chunk)
            finally:
                os.close(fd)
            got = stream.hexdigest()
            verified = "sha256"
            if expected is None and stream.md5 is not None:
                expected, got, verified = md5, stream.md5.hexdigest(), "md5"
            elif expected is None and reread is not None:
                again = hashlib.sha256()
                for chunk in reread():
                    again.update(chunk)
                expected, verified = again.hexdigest(), "reread"
            elif expected is None:
                verified = ""
            if expected is not None and got != expected:
                what = {"sha256": "its SHA-256", "md5": "the service's MD5", "reread": "a second read"}[verified]
                raise StorageError(f"{self.where(name)}: what arrived does not match {what} "
                                   f"({got[:12]}... against {expected[:12]}...); nothing was kept")
            if mtime:
                os.utime(tmp, (mtime, mtime))
            os.replace(tmp, local)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            raise StorageError(f"{local}: {why}; nothing was kept") from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Entry(name=name, size=stream.size, mtime=local.stat().st_mtime, sha256=stream.hexdigest(),
                     verified=verified)

    def describe(self, names: list[str]) -> dict[str, Entry]:
        """The files among ``names`` that exist, each with its SHA-256 (kept, or computed);
        a provider may look them all up at once (a machine does)."""
        found = {}
        for name in names:
            entry = self.stat(name)
            if entry is not None and not entry.is_dir:
                entry.sha256 = entry.sha256 or self.hash(name)
                found[name] = entry
        return found

    def list_details(self, directory: str = "", recursive: bool = False) -> list[Entry]:
        """:meth:`list`, with each file's stored SHA-256 and time where a listing alone
        lacks them (what `cmq storage list` shows)."""
        return self.list(directory, recursive)

    def empty_dirs(self, directory: str = "") -> list[str]:
        """The empty directories below ``directory`` (their full names), which a recursive
        copy recreates; none where the service keeps only files."""
        return []

    def make_empty_dir(self, name: str) -> None:
        """Make ``name`` an (empty) directory: a directory where the service has them."""
        self.mkdir(name)

    def put_files(self, items: list[tuple[Path, str]], on_bytes: OnBytes | None = None) -> list[Entry]:
        """Store several local files (path, name), each verified; a provider may send them
        in one stream (a machine does)."""
        return [self.put_file(path, name, on_bytes) for path, name in items]

    def get_files(self, items: list[tuple[str, Path]], on_bytes: OnBytes | None = None) -> list[Entry]:
        """Copy several files (name, local path) here, each verified."""
        return [self.get_file(name, path, on_bytes) for name, path in items]

    def copy_within(self, source: str, dest: str) -> Entry | None:
        """Copy ``source`` to ``dest`` on this service without moving the bytes through
        cmq, where the service can; None where it cannot."""
        return None

    def close(self) -> None:  # noqa: B027 (most providers hold nothing to release)
        """Release the connection, if any."""
