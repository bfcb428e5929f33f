"""Bring the history store up to date with the event stream on the broker."""

from __future__ import annotations

from typing import Any

from .. import events
from ..models import Event
from .base import HistoryStore


def sync(store: HistoryStore, client: Any, stream: str, batch: int = 2000) -> list[Event]:
    """Apply every stream event after the store's cursor; returns the events read.

    Safe to run from several processes at once: the store skips events at or before its
    cursor inside the same transaction that advances it. Applied entries are trimmed
    from the stream.
    """
    read: list[Event] = []
    while True:
        cursor = store.cursor()
        found = events.read_after(client, stream, cursor, count=batch)
        if not found:
            return read
        store.apply(found, cursor=found[-1].id)
        read.extend(found)
        client.xtrim(stream, minid=found[-1].id, approximate=True)
        if len(found) < batch:
            return read
