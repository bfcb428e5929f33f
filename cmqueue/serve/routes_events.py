"""A live stream of job state changes (server-sent events), read from the broker's event
stream as the workers write it: every job's, workflow steps' included.

Each event is ``event: job`` with JSON data (job, state, machine, attempt, ts, exit_code,
reason) and the stream id as its ``id``: a client that reconnects with ``Last-Event-ID``
(or ``?after=``) goes on from there, as long as the broker still holds those entries.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from ..queue import events as event_stream
from ..queue.broker import connect_async
from .deps import cluster

router = APIRouter(tags=["events"])

#: Milliseconds one blocking read of the stream waits.
BLOCK_MS = 1000
#: Seconds between keep-alive comments while nothing happens.
KEEP_ALIVE = 15.0
_STREAM_ID = r"^\d+-\d+$"


def _payload(event: Any) -> dict[str, Any]:
    data = event.data or {}
    return {"job": event.job, "state": event.state.value, "machine": event.machine, "attempt": event.attempt,
            "ts": event.ts, "exit_code": data.get("exit_code"), "reason": data.get("reason") or ""}


@router.get("/api/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "job state changes, as they come"}})
async def job_events(after: str | None = Query(None, pattern=_STREAM_ID),
                     last_event_id: str | None = Header(None, pattern=_STREAM_ID),
                     c: Any = Depends(cluster)) -> StreamingResponse:
    """Job state changes as server-sent events, from now (or after stream id ``after``)."""
    client = connect_async(c.settings.require_broker(), socket_connect_timeout=5)
    stream = c.settings.get("event_stream")
    start = after or last_event_id
    if start is None:
        newest = await client.xrevrange(stream, count=1)
        start = newest[0][0].decode() if newest else "0-0"

    async def follow() -> AsyncIterator[str]:
        cursor = start
        quiet_since = time.monotonic()
        try:
            yield ": cmq job events\n\n"
            while True:
                found = await client.xread({stream: cursor}, block=BLOCK_MS, count=500)
                if not found:
                    if time.monotonic() - quiet_since > KEEP_ALIVE:
                        quiet_since = time.monotonic()
                        yield ": keep-alive\n\n"
                    continue
                quiet_since = time.monotonic()
                for entry_id, fields in found[0][1]:
                    event = event_stream.decode(entry_id, fields)
                    cursor = event.id
                    yield f"id: {event.id}\nevent: job\ndata: {json.dumps(_payload(event))}\n\n"
        finally:
            await client.aclose()

    return StreamingResponse(follow(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
