"""The virtual directory: one tree of names over files kept on the storage services.

A name (``/proj/a.csv``) has one or more replicas, each a file on a service
(``{service}/{dirname}/{basename}``), all with the same SHA-256, and a preferred one that
``{dirname}/{basename}`` resolves to. Names need not be unique across services. Adding
different content under a name that exists updates every replica when the new file is
newer, and is refused as a conflict when it is not: nothing is overwritten silently.
The working directory (`cmq vdir cd`) is kept in the cmq home, so it lasts between
commands.
"""

from __future__ import annotations

import posixpath
import time
from pathlib import Path
from typing import Any

from ..core.errors import CmqError, MissingError, UsageError
from ..core.files import write_private
from . import names
from .base import NotFoundError, StorageError
from .ops import Providers, Step, run_step
from .vdir_store import VdirBackend, parent_of

#: The file in the cmq home that holds the working directory.
CWD_FILE = "vdir.cwd"


class VdirError(CmqError):
    """A virtual directory operation cannot be done (no such name, not empty, ...)."""


class VdirNotFoundError(VdirError, MissingError):
    """A vdir name or directory that does not exist."""


class ConflictError(VdirError):
    """Different content for a name whose recorded content is as new or newer."""


class VirtualDirectory:
    """Names, directories and replicas, kept in the history store's database."""

    def __init__(self, backend: VdirBackend, providers: Providers, home: Path) -> None:
        self.db = backend
        self.providers = providers
        self.home = Path(home)

    # -- paths -----------------------------------------------------------------------------
    @property
    def cwd(self) -> str:
        """The working directory ("/" when none was set, or it is gone)."""
        try:
            path = (self.home / CWD_FILE).read_text().strip()
        except OSError:
            return "/"
        return path if path.startswith("/") and self.db.has_dir(path) else "/"

    def path(self, text: str | None) -> str:
        """The absolute vdir path of ``text`` (relative to the working directory)."""
        text = text or "."
        if "\0" in text or "\\" in text:
            raise UsageError(f"{text!r}: a vdir path uses '/' and holds no NUL")
        joined = posixpath.normpath(posixpath.join(self.cwd, text))
        return "/" + joined.lstrip("/") if joined != "/" else "/"

    # -- directories ---------------------------------------------------------------------
    def mkdir(self, text: str) -> str:
        """Make a directory and its parents; its path."""
        path = self.path(text)
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:i])
            if self.db.file(sub) is not None:
                raise VdirError(f"vdir {sub}: is a file")
            self.db.make_dir(sub)
        return path

    def cd(self, text: str | None) -> str:
        """Change the working directory (to "/" without an argument); the new one."""
        path = self.path(text) if text else "/"
        if not self.db.has_dir(path):
            raise VdirNotFoundError(f"vdir {path}: no such directory")
        write_private(self.home / CWD_FILE, path + "\n")
        return path

    def ls(self, text: str | None) -> tuple[list[str], list[dict[str, Any]]]:
        """The directories and file records in a directory (or one file's record)."""
        path = self.path(text)
        record = self.db.file(path)
        if record is not None:
            return [], [record]
        if not self.db.has_dir(path):
            raise VdirNotFoundError(f"vdir {path}: no such file or directory")
        return self.db.subdirs(path), self.db.files(path)

    # -- files ------------------------------------------------------------------------------
    def locate(self, text: str) -> tuple[dict[str, Any], str | None]:
        """The record a name resolves to, and the service of the replica it names:
        ``{dirname}/{basename}`` is the name (its preferred replica), and
        ``{service}/{dirname}/{basename}`` the replica on that service."""
        path = self.path(text)
        record = self.db.file(path)
        if record is not None:
            return record, None
        first, _, rest = path.lstrip("/").partition("/")
        if rest and first in self.providers.inventory.storage:
            record = self.db.file("/" + rest)
            if record is not None and any(r["service"] == first for r in record["replicas"]):
                return record, first
        raise VdirNotFoundError(f"vdir {path}: no such file")

    def add(self, endpoint: str, text: str) -> tuple[dict[str, Any], str]:
        """Record the file at ``endpoint`` (SERVICE:PATH) under a name; (record, what was done)."""
        service, raw = names.split_address(endpoint, None)
        if service is None:
            raise UsageError(f"{endpoint}: give the file as SERVICE:PATH")
        name = names.object_name(raw)
        provider = self.providers(service)
        entry = provider.stat(name)
        if entry is None or entry.is_dir:
            raise NotFoundError(f"{service}:{name}: no such file")
        sha = provider.hash(name)
        path = self.path(text)
        if self.db.has_dir(path):
            path = posixpath.join(path, names.basename(name)) if path != "/" else "/" + names.basename(name)
        if not self.db.has_dir(parent_of(path)):
            raise VdirNotFoundError(f"vdir {parent_of(path)}: no such directory (cmq vdir mkdir {parent_of(path)})")
        replica = {"service": service, "name": name, "size": entry.size, "sha256": sha, "mtime": entry.mtime}
        record = self.db.file(path)
        if record is None:
            record = {"path": path, "size": entry.size, "sha256": sha, "mtime": entry.mtime, "preferred": service,
                      "updated": time.time(), "replicas": [replica]}
            self.db.save_file(record)
            return record, "added"
        if record["sha256"] == sha:
            existing = next((r for r in record["replicas"] if r["service"] == service), None)
            if existing is not None and existing["name"] == name:
                return record, "already there"
            record["replicas"] = [r for r in record["replicas"] if r["service"] != service] + [replica]
            record["updated"] = time.time()
            self.db.save_file(record)
            return record, "replica added"
        if entry.mtime <= record["mtime"]:
            raise ConflictError(
                f"vdir {path}: conflict: it holds {record['size']} bytes sha256 {record['sha256'][:12]}... of "
                f"{_when(record['mtime'])}; {service}:{name} has other content ({entry.size} bytes, sha256 "
                f"{sha[:12]}...) that is not newer ({_when(entry.mtime)}); nothing changed")
        return self._update(record, replica), "updated"

    def _update(self, record: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
        """Copy the newer content to every other replica (verified), then record it."""
        updated = [newer]
        for r in record["replicas"]:
            if (r["service"], r["name"]) == (newer["service"], newer["name"]):
                continue
            step = Step(source=newer["service"], source_path=newer["name"], dest=r["service"], dest_path=r["name"],
                        size=newer["size"])
            run_step(self.providers, step)
            updated.append({**r, "size": newer["size"], "sha256": newer["sha256"],
                            "mtime": self.providers(r["service"]).stat(r["name"]).mtime})
        record.update(size=newer["size"], sha256=newer["sha256"], mtime=newer["mtime"], updated=time.time(),
                      replicas=updated)
        self.db.save_file(record)
        return record

    def delete(self, text: str, purge: bool = False) -> int:
        """Forget a file or a directory tree (and, with ``purge``, delete the replicas);
        how many files were forgotten."""
        path = self.path(text)
        if path == "/":
            raise UsageError("vdir /: the root is not deleted; delete what is in it by name")
        record = self.db.file(path)
        if record is not None:
            if purge:
                self._purge(record)
            self.db.remove_file(path)
            return 1
        if not self.db.has_dir(path):
            raise VdirNotFoundError(f"vdir {path}: no such file or directory")
        if purge:
            for r in self.db.all_files(path):
                self._purge(r)
        return self.db.remove_dir(path)

    def _purge(self, record: dict[str, Any]) -> None:
        for r in record["replicas"]:
            try:
                self.providers(r["service"]).delete(r["name"])
            except NotFoundError:
                pass

    def status(self, text: str, verify: bool = False) -> dict[str, Any]:
        """A file's record with each replica checked on its service (present, size, and
        SHA-256 where the service keeps it, or always with ``verify``); or a directory's
        counts."""
        path = self.path(text)
        if self.db.has_dir(path) and self.db.file(path) is None:
            files = self.db.all_files(path)
            return {"path": path, "type": "dir", "files": len(files), "bytes": sum(f["size"] for f in files),
                    "replicas": sum(len(f["replicas"]) for f in files)}
        record, _ = self.locate(text)
        checked = []
        for r in record["replicas"]:
            checked.append({**r, "state": self._check(record, r, verify),
                            "preferred": r["service"] == record["preferred"]})
        return {**record, "type": "file", "replicas": checked}

    def _check(self, record: dict[str, Any], replica: dict[str, Any], verify: bool) -> str:
        try:
            provider = self.providers(replica["service"])
            entry = provider.stat(replica["name"])
        except StorageError as e:
            return f"unreachable: {e}"
        except CmqError as e:
            return f"unreachable: {e}"
        if entry is None or entry.is_dir:
            return "missing"
        if entry.size != record["size"]:
            return f"differs (size {entry.size})"
        sha = entry.sha256 or (provider.hash(replica["name"]) if verify else None)
        if sha is None:
            return "ok (size)"
        return "ok" if sha == record["sha256"] else "differs (sha256)"

    def get(self, text: str, destination: Path) -> tuple[dict[str, Any], str]:
        """Copy a file to ``destination`` (a directory receives it under its name) from its
        preferred replica, or the next one that works; (record, service used)."""
        record, named = self.locate(text)
        order = [named] if named else [record["preferred"]] + [r["service"] for r in record["replicas"]
                                                               if r["service"] != record["preferred"]]
        dest = Path(destination)
        if dest.is_dir():
            dest = dest / posixpath.basename(record["path"])
        problems = []
        for service in order:
            replica = next(r for r in record["replicas"] if r["service"] == service)
            try:
                entry = self.providers(service).get_file(replica["name"], dest)
            except (StorageError, NotFoundError) as e:
                problems.append(str(e))
                continue
            if entry.sha256 != record["sha256"]:
                dest.unlink(missing_ok=True)
                problems.append(f"{service}:{replica['name']}: its content differs from the name's (sha256)")
                continue
            return record, service
        raise VdirError(f"vdir {record['path']}: no replica could be read: " + "; ".join(problems))

    def get_tree(self, text: str, destination: Path) -> list[tuple[dict[str, Any], str]]:
        """Copy every file under a directory to ``destination`` (its tree kept), each as
        :meth:`get` does; (record, service used) per file."""
        path = self.path(text)
        if not self.db.has_dir(path):
            raise VdirNotFoundError(f"vdir {path}: no such directory")
        cut = len(path.rstrip("/")) + 1
        return [self.get(record["path"], Path(destination) / record["path"][cut:])
                for record in self.db.all_files(path)]

    def replicate(self, text: str, services: list[str]) -> dict[str, Any]:
        """Copy a file to more services (as ``{dirname}/{basename}`` there), verified."""
        record, _ = self.locate(text)
        source = next(r for r in record["replicas"] if r["service"] == record["preferred"])
        name = record["path"].lstrip("/")
        for service in services:
            if any(r["service"] == service for r in record["replicas"]):
                continue
            self.providers(service)                   # an unknown service fails before anything moves
            result = run_step(self.providers, Step(source=source["service"], source_path=source["name"],
                                                   dest=service, dest_path=name, size=record["size"]))
            if result["sha256"] != record["sha256"]:
                raise VdirError(f"{service}:{name}: copied content differs from the name's (sha256)")
            entry = self.providers(service).stat(name)
            record["replicas"].append({"service": service, "name": name, "size": record["size"],
                                       "sha256": record["sha256"], "mtime": entry.mtime if entry else 0.0})
        record["updated"] = time.time()
        self.db.save_file(record)
        return record

    def prefer(self, text: str, service: str) -> dict[str, Any]:
        """Make the replica on ``service`` the one the name resolves to."""
        record, _ = self.locate(text)
        if not any(r["service"] == service for r in record["replicas"]):
            have = ", ".join(r["service"] for r in record["replicas"])
            raise VdirError(f"vdir {record['path']}: has no replica on {service} (it has: {have}); "
                            f"cmq vdir replicate {record['path']} {service}")
        record["preferred"] = service
        record["updated"] = time.time()
        self.db.save_file(record)
        return record


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
