"""Reading what a process prints, with a deadline: a test never waits for a line that
does not come."""

from __future__ import annotations

import os
import selectors
import time
from typing import IO, Any


def read_until(stream: IO[Any], marker: str, timeout: float) -> str:
    """What the pipe ``stream`` gives until ``marker`` appears (read from its file
    descriptor, so use it before any buffered read of the same stream); an
    AssertionError when the deadline passes or the stream ends first."""
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while marker.encode() not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {marker!r}; read {seen!r}"
            if sel.select(left):
                chunk = os.read(stream.fileno(), 65536)
                assert chunk, f"the stream ended before {marker!r}; read {seen!r}"
                seen += chunk
    return seen.decode()
