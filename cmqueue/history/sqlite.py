"""SQLite history backend (the default): one file, WAL, safe across processes."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from ..core.errors import ServiceError
from ..core.models import Event, JobRecord, JobResult, JobSpec, JobStatus, stream_id_key
from .base import HistoryStore, cache_change, job_changes
from .schedule_store import SqliteSchedules

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, batch TEXT, spec TEXT NOT NULL, state TEXT NOT NULL,
    machine TEXT, exit_code INTEGER, reason TEXT, submitted REAL, started REAL,
    ended REAL, updated REAL, attempt INTEGER, result TEXT, seq INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs(batch);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_seq ON jobs(seq);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, state TEXT NOT NULL,
    ts REAL, machine TEXT, attempt INTEGER, data TEXT, stream_id TEXT
);
CREATE INDEX IF NOT EXISTS events_job ON events(job);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS cache (
    machine TEXT NOT NULL, sha TEXT NOT NULL, size INTEGER, added REAL, last_used REAL,
    PRIMARY KEY (machine, sha)
);
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY, expr TEXT, source TEXT, created REAL, reducer TEXT, final TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    wf TEXT NOT NULL, name TEXT NOT NULL, kind TEXT, seq INTEGER, spec TEXT, operands TEXT, job TEXT,
    PRIMARY KEY (wf, name)
);
CREATE TABLE IF NOT EXISTS facts (machine TEXT PRIMARY KEY, ts REAL NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS steps_name ON steps(name);
"""
BUSY_TIMEOUT = 30.0
"""Seconds a statement waits for another process's lock before it fails."""


def _switch_to_wal(db: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode, waiting out other processes doing the same.

    Changing the journal mode needs the file to itself, and SQLite answers "locked" at once
    instead of calling the busy handler when another process holds it (several services
    opening a new history together): so the switch is retried here until *timeout*.
    """
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
        if time.monotonic() >= deadline:
            raise sqlite3.OperationalError("database is locked (could not switch it to WAL mode)")
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


_COLS = "id, batch, spec, state, machine, exit_code, reason, started, ended, updated, result, attempt"


def _record(row: tuple) -> JobRecord:
    (jid, _batch, spec, state, machine, exit_code, reason, started, ended, updated, result, attempt) = row
    job_spec = JobSpec.from_dict(json.loads(spec))
    job_spec.attempt = attempt or job_spec.attempt
    return JobRecord(spec=job_spec, state=JobStatus(state), machine=machine,
                     exit_code=exit_code, reason=reason or "", started=started, ended=ended,
                     updated=updated or 0.0,
                     result=JobResult.from_dict(json.loads(result)) if result else None)


class SqliteStore(SqliteSchedules, HistoryStore):
    """History in one SQLite file (WAL mode, so readers never block the recorder)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            _switch_to_wal(self.db, BUSY_TIMEOUT)
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as e:
            raise ServiceError(f"history store {self.path}: {e}") from None
        self._lock = threading.RLock()

    def _tx(self):
        return _Transaction(self)

    def add(self, records: Iterable[JobRecord]) -> None:
        with self._tx() as db:
            (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()
            for rec in records:
                seq += 1
                s = rec.spec
                db.execute(
                    "INSERT INTO jobs (id, batch, spec, state, submitted, updated, attempt, seq)"
                    " VALUES (?,?,?,?,?,?,?,?)",
                    (s.id, s.batch, json.dumps(s.to_dict()), rec.state.value, s.submitted,
                     rec.updated, s.attempt, seq))
                db.execute("INSERT INTO events (job, state, ts, attempt, data) VALUES (?,?,?,?,?)",
                           (s.id, rec.state.value, s.submitted, s.attempt,
                            json.dumps({"target": s.target, "queue": s.queue})))

    def apply(self, events: list[Event], cursor: str | None = None) -> int:
        changed = 0
        with self._tx() as db:
            if cursor is not None:
                row = db.execute("SELECT value FROM meta WHERE key='cursor'").fetchone()
                stored = stream_id_key(row[0] if row else "")
                events = [e for e in events if stream_id_key(e.id) > stored]
            for ev in events:
                row = db.execute("SELECT state FROM jobs WHERE id=?", (ev.job,)).fetchone()
                if row is None and isinstance(ev.data.get("spec"), dict):
                    self._adopt(db, JobSpec.from_dict(ev.data["spec"]))
                    row = (JobStatus.QUEUED.value,)
                db.execute("INSERT INTO events (job, state, ts, machine, attempt, data, stream_id)"
                           " VALUES (?,?,?,?,?,?,?)",
                           (ev.job, ev.state.value, ev.ts, ev.machine, ev.attempt,
                            json.dumps(ev.data), ev.id or None))
                cache = cache_change(ev)
                if cache:
                    self._cache_update(db, cache["machine"], cache.get("added", []), cache.get("used", []),
                                       cache.get("evicted", []), ev.ts)
                if row is None:
                    continue
                sets = job_changes(JobStatus(row[0]), ev)
                if sets is None:
                    continue
                changed += 1
                if "result" in sets:
                    sets["result"] = json.dumps(sets["result"])
                cols = ", ".join(f"{k}=?" for k in sets)
                db.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*sets.values(), ev.job))
            if cursor is not None and events:
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?)", (cursor,))
        return changed

    @property
    def identity(self) -> str:
        """``sqlite-`` and a digest of this host's name and the file's path."""
        import hashlib
        import socket

        where = f"{socket.gethostname()}:{self.path.resolve()}"
        return f"sqlite-{hashlib.sha256(where.encode()).hexdigest()[:16]}"

    def cursor(self) -> str:
        with self._lock:
            row = self.db.execute("SELECT value FROM meta WHERE key='cursor'").fetchone()
        return row[0] if row else ""

    def _select(self, where: str, args: tuple = (), tail: str = "") -> list[JobRecord]:
        with self._lock:
            rows = self.db.execute(f"SELECT {_COLS} FROM jobs {where} {tail}", args).fetchall()
        return [_record(r) for r in rows]

    def get(self, job_id: str) -> JobRecord | None:
        found = self._select("WHERE id=?", (job_id,))
        return found[0] if found else None

    def get_many(self, ids: list[str]) -> list[JobRecord]:
        out: list[JobRecord] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            out += self._select(f"WHERE id IN ({','.join('?' * len(chunk))})", tuple(chunk))
        return out

    def by_prefix(self, prefix: str, limit: int = 2) -> list[JobRecord]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return self._select("WHERE id LIKE ? ESCAPE '\\'", (escaped + "%",), f"LIMIT {int(limit)}")

    def batch_ids(self, prefix: str, limit: int = 2) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._lock:
            rows = self.db.execute("SELECT DISTINCT batch FROM jobs WHERE batch LIKE ? ESCAPE '\\'"
                                   f" LIMIT {int(limit)}", (escaped + "%",)).fetchall()
        return [r[0] for r in rows]

    def batch(self, batch_id: str) -> list[JobRecord]:
        return self._select("WHERE batch=?", (batch_id,), "ORDER BY seq")

    def jobs(self, state: JobStatus | None = None, last: int | None = None) -> list[JobRecord]:
        where, args = ("WHERE state=?", (state.value,)) if state else ("", ())
        if last:
            found = self._select(where, args, f"ORDER BY seq DESC LIMIT {int(last)}")
            return list(reversed(found))
        return self._select(where, args, "ORDER BY seq")

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())

    def events(self, job_id: str) -> list[Event]:
        with self._lock:
            rows = self.db.execute("SELECT job, state, ts, machine, attempt, data, stream_id FROM events"
                                   " WHERE job=? ORDER BY seq", (job_id,)).fetchall()
        return [Event(job=r[0], state=JobStatus(r[1]), ts=r[2], machine=r[3], attempt=r[4] or 1,
                      data=json.loads(r[5] or "{}"), id=r[6] or "") for r in rows]

    @staticmethod
    def _adopt(db: sqlite3.Connection, s: JobSpec) -> None:
        """Record a job that was sent without a cmq client (its first event carries its spec)."""
        (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()
        db.execute("INSERT INTO jobs (id, batch, spec, state, submitted, updated, attempt, seq)"
                   " VALUES (?,?,?,?,?,?,?,?)",
                   (s.id, s.batch, json.dumps(s.to_dict()), JobStatus.QUEUED.value, s.submitted, s.submitted,
                    s.attempt, seq))

    @staticmethod
    def _cache_update(db: sqlite3.Connection, machine: str, added, used, evicted, ts: float) -> None:
        for sha, size in added:
            db.execute("INSERT INTO cache (machine, sha, size, added, last_used) VALUES (?,?,?,?,?)"
                       " ON CONFLICT (machine, sha) DO UPDATE SET last_used=excluded.last_used",
                       (machine, sha, size, ts, ts))
        for sha in used:
            db.execute("UPDATE cache SET last_used=? WHERE machine=? AND sha=?", (ts, machine, sha))
        for sha in evicted:
            db.execute("DELETE FROM cache WHERE machine=? AND sha=?", (machine, sha))

    def cache_update(self, machine, added=(), used=(), evicted=(), ts=None) -> None:
        import time

        with self._tx() as db:
            self._cache_update(db, machine, added, used, evicted, ts or time.time())

    def cache_entries(self, machine: str | None = None) -> list[dict]:
        where, args = ("WHERE machine=?", (machine,)) if machine else ("", ())
        with self._lock:
            rows = self.db.execute(f"SELECT machine, sha, size, added, last_used FROM cache {where}"
                                   " ORDER BY last_used, sha", args).fetchall()
        return [dict(zip(("machine", "sha", "size", "added", "last_used"), r, strict=True)) for r in rows]

    def add_workflow(self, workflow: dict, steps: list[dict]) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO workflows (id, expr, source, created, reducer, final) VALUES (?,?,?,?,?,?)",
                       (workflow["id"], workflow["expr"], workflow.get("source", ""), workflow["created"],
                        workflow.get("reducer", "add"), json.dumps(workflow.get("final", []))))
            for st in steps:
                db.execute("INSERT INTO steps (wf, name, kind, seq, spec, operands, job) VALUES (?,?,?,?,?,?,?)",
                           (workflow["id"], st["name"], st["kind"], st["seq"], json.dumps(st["spec"]),
                            json.dumps(st.get("operands", [])), st["job"]))

    def set_step_jobs(self, workflow: str, jobs: dict[str, dict]) -> None:
        with self._tx() as db:
            for name, st in jobs.items():
                db.execute("UPDATE steps SET job=?, spec=? WHERE wf=? AND name=?",
                           (st["job"], json.dumps(st["spec"]), workflow, name))

    def workflow(self, workflow_id: str) -> dict | None:
        with self._lock:
            row = self.db.execute("SELECT id, expr, source, created, reducer, final FROM workflows WHERE id=?",
                                  (workflow_id,)).fetchone()
            if row is None:
                return None
            steps = self.db.execute("SELECT name, kind, seq, spec, operands, job FROM steps WHERE wf=? ORDER BY seq",
                                    (workflow_id,)).fetchall()
        wf = dict(zip(("id", "expr", "source", "created", "reducer", "final"), row, strict=True))
        wf["final"] = json.loads(wf["final"] or "[]")
        wf["steps"] = [{"name": n, "kind": k, "seq": q, "spec": json.loads(sp), "operands": json.loads(o or "[]"),
                        "job": j} for n, k, q, sp, o, j in steps]
        return wf

    def workflows(self, last: int | None = None) -> list[dict]:
        with self._lock:
            rows = self.db.execute("SELECT id, expr, source, created, reducer, final FROM workflows"
                                   " ORDER BY created DESC" + (f" LIMIT {int(last)}" if last else "")).fetchall()
        return [dict(zip(("id", "expr", "source", "created", "reducer", "final"), r, strict=True))
                for r in reversed(rows)]

    def workflow_ids(self, prefix: str, limit: int = 2) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._lock:
            rows = self.db.execute(f"SELECT id FROM workflows WHERE id LIKE ? ESCAPE '\\' LIMIT {int(limit)}",
                                   (escaped + "%",)).fetchall()
        return [r[0] for r in rows]

    def step_successes(self, step: str, limit: int = 20) -> list[JobRecord]:
        return self._select("WHERE id IN (SELECT job FROM steps WHERE name=?) AND state='succeeded'", (step,),
                            f"ORDER BY ended DESC LIMIT {int(limit)}")

    def set_facts(self, machine: str, ts: float, facts: dict) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO facts (machine, ts, data) VALUES (?,?,?)",
                       (machine, ts, json.dumps(facts)))

    def facts(self, names: Iterable[str] | None = None) -> dict[str, dict]:
        with self._lock:
            rows = self.db.execute("SELECT machine, ts, data FROM facts ORDER BY machine").fetchall()
        wanted = None if names is None else set(names)
        return {m: {"ts": ts, "facts": json.loads(data)} for m, ts, data in rows if wanted is None or m in wanted}

    def close(self) -> None:
        with self._lock:
            self.db.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), serialised across threads."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        try:
            self.store.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            self.store._lock.release()
            raise ServiceError(f"history store {self.store.path}: {e}") from None
        return self.store.db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.store.db.execute("ROLLBACK" if exc_type else "COMMIT")
        except sqlite3.Error as e:            # COMMIT failed (a full disk): nothing was written
            if self.store.db.in_transaction:
                self.store.db.execute("ROLLBACK")
            raise ServiceError(f"history store {self.store.path}: {e}") from None
        finally:
            self.store._lock.release()
        if isinstance(exc, sqlite3.Error):    # a write failed (a full disk): rolled back, say where
            raise ServiceError(f"history store {self.store.path}: {exc}") from None
