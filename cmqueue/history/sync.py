"""Bring the history store up to date with the event stream on the broker."""

from __future__ import annotations

from typing import Any

from ..core.models import Event
from ..queue import events
from . import readers
from .base import HistoryStore


def sync(store: HistoryStore, client: Any, stream: str, batch: int = 2000) -> list[Event]:
    """Apply every stream event after the store's cursor; returns the events read.

    Safe to run from several processes at once: the store skips events at or before its
    cursor inside the same transaction that advances it. Entries every store reading the
    stream applied are trimmed from it (see :mod:`.readers`).
    """
    read: list[Event] = []
    while True:
        cursor = store.cursor()
        found = events.read_after(client, stream, cursor, count=batch)
        if not found:
            return read
        store.apply(found, cursor=found[-1].id)
        read.extend(found)
        readers.trim(client, stream, store.identity, found[-1].id)
        if len(found) < batch:
            return read
