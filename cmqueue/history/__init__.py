"""The history store: every job's spec, state changes and result, kept after restarts.

``open_store(url)`` picks the backend from the URL scheme (``sqlite:///path``; MongoDB is
meant to plug in behind the same :class:`HistoryStore` contract).
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import HistoryStore


def open_store(url: str) -> HistoryStore:
    """Open the history store named by ``url``."""
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///"):])
    raise ConfigError(f"history: unsupported URL {url.split(':', 1)[0]!r} (use sqlite:///PATH)")


__all__ = ["HistoryStore", "open_store"]
