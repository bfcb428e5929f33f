"""Put job specs on the queues: record them as queued in the history first, then publish
them in pipelined batches (a map as a Celery chord whose callback is its reduce). A broker
that goes away mid-send is waited for and only what it lacks is sent again; what could
not be sent is recorded as lost with the reason."""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

from celery import Celery
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError

from ..core.errors import ServiceError
from ..core.models import Event, JobRecord, JobSpec, JobStatus
from ..history import HistoryStore
from ..queue.broker import ReplicaWait, connect
from ..queue.celery_tasks import REDUCE_TASK, RUN_TASK, TRANSFER_TASK
from ..transfer import staging

#: Jobs published per pipelined round trip to the broker.
PUBLISH_BATCH = 500


def send(app: Celery, store: HistoryStore, specs: list[JobSpec], reduce_spec: JobSpec | None = None) -> None:
    """Record ``specs`` as queued, then publish them. Jobs that could not be published
    are recorded as lost with the reason, and ServiceError is raised.

    With ``reduce_spec`` the specs are a map: they are published as the header of a
    Celery chord whose callback is the reduce, run once when every member has ended.
    """
    store.add(JobRecord(spec=s, state=JobStatus.QUEUED) for s in [*specs, *([reduce_spec] if reduce_spec else [])])
    pending = list(specs)                   # not yet known to be on the broker
    chord: dict[str, Any] = {}
    index = {s.id: i for i, s in enumerate(specs)}
    tries = 0
    try:
        replicated = _replica_wait(app)
        pin_inputs(app, specs)
        if reduce_spec is not None:
            chord = _chord(app, reduce_spec, len(specs))
        while pending:
            chunk = pending[:PUBLISH_BATCH]
            try:
                publish_chunk(app, chunk, chord, index)
                replicated()
            except PUBLISH_ERRORS:
                # The broker went away while the chunk went out (or its replica did not
                # confirm it: a failover may follow): some of it may have arrived. Once it
                # is back, send again only what is not there.
                tries += 1
                if tries > SEND_TRIES or not _broker_back(app, SEND_WAIT):
                    raise
                pending = missing(app, chunk) + pending[len(chunk):]
                continue
            pending = pending[len(chunk):]
    except PUBLISH_ERRORS as e:
        unsent = pending + ([reduce_spec] if reduce_spec else [])
        lost = [Event(job=s.id, state=JobStatus.LOST, ts=time.time(),
                      data={"reason": f"not sent: broker unreachable ({e})"}) for s in unsent]
        store.apply(lost)
        sent = len(specs) - len(pending)
        raise ServiceError(f"broker unreachable after {sent} of {len(specs)} jobs were sent: {e}") from None


#: What publishing raises when the broker goes away (a pipelined batch whose outcome is
#: uncertain raises kombu's BatchPublishError).
PUBLISH_ERRORS = (OperationalError, KombuError, OSError, RedisError)
#: Seconds `cmq submit` waits for a broker that went away mid-send before it gives up.
SEND_WAIT = 30
#: Times a chunk is sent again after the broker came back.
SEND_TRIES = 5


def publish_chunk(app: Celery, chunk: list[JobSpec], chord: dict[str, Any], index: dict[str, int]) -> None:
    """Publish ``chunk`` in one pipelined round trip. Queues are not declared: a message
    goes to the default exchange, straight onto the list named by its queue (declaring
    a queue on Redis only records an exchange binding cmq never routes through, and cost
    two round trips per queue)."""
    with app.producer_or_acquire() as producer:
        batch = producer.batch(max_size=PUBLISH_BATCH) if hasattr(producer, "batch") else nullcontext()
        with batch:
            for spec in chunk:
                task = app.tasks[TRANSFER_TASK if spec.kind in ("put", "get", "storage", "cloud") else RUN_TASK]
                extra = {**chord, "group_index": index[spec.id]} if chord else {}
                task.apply_async(kwargs={"spec": spec.to_dict()}, task_id=spec.id, queue=spec.queue,
                                 routing_key=spec.queue, producer=producer, retry=False, declare=[],
                                 argsrepr="()", kwargsrepr=f"{spec.target} {spec.command[:80]!r}", **extra)


def _replica_wait(app: Celery) -> Any:
    """Waits until the broker's replicas have what was published (see ReplicaWait), so
    that a failover right after ``cmq submit`` returned does not lose it."""
    settings = app.cmq_settings
    return ReplicaWait(connect(settings.require_broker(), socket_timeout=10), settings.get("replica_acks"),
                       settings.get("replica_timeout"))


def _broker_back(app: Celery, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the broker to answer again."""
    client = connect(app.cmq_settings.require_broker(), socket_connect_timeout=2, socket_timeout=2)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                client.ping()
                return True
            except (RedisError, OSError):
                time.sleep(0.5)
        return False
    finally:
        client.close()


def missing(app: Celery, specs: list[JobSpec]) -> list[JobSpec]:
    """The ``specs`` whose message the broker does not have: in no queue, not handed out
    to a worker, never claimed, started or done (see :mod:`cmqueue.queue.claims`)."""
    import json

    from ..queue.claims import claim_key, done_key, started_key
    from ..queue.receipts import UNACKED

    client = connect(app.cmq_settings.require_broker())
    try:
        present: set[str] = set()
        for queue in {s.queue for s in specs}:
            for raw in client.lrange(queue, 0, -1):
                present.add(_message_id(json, raw))
        for raw in client.hvals(UNACKED):
            try:
                present.add(_message_id(json, json.dumps(json.loads(raw)[0])))
            except (TypeError, ValueError, IndexError):
                continue
        pipe = client.pipeline(transaction=False)
        for spec in specs:
            pipe.exists(claim_key(spec.id), done_key(spec.id), started_key(spec.id))
        marked = pipe.execute()
        return [s for s, n in zip(specs, marked, strict=True) if s.id not in present and not n]
    finally:
        client.close()


def _message_id(json: Any, raw: Any) -> str:
    try:
        return str(json.loads(raw)["headers"]["id"])
    except (TypeError, ValueError, KeyError):
        return ""


def pin_inputs(app: Celery, specs: list[JobSpec]) -> None:
    """Mark the cached inputs of these jobs as needed until each job ends (never evicted)."""
    staged = [s for s in specs if s.params.get("inputs")]
    if not staged:
        return
    client = connect(app.cmq_settings.require_broker())
    pipe = client.pipeline(transaction=False)
    for spec in staged:
        for sha in {entry[1] for entry in spec.params["inputs"]}:
            pipe.sadd(staging.pin_key(sha), spec.id)
    pipe.execute()
    client.close()


def _chord(app: Celery, reduce_spec: JobSpec, size: int) -> dict[str, Any]:
    """Register a chord of ``size`` members with the reduce as its callback; returns the
    options each member is published with (what ``celery.chord`` does, minus the result
    objects a client that follows the event stream does not need)."""
    from ..queue.celery_app import chord_backend

    group_id = f"cmq-map-{reduce_spec.id}"
    chord_backend(app).set_chord_size(group_id, size)
    body = app.tasks[REDUCE_TASK].signature(kwargs={"spec": reduce_spec.to_dict()}, task_id=reduce_spec.id,
                                            queue=reduce_spec.queue, routing_key=reduce_spec.queue)
    return {"chord": body, "group_id": group_id}
