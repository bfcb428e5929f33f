"""MongoDB history backend (pymongo), chosen by a ``mongodb://HOST/DB`` history URL.

It needs no transactions: every stream event is stored under its stream id (a second
apply of the same event changes nothing), a job moves by compare-and-set on its state,
and the cursor only moves forward. Sequence numbers (submission order, event order) come
from counters updated with ``$inc``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from ..core.errors import ServiceError
from ..core.models import Event, JobRecord, JobResult, JobSpec, JobStatus, stream_id_key
from .base import HistoryStore, cache_change, job_changes
from .schedule_store import MongoSchedules

_JOB_FIELDS = ("state", "machine", "exit_code", "reason", "started", "ended", "updated", "attempt", "result")


def _record(doc: dict[str, Any]) -> JobRecord:
    spec = JobSpec.from_dict(doc["spec"])
    spec.attempt = doc.get("attempt") or spec.attempt
    result = doc.get("result")
    return JobRecord(spec=spec, state=JobStatus(doc["state"]), machine=doc.get("machine"),
                     exit_code=doc.get("exit_code"), reason=doc.get("reason") or "", started=doc.get("started"),
                     ended=doc.get("ended"), updated=doc.get("updated") or 0.0,
                     result=JobResult.from_dict(result) if result else None)


class MongoStore(MongoSchedules, HistoryStore):
    """History in a MongoDB database (collections jobs, events, cache, workflows, steps, meta)."""

    def __init__(self, url: str) -> None:
        import pymongo
        from pymongo.errors import PyMongoError

        self._errors = PyMongoError
        self._url = url
        name = urlsplit(url).path.lstrip("/").split("?")[0] or "cmq"
        try:
            self.client: Any = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000, tz_aware=False)
            self.db = self.client[name]
            self.db.jobs.create_index([("batch", 1), ("seq", 1)])
            self.db.jobs.create_index([("state", 1)])
            self.db.jobs.create_index([("seq", 1)])
            self.db.events.create_index([("job", 1), ("seq", 1)])
            self.db.steps.create_index([("name", 1)])
        except PyMongoError as e:
            raise ServiceError(f"history store {urlsplit(url).hostname}: {e}") from None
        self._pymongo = pymongo

    def _next(self, counter: str, n: int = 1) -> int:
        """Reserve ``n`` numbers of ``counter``; returns the last one."""
        doc = self.db.meta.find_one_and_update({"_id": counter}, {"$inc": {"value": n}}, upsert=True,
                                               return_document=self._pymongo.ReturnDocument.AFTER)
        return int(doc["value"])

    def add(self, records: Iterable[JobRecord]) -> None:
        records = list(records)
        if not records:
            return
        last = self._next("job_seq", len(records))
        first_event = self._next("event_seq", len(records)) - len(records)
        jobs, events = [], []
        for i, rec in enumerate(records):
            s = rec.spec
            jobs.append({"_id": s.id, "batch": s.batch, "spec": s.to_dict(), "state": rec.state.value,
                         "submitted": s.submitted, "updated": rec.updated, "attempt": s.attempt,
                         "seq": last - len(records) + 1 + i})
            events.append({"job": s.id, "state": rec.state.value, "ts": s.submitted, "attempt": s.attempt,
                           "data": {"target": s.target, "queue": s.queue}, "seq": first_event + 1 + i})
        try:
            self.db.jobs.insert_many(jobs, ordered=True)
            self.db.events.insert_many(events, ordered=True)
        except self._errors as e:
            raise ServiceError(f"history store: {e}") from None

    def apply(self, events: list[Event], cursor: str | None = None) -> int:
        if cursor is not None:
            stored = stream_id_key(self.cursor())
            events = [e for e in events if stream_id_key(e.id) > stored]
        changed = 0
        for ev in events:
            doc = {"job": ev.job, "state": ev.state.value, "ts": ev.ts, "machine": ev.machine,
                   "attempt": ev.attempt, "data": ev.data, "stream_id": ev.id or None}
            if ev.id:
                res = self.db.events.update_one({"_id": ev.id}, {"$setOnInsert": doc}, upsert=True)
                if res.upserted_id is None:
                    continue                               # applied before: nothing changes
            doc["seq"] = self._next("event_seq")
            if ev.id:
                self.db.events.update_one({"_id": ev.id}, {"$set": {"seq": doc["seq"]}})
            else:
                self.db.events.insert_one(doc)
            cache = cache_change(ev)
            if cache:
                self.cache_update(cache["machine"], cache.get("added", []), cache.get("used", []),
                                  cache.get("evicted", []), ev.ts)
            changed += self._move(ev)
        if cursor is not None and events:
            current = self.cursor()
            if stream_id_key(cursor) > stream_id_key(current):
                self.db.meta.update_one({"_id": "cursor"}, {"$set": {"value": cursor}}, upsert=True)
        return changed

    def _move(self, ev: Event) -> int:
        """Apply one event to its job by compare-and-set on the state; 1 if it changed it.
        A job sent without a cmq client is recorded from the spec its first event carries."""
        for _ in range(5):
            job = self.db.jobs.find_one({"_id": ev.job}, {"state": 1})
            if job is None and isinstance(ev.data.get("spec"), dict):
                from pymongo.errors import DuplicateKeyError

                try:
                    self.add([JobRecord(spec=JobSpec.from_dict(ev.data["spec"]))])
                except (DuplicateKeyError, ServiceError):
                    pass
                job = self.db.jobs.find_one({"_id": ev.job}, {"state": 1})
            if job is None:
                return 0
            sets = job_changes(JobStatus(job["state"]), ev)
            if sets is None:
                return 0
            if self.db.jobs.update_one({"_id": ev.job, "state": job["state"]}, {"$set": sets}).modified_count:
                return 1
        return 0

    @property
    def identity(self) -> str:
        """``mongo-`` and a digest of the URL (which may hold a password)."""
        import hashlib

        return f"mongo-{hashlib.sha256(self._url.encode()).hexdigest()[:16]}"

    def cursor(self) -> str:
        doc = self.db.meta.find_one({"_id": "cursor"})
        return doc["value"] if doc else ""

    def get(self, job_id: str) -> JobRecord | None:
        doc = self.db.jobs.find_one({"_id": job_id})
        return _record(doc) if doc else None

    def get_many(self, ids: list[str]) -> list[JobRecord]:
        out: list[JobRecord] = []
        for i in range(0, len(ids), 1000):
            out += [_record(d) for d in self.db.jobs.find({"_id": {"$in": ids[i:i + 1000]}})]
        return out

    def by_prefix(self, prefix: str, limit: int = 2) -> list[JobRecord]:
        docs = self.db.jobs.find({"_id": {"$regex": "^" + re.escape(prefix)}}).limit(int(limit))
        return [_record(d) for d in docs]

    def batch_ids(self, prefix: str, limit: int = 2) -> list[str]:
        return sorted(self.db.jobs.distinct("batch", {"batch": {"$regex": "^" + re.escape(prefix)}}))[:int(limit)]

    def batch(self, batch_id: str) -> list[JobRecord]:
        return [_record(d) for d in self.db.jobs.find({"batch": batch_id}).sort("seq", 1)]

    def jobs(self, state: JobStatus | None = None, last: int | None = None) -> list[JobRecord]:
        query = {"state": state.value} if state else {}
        if last:
            docs = list(self.db.jobs.find(query).sort("seq", -1).limit(int(last)))
            return [_record(d) for d in reversed(docs)]
        return [_record(d) for d in self.db.jobs.find(query).sort("seq", 1)]

    def counts(self) -> dict[str, int]:
        return {d["_id"]: d["n"] for d in self.db.jobs.aggregate([{"$group": {"_id": "$state", "n": {"$sum": 1}}}])}

    def events(self, job_id: str) -> list[Event]:
        docs = self.db.events.find({"job": job_id}).sort("seq", 1)
        return [Event(job=d["job"], state=JobStatus(d["state"]), ts=d["ts"], machine=d.get("machine"),
                      attempt=d.get("attempt") or 1, data=d.get("data") or {}, id=d.get("stream_id") or "")
                for d in docs]

    def cache_update(self, machine, added=(), used=(), evicted=(), ts=None) -> None:
        ts = ts or time.time()
        for sha, size in added:
            self.db.cache.update_one({"_id": f"{machine}/{sha}"},
                                     {"$setOnInsert": {"machine": machine, "sha": sha, "size": size, "added": ts},
                                      "$set": {"last_used": ts}}, upsert=True)
        for sha in used:
            self.db.cache.update_one({"_id": f"{machine}/{sha}"}, {"$set": {"last_used": ts}})
        for sha in evicted:
            self.db.cache.delete_one({"_id": f"{machine}/{sha}"})

    def cache_entries(self, machine: str | None = None) -> list[dict]:
        query = {"machine": machine} if machine else {}
        docs = self.db.cache.find(query).sort([("last_used", 1), ("sha", 1)])
        return [{k: d[k] for k in ("machine", "sha", "size", "added", "last_used")} for d in docs]

    def add_workflow(self, workflow: dict, steps: list[dict]) -> None:
        self.db.workflows.insert_one({"_id": workflow["id"], **{k: workflow.get(k) for k in
                                                                 ("expr", "source", "created", "reducer", "final")}})
        if steps:
            self.db.steps.insert_many([{"_id": f"{workflow['id']}/{st['name']}", "wf": workflow["id"],
                                        **{k: st.get(k) for k in ("name", "kind", "seq", "spec", "operands", "job")}}
                                       for st in steps])

    def set_step_jobs(self, workflow: str, jobs: dict[str, dict]) -> None:
        for name, st in jobs.items():
            self.db.steps.update_one({"_id": f"{workflow}/{name}"}, {"$set": {"job": st["job"], "spec": st["spec"]}})

    def workflow(self, workflow_id: str) -> dict | None:
        doc = self.db.workflows.find_one({"_id": workflow_id})
        if doc is None:
            return None
        wf = {"id": doc["_id"], **{k: doc.get(k) for k in ("expr", "source", "created", "reducer")},
              "final": doc.get("final") or []}
        wf["reducer"] = wf["reducer"] or "add"
        wf["steps"] = [{k: d.get(k) for k in ("name", "kind", "seq", "spec", "operands", "job")}
                       for d in self.db.steps.find({"wf": workflow_id}).sort("seq", 1)]
        for st in wf["steps"]:
            st["operands"] = st["operands"] or []
        return wf

    def step_successes(self, step: str, limit: int = 20) -> list[JobRecord]:
        jobs = [d["job"] for d in self.db.steps.find({"name": step}, {"job": 1}) if d.get("job")]
        docs = self.db.jobs.find({"_id": {"$in": jobs}, "state": "succeeded"}).sort("ended", -1).limit(int(limit))
        return [_record(d) for d in docs]

    def workflows(self, last: int | None = None) -> list[dict]:
        cur = self.db.workflows.find().sort("created", -1)
        if last:
            cur = cur.limit(int(last))
        docs = list(cur)
        return [{"id": d["_id"], **{k: d.get(k) for k in ("expr", "source", "created", "reducer", "final")}}
                for d in reversed(docs)]

    def workflow_ids(self, prefix: str, limit: int = 2) -> list[str]:
        docs = self.db.workflows.find({"_id": {"$regex": "^" + re.escape(prefix)}}, {"_id": 1}).sort("_id", 1)
        docs = docs.limit(int(limit))
        return [d["_id"] for d in docs]

    def set_facts(self, machine: str, ts: float, facts: dict[str, Any]) -> None:
        self.db.facts.replace_one({"_id": machine}, {"_id": machine, "ts": ts, "facts": facts}, upsert=True)

    def facts(self, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        query = {} if names is None else {"_id": {"$in": list(names)}}
        return {d["_id"]: {"ts": d["ts"], "facts": d["facts"]} for d in self.db.facts.find(query).sort("_id", 1)}

    def close(self) -> None:
        self.client.close()
