"""The history store: every job's spec, state changes and result, kept after restarts.

``open_store(url)`` picks the backend from the URL scheme: ``sqlite:///path`` (the
default) or ``mongodb://host[:port]/database``; both pass the same contract tests.
"""

from __future__ import annotations

from ..core.errors import ConfigError
from .base import HistoryStore


def open_store(url: str) -> HistoryStore:
    """Open the history store named by ``url``."""
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///"):])
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from .mongo import MongoStore

        return MongoStore(url)
    raise ConfigError(f"history: unsupported URL {url.split(':', 1)[0]!r} "
                      "(use sqlite:///PATH or mongodb://HOST/DATABASE)")


__all__ = ["HistoryStore", "open_store"]
