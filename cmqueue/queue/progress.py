"""Live byte counts of running transfers, kept in the broker's Redis for whoever watches."""

from __future__ import annotations

import time
from typing import Any

from ..core.redis_batch import hgetall_many

#: Seconds between two updates of one transfer's counter.
INTERVAL = 0.25
#: Seconds a counter outlives its last update.
TTL = 3600


def progress_key(job: str) -> str:
    """Redis hash holding the bytes moved (and the total, when known) of ``job``."""
    return f"cmq:progress:{job}"


class ProgressReporter:
    """Callable given the bytes moved so far; writes them to Redis at most every INTERVAL."""

    def __init__(self, client: Any, job: str, total: int = 0) -> None:
        self.client = client
        self.key = progress_key(job)
        self.total = total
        self.moved = 0
        #: Who feeds this copy (a relay's machine, or "controller"); empty when not relayed.
        self.via = ""
        self._last = time.monotonic()        # a first count after INTERVAL: a short transfer writes none
        self._written = False

    def __call__(self, moved: int) -> None:
        self.moved = moved
        now = time.monotonic()
        if now - self._last >= INTERVAL:
            self._last = now
            self._write()

    def _write(self) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            fields: dict[str, Any] = {"bytes": self.moved, "total": self.total}
            if self.via:
                fields["via"] = self.via
            pipe.hset(self.key, mapping=fields)
            pipe.expire(self.key, TTL)
            pipe.execute()
            self._written = True
        except Exception:  # noqa: BLE001 - progress is best effort, never fails a transfer
            pass

    def close(self) -> None:
        """Write the final count, over one written before (the job's result says what moved)."""
        if self._written:
            self._write()


def read_progress(client: Any, jobs: list[str]) -> dict[str, tuple[int, int, str]]:
    """{job: (bytes, total, feeder)} for the jobs that reported progress (the feeder is
    empty unless the copy is relayed)."""
    out = {}
    for job, h in zip(jobs, hgetall_many(client, [progress_key(j) for j in jobs]), strict=True):
        if h:
            out[job] = (int(h.get(b"bytes", 0)), int(h.get(b"total", 0)), h.get(b"via", b"").decode())
    return out
