"""Where the virtual directory keeps its entries: in the history store's database (a
table each in SQLite, a collection each in MongoDB), never in files of its own.

A directory is a path (``/proj``); a file is a record::

    {"path": "/proj/a.csv", "size": 12, "sha256": "...", "mtime": 1700000000.0,
     "preferred": "box", "updated": 1700000001.0,
     "replicas": [{"service": "box", "name": "proj/a.csv", "size": 12, "sha256": "...", "mtime": ...}]}
"""

from __future__ import annotations

import json
import posixpath
import time
from abc import ABC, abstractmethod
from typing import Any

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}_dirs (path TEXT PRIMARY KEY, parent TEXT NOT NULL, created REAL);
CREATE INDEX IF NOT EXISTS {p}_dirs_parent ON {p}_dirs (parent);
CREATE TABLE IF NOT EXISTS {p}_files (path TEXT PRIMARY KEY, parent TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS {p}_files_parent ON {p}_files (parent);
"""
#: The table (collection) prefixes in use: the virtual directory's and the pool's index.
PREFIXES = ("vdir", "pool")


def parent_of(path: str) -> str:
    """The directory a vdir path is in ("/" for top-level names)."""
    return posixpath.dirname(path) or "/"


def _below(path: str) -> str:
    return "/" if path == "/" else path + "/"


class VdirBackend(ABC):
    """The operations the virtual directory needs from a database."""

    @abstractmethod
    def has_dir(self, path: str) -> bool:
        """Whether directory ``path`` exists ("/" always does)."""

    @abstractmethod
    def make_dir(self, path: str) -> None:
        """Record directory ``path`` (its parent exists)."""

    @abstractmethod
    def subdirs(self, path: str) -> list[str]:
        """The directories directly in ``path``, sorted."""

    @abstractmethod
    def files(self, path: str) -> list[dict[str, Any]]:
        """The file records directly in ``path``, sorted by path."""

    @abstractmethod
    def file(self, path: str) -> dict[str, Any] | None:
        """The record of file ``path``, or None."""

    @abstractmethod
    def save_file(self, record: dict[str, Any]) -> None:
        """Insert or replace a file record."""

    @abstractmethod
    def remove_file(self, path: str) -> None:
        """Forget file ``path``."""

    @abstractmethod
    def remove_dir(self, path: str) -> int:
        """Forget directory ``path`` and everything below it; how many files were below."""

    @abstractmethod
    def all_files(self, path: str) -> list[dict[str, Any]]:
        """Every file record below directory ``path``."""


class SqliteVdir(VdirBackend):
    """Two tables in the history store's SQLite file (its connection and transactions)."""

    def __init__(self, store: Any, prefix: str = "vdir") -> None:
        if prefix not in PREFIXES:
            raise ValueError(prefix)
        self.store = store
        self.dirs_table, self.files_table = f"{prefix}_dirs", f"{prefix}_files"
        with store._tx() as db:
            for statement in SQLITE_SCHEMA.format(p=prefix).strip().split(";"):
                if statement.strip():
                    db.execute(statement)

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.store._lock:
            return self.store.db.execute(sql, args).fetchall()

    def has_dir(self, path: str) -> bool:
        return path == "/" or bool(self._read(f"SELECT 1 FROM {self.dirs_table} WHERE path=?", (path,)))

    def make_dir(self, path: str) -> None:
        with self.store._tx() as db:
            db.execute(f"INSERT OR IGNORE INTO {self.dirs_table} (path, parent, created) VALUES (?,?,?)",
                       (path, parent_of(path), time.time()))

    def subdirs(self, path: str) -> list[str]:
        return [r[0] for r in self._read(f"SELECT path FROM {self.dirs_table} WHERE parent=? ORDER BY path", (path,))]

    def files(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in
                self._read(f"SELECT record FROM {self.files_table} WHERE parent=? ORDER BY path", (path,))]

    def file(self, path: str) -> dict[str, Any] | None:
        rows = self._read(f"SELECT record FROM {self.files_table} WHERE path=?", (path,))
        return json.loads(rows[0][0]) if rows else None

    def save_file(self, record: dict[str, Any]) -> None:
        with self.store._tx() as db:
            db.execute(f"INSERT OR REPLACE INTO {self.files_table} (path, parent, record) VALUES (?,?,?)",
                       (record["path"], parent_of(record["path"]), json.dumps(record)))

    def remove_file(self, path: str) -> None:
        with self.store._tx() as db:
            db.execute(f"DELETE FROM {self.files_table} WHERE path=?", (path,))

    def all_files(self, path: str) -> list[dict[str, Any]]:
        prefix = _below(path)
        return [json.loads(r[0]) for r in self._read(
            f"SELECT record FROM {self.files_table} WHERE substr(path, 1, ?)=? ORDER BY path", (len(prefix), prefix))]

    def remove_dir(self, path: str) -> int:
        prefix = _below(path)
        with self.store._tx() as db:
            (count,) = db.execute(f"SELECT COUNT(*) FROM {self.files_table} WHERE substr(path, 1, ?)=?",
                                  (len(prefix), prefix)).fetchone()
            db.execute(f"DELETE FROM {self.files_table} WHERE substr(path, 1, ?)=?", (len(prefix), prefix))
            db.execute(f"DELETE FROM {self.dirs_table} WHERE path=? OR substr(path, 1, ?)=?",
                       (path, len(prefix), prefix))
        return int(count)


class MongoVdir(VdirBackend):
    """Two collections in the history store's MongoDB database."""

    def __init__(self, store: Any, prefix: str = "vdir") -> None:
        if prefix not in PREFIXES:
            raise ValueError(prefix)
        self.dirs = store.db[f"{prefix}_dirs"]
        self.file_docs = store.db[f"{prefix}_files"]
        self.dirs.create_index("parent")
        self.file_docs.create_index("parent")

    def has_dir(self, path: str) -> bool:
        return path == "/" or self.dirs.find_one({"_id": path}) is not None

    def make_dir(self, path: str) -> None:
        self.dirs.update_one({"_id": path}, {"$setOnInsert": {"parent": parent_of(path), "created": time.time()}},
                             upsert=True)

    def subdirs(self, path: str) -> list[str]:
        return sorted(d["_id"] for d in self.dirs.find({"parent": path}))

    def files(self, path: str) -> list[dict[str, Any]]:
        return sorted((d["record"] for d in self.file_docs.find({"parent": path})), key=lambda r: r["path"])

    def file(self, path: str) -> dict[str, Any] | None:
        doc = self.file_docs.find_one({"_id": path})
        return doc["record"] if doc else None

    def save_file(self, record: dict[str, Any]) -> None:
        self.file_docs.replace_one({"_id": record["path"]},
                                   {"parent": parent_of(record["path"]), "record": record}, upsert=True)

    def remove_file(self, path: str) -> None:
        self.file_docs.delete_one({"_id": path})

    def _under(self, path: str) -> dict[str, Any]:
        import re

        return {"$regex": "^" + re.escape(_below(path))}

    def all_files(self, path: str) -> list[dict[str, Any]]:
        return sorted((d["record"] for d in self.file_docs.find({"_id": self._under(path)})), key=lambda r: r["path"])

    def remove_dir(self, path: str) -> int:
        count = self.file_docs.delete_many({"_id": self._under(path)}).deleted_count
        self.dirs.delete_many({"$or": [{"_id": path}, {"_id": self._under(path)}]})
        return int(count)


def backend_for(store: Any, prefix: str = "vdir") -> VdirBackend:
    """The virtual directory's tables (or, with ``prefix`` "pool", the pool's index) in
    the database of history store ``store``."""
    from ..history.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        return SqliteVdir(store, prefix)
    return MongoVdir(store, prefix)
