"""Reading many Redis hashes in one round trip."""

from __future__ import annotations

from typing import Any


def hgetall_many(client: Any, keys: list[str]) -> list[dict[bytes, bytes]]:
    """HGETALL of every key in ``keys``, in order, through one pipeline ({} for a missing key)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    return pipe.execute()
