"""A job's stdout or stderr as it arrives: written to its log file, its tail kept in memory.

The tail is what the job's record shows; it does not depend on the log file, so a full
disk on this host (or an unwritable log directory) loses neither the job nor that output:
the log file stops growing and the record says why.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import IO, Any


class OutputLog:
    """The log file at ``path`` and the last ``cap`` bytes written to it."""

    def __init__(self, path: Path, cap: int) -> None:
        self.path = path
        self.cap = cap
        self.size = 0
        self.error = ""
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        try:
            self._file = path.open("wb", buffering=0)
        except OSError as e:
            self._failed(e)

    def write(self, data: bytes) -> int:
        """Take a chunk of output (file-like: the session transport writes here)."""
        with self._lock:
            self.size += len(data)
            self._tail += data
            if len(self._tail) > self.cap:
                del self._tail[:-self.cap]
            if self._file is not None:
                try:
                    self._file.write(data)
                except OSError as e:
                    self._failed(e)
        return len(data)

    def pump(self, stream: IO[bytes]) -> None:
        """Copy everything readable from ``stream`` (a pipe) until its end, then close it."""
        with stream:
            while chunk := stream.read1(65536):
                self.write(chunk)

    def _failed(self, e: OSError) -> None:
        self.error = f"cannot write its log {self.path}: {e.strerror or e}"
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def close(self) -> None:
        """Close the log file; an empty one is removed."""
        with self._lock:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError as e:
                    self._failed(e)
                self._file = None
            if self.size == 0:
                self.path.unlink(missing_ok=True)

    def text(self) -> tuple[str, bool]:
        """The kept tail as text, and whether anything was cut from its start."""
        with self._lock:
            return bytes(self._tail).decode("utf-8", "replace"), self.size > self.cap

    def discard(self) -> None:
        """Close and remove the log file (the job did not run after all)."""
        self.close()
        self.path.unlink(missing_ok=True)

    @property
    def kept(self) -> bool:
        """Whether the log file holds the whole output (and there was some)."""
        return self.size > 0 and not self.error


def full_log(result: Any, stream: str) -> Path | None:
    """The whole ``stream`` (stdout or stderr) of a job's result when the history kept
    only its tail and the worker's log file is on this host; else None (the tail is all)."""
    log = getattr(result, f"{stream}_log", "")
    if getattr(result, f"{stream}_truncated", False) and log and result.log_host == socket.gethostname():
        path = Path(log)
        if path.exists():
            return path
    return None
