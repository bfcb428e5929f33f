"""The schedules of both history backends (see :mod:`cmqueue.schedules`): a table of
SQLite, a collection of MongoDB. Each store class takes the mixin of its backend.

A schedule is a dict of plain fields (:class:`cmqueue.schedules.model.Schedule`'s). Its
``checked`` time moves forward only by :meth:`claim_schedule`, a compare-and-set: of the
callers that claim one due time, exactly one gets True, in one process or in several.
"""

from __future__ import annotations

import json
from typing import Any

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (name TEXT PRIMARY KEY, checked REAL NOT NULL, doc TEXT NOT NULL);
"""


class SqliteSchedules:
    """Schedules in the table ``schedules`` (name, checked, the other fields as JSON)."""

    db: Any
    _lock: Any
    _schedules_ready = False

    def _tx(self) -> Any:                          # provided by the store
        raise NotImplementedError

    def _schedule_tx(self) -> Any:
        if not self._schedules_ready:
            with self._lock:
                self.db.executescript(SQLITE_SCHEMA)
            self._schedules_ready = True
        return self._tx()

    @staticmethod
    def _doc(row: tuple) -> dict:
        name, checked, doc = row
        return {**json.loads(doc), "name": name, "checked": checked}

    def add_schedule(self, schedule: dict) -> bool:
        """See :meth:`cmqueue.history.base.HistoryStore.add_schedule`."""
        with self._schedule_tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO schedules (name, checked, doc) VALUES (?,?,?)",
                             (schedule["name"], float(schedule.get("checked") or 0.0), json.dumps(schedule)))
            return cur.rowcount == 1

    def schedule(self, name: str) -> dict | None:
        """See :meth:`cmqueue.history.base.HistoryStore.schedule`."""
        with self._schedule_tx() as db:
            row = db.execute("SELECT name, checked, doc FROM schedules WHERE name=?", (name,)).fetchone()
        return self._doc(row) if row else None

    def schedules(self) -> list[dict]:
        """See :meth:`cmqueue.history.base.HistoryStore.schedules`."""
        with self._schedule_tx() as db:
            rows = db.execute("SELECT name, checked, doc FROM schedules ORDER BY name").fetchall()
        return [self._doc(r) for r in rows]

    def update_schedule(self, name: str, changes: dict) -> bool:
        """See :meth:`cmqueue.history.base.HistoryStore.update_schedule`."""
        with self._schedule_tx() as db:
            return self._update(db, name, changes, None, None)

    def claim_schedule(self, name: str, due: float, changes: dict, count: str | None = None) -> bool:
        """See :meth:`cmqueue.history.base.HistoryStore.claim_schedule`."""
        with self._schedule_tx() as db:
            return self._update(db, name, {**changes, "checked": due}, due, count)

    @staticmethod
    def _update(db: Any, name: str, changes: dict, below: float | None, count: str | None) -> bool:
        row = db.execute("SELECT checked, doc FROM schedules WHERE name=?", (name,)).fetchone()
        if row is None or (below is not None and not row[0] < below):
            return False
        doc = {**json.loads(row[1]), **changes}
        if count:
            doc[count] = int(doc.get(count) or 0) + 1
        checked = float(changes.get("checked", row[0]))
        doc["checked"] = checked
        db.execute("UPDATE schedules SET checked=?, doc=? WHERE name=?", (checked, json.dumps(doc), name))
        return True

    def remove_schedule(self, name: str) -> bool:
        """See :meth:`cmqueue.history.base.HistoryStore.remove_schedule`."""
        with self._schedule_tx() as db:
            return db.execute("DELETE FROM schedules WHERE name=?", (name,)).rowcount == 1


class MongoSchedules:
    """Schedules in the collection ``schedules`` (``_id`` = the name)."""

    db: Any

    @staticmethod
    def _doc(doc: dict) -> dict:
        out = {k: v for k, v in doc.items() if k != "_id"}
        out["name"] = doc["_id"]
        return out

    def add_schedule(self, schedule: dict) -> bool:
        """See :meth:`cmqueue.history.base.HistoryStore.add_schedule`."""
        doc = {k: v for k, v in schedule.items() if k != "name"}
        doc["checked"] = float(doc.get("checked") or 0.0)
        res = self.db.schedules.update_one({"_id": schedule["name"]}, {"$setOnInsert": doc}, upsert=True)
        return res.upserted_id is not None

    def schedule(self, name: str) -> dict | None:
        """See :meth:`cmqueue.history.base.HistoryStore.schedule`."""
        doc = self.db.schedules.find_one({"_id": name})
        return self._doc(doc) if doc else None

    def schedules(self) -> list[dict]:
        """See :meth:`cmqueue.history.base.HistoryStore.schedules`."""
        return [self._doc(d) for d in self.db.schedules.find().sort("_id", 1)]

    def update_schedule(self, name: str, changes: dict) -> bool:
        """See :meth:`cmqueue.history.base.HistoryStore.update_schedule`."""
        sets = {k: v for k, v in changes.items() if k != "name"}
        if not sets:
            return self.db.schedules.find_one({"_id": name}, {"_id": 1}) is not None
        return self.db.schedules.update_one({"_id": name}, {"$set": sets}).matched_count == 1

    def claim_schedule(self, name: str, due: float, changes: dict, count: str | None = None) -> bool:
        """See :meth:`cmqueue.history.base.HistoryStore.claim_schedule`."""
        update: dict[str, Any] = {"$set": {**{k: v for k, v in changes.items() if k != "name"}, "checked": due}}
        if count:
            update["$inc"] = {count: 1}
        res = self.db.schedules.update_one({"_id": name, "checked": {"$lt": due}}, update)
        return res.modified_count == 1

    def remove_schedule(self, name: str) -> bool:
        """See :meth:`cmqueue.history.base.HistoryStore.remove_schedule`."""
        return self.db.schedules.delete_one({"_id": name}).deleted_count == 1
