"""Records of any dict, flattened into a table made from the dicts themselves (the seed's
database of VMs): ``{"name": "vm1", "data": {"image": "x"}}`` is the row ``name=vm1,
data_image=x``; a key never seen before becomes a new column. No fixed schema: the same
helpers keep VMs, clouds, or anything else a cloud reports.

The tables live in the history store's database: SQLite (the default; a table per kind,
columns added as keys appear) or MongoDB (a collection per kind, the flattened dicts as
documents).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from typing import Any

#: Separator of the parts of a flattened key (``data`` + ``image`` -> ``data_image``).
SEP = "_"
_KIND = re.compile(r"^[a-z][a-z0-9_]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``record`` with nested dicts flattened into ``parent_child`` keys; lists (and other
    values that are not str, int, float, bool or None) become JSON text; characters other
    than letters, digits and '_' in a key become '_'."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{SEP}{_UNSAFE.sub('_', str(key))}" if prefix else _UNSAFE.sub("_", str(key))
        if isinstance(value, dict):
            out.update(flatten(value, name))
        elif value is None or isinstance(value, (str, int, float, bool)):
            out[name] = value
        else:
            out[name] = json.dumps(value, sort_keys=True, default=str)
    return out


class RecordTable(ABC):
    """Flattened records of one kind (``vm``, ``cloud``...), each named by its ``key`` field."""

    def __init__(self, kind: str, key: str = "name") -> None:
        if not _KIND.match(kind) or not _KIND.match(key):
            raise ValueError(f"record kind and key are lower-case identifiers: {kind!r}, {key!r}")
        self.kind, self.key = kind, key

    @abstractmethod
    def add(self, records: list[dict[str, Any]]) -> None:
        """Insert or replace each record (flattened); a record replaces the one with its key."""

    @abstractmethod
    def search(self, **where: Any) -> list[dict[str, Any]]:
        """The records whose flattened fields equal ``where`` (all of them without), by key."""

    @abstractmethod
    def delete(self, **where: Any) -> int:
        """Forget the records whose flattened fields equal ``where``; how many."""

    def get(self, key: str) -> dict[str, Any] | None:
        """The record named ``key``, or None."""
        found = self.search(**{self.key: key})
        return found[0] if found else None

    def _flat(self, record: dict[str, Any]) -> dict[str, Any]:
        flat = flatten(record)
        if flat.get(self.key) in (None, ""):
            raise ValueError(f"a {self.kind} record needs a {self.key!r}: {sorted(flat)}")
        flat[self.key] = str(flat[self.key])
        return flat


class SqliteRecords(RecordTable):
    """A table ``records_KIND`` in the history store's SQLite file; a column per key seen."""

    def __init__(self, store: Any, kind: str, key: str = "name") -> None:
        super().__init__(kind, key)
        self.store = store
        self.table = f"records_{kind}"
        with store._tx() as db:
            db.execute(f'CREATE TABLE IF NOT EXISTS "{self.table}" ("{key}" TEXT PRIMARY KEY)')

    def _columns(self, db: Any) -> set[str]:
        return {row[1] for row in db.execute(f'PRAGMA table_info("{self.table}")')}

    def add(self, records: list[dict[str, Any]]) -> None:
        flat = [self._flat(r) for r in records]
        with self.store._tx() as db:
            have = self._columns(db)
            for column in sorted({k for f in flat for k in f} - have):
                db.execute(f'ALTER TABLE "{self.table}" ADD COLUMN "{column}"')
            for f in flat:
                columns = ", ".join(f'"{n}"' for n in f)
                marks = ", ".join("?" for _ in f)
                db.execute(f'INSERT OR REPLACE INTO "{self.table}" ({columns}) VALUES ({marks})', list(f.values()))

    def _where(self, where: dict[str, Any], have: set[str]) -> tuple[str, list[Any]] | None:
        flat = flatten(where)
        if any(k not in have for k in flat):
            return None                       # a field no record has: nothing matches
        clause = " AND ".join(f'"{k}" IS ?' for k in flat)
        return (f" WHERE {clause}" if clause else ""), list(flat.values())

    def search(self, **where: Any) -> list[dict[str, Any]]:
        with self.store._lock:
            db = self.store.db
            have = self._columns(db)
            clause = self._where(where, have)
            if clause is None:
                return []
            cursor = db.execute(f'SELECT * FROM "{self.table}"{clause[0]} ORDER BY "{self.key}"', clause[1])
            names = [d[0] for d in cursor.description]
            return [{n: v for n, v in zip(names, row, strict=True) if v is not None} for row in cursor.fetchall()]

    def delete(self, **where: Any) -> int:
        with self.store._tx() as db:
            clause = self._where(where, self._columns(db))
            if clause is None:
                return 0
            return db.execute(f'DELETE FROM "{self.table}"{clause[0]}', clause[1]).rowcount


class MongoRecords(RecordTable):
    """A collection ``records_KIND`` in the history store's MongoDB database."""

    def __init__(self, store: Any, kind: str, key: str = "name") -> None:
        super().__init__(kind, key)
        self.docs = store.db[f"records_{kind}"]

    def add(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            flat = self._flat(record)
            self.docs.replace_one({"_id": flat[self.key]}, flat, upsert=True)

    def search(self, **where: Any) -> list[dict[str, Any]]:
        found = self.docs.find(flatten(where), {"_id": False})
        return sorted(({k: v for k, v in d.items() if v is not None} for d in found), key=lambda d: d[self.key])

    def delete(self, **where: Any) -> int:
        return self.docs.delete_many(flatten(where)).deleted_count


def records_for(store: Any, kind: str, key: str = "name") -> RecordTable:
    """The record table of ``kind`` in the database of history ``store``."""
    from ..history.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        return SqliteRecords(store, kind, key)
    return MongoRecords(store, kind, key)
