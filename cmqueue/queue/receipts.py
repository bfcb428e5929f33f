"""A message taken and a message let go, in one round trip each.

kombu's Redis transport keeps each message a worker took in its ``unacked`` hash and
``unacked_index`` sorted set until the worker acknowledges it (a MULTI of two commands
each way), and cmq notes who holds it in ``cmq:holders`` (see :mod:`.orphans`): one more
write when it is taken, and one sweep later to forget the note. Under ``appendfsync
always`` every such round trip waits for an fsync, and it runs in the worker's event loop.

:meth:`Receipts.take` records the message and its note together, and
:meth:`Receipts.let_go` drops all three together: one Lua call each, so a crash never
leaves a message taken without its note.
"""

from __future__ import annotations

import threading
from typing import Any

#: The message header that gives a task its message's delivery tag (set by the worker's
#: consumer), to let the message go with the job's final write.
TAG_HEADER = "cmq_delivery_tag"
#: Redis hash: delivery tag -> JSON of who holds the message (:class:`.orphans.Held`).
HOLDERS = "cmq:holders"
#: kombu's Redis transport: delivery tag -> the message it handed out and not yet got back.
UNACKED = "unacked"
#: kombu's Redis transport: delivery tag -> when it was handed out.
UNACKED_INDEX = "unacked_index"

# KEYS: unacked_index, unacked, holders. ARGV: delivery tag, time, kombu's unacked entry,
# the holder's note ('' for none).
_TAKE = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[4]) end
return 1
"""



def lua_let_go(first_key: int, tag: str) -> str:
    """Lua lines that let a message go: its ``unacked`` entry, index and holder's note.
    The script's KEYS from ``first_key`` on are :data:`KEYS`; ``tag`` is the Lua
    expression of the delivery tag (``ARGV[1]``). The job's final write in
    :mod:`.claims` uses the same lines."""
    k = first_key
    return (f"redis.call('ZREM', KEYS[{k}], {tag})\n"
            f"redis.call('HDEL', KEYS[{k + 1}], {tag})\n"
            f"redis.call('HDEL', KEYS[{k + 2}], {tag})\n")


# KEYS: unacked_index, unacked, holders. ARGV: delivery tag.
_LET_GO = lua_let_go(1, "ARGV[1]") + "return 1\n"

#: The keys :meth:`Receipts.take` and :meth:`Receipts.let_go` write, in their scripts' order.
KEYS = [UNACKED_INDEX, UNACKED, HOLDERS]


class Receipts:
    """Take and let go of messages through ``client`` (a redis-py client of the broker)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._take = client.register_script(_TAKE)
        self._let_go = client.register_script(_LET_GO)
        self._gone: set[str] = set()
        self._lock = threading.Lock()

    def take(self, tag: str, when: float, entry: str, note: str = "") -> None:
        """Record that the message with delivery ``tag`` was handed out at ``when``
        (``entry``: what kombu keeps to put it back) and, with ``note``, who holds it."""
        self._take(keys=KEYS, args=[tag, repr(when), entry, note])

    def let_go(self, tag: str) -> None:
        """The message with delivery ``tag`` is done with: forget it and its note (no
        round trip when a job's final write did so already: see :meth:`gone`)."""
        with self._lock:
            if tag in self._gone:
                self._gone.discard(tag)
                return
        self._let_go(keys=KEYS, args=[tag])

    def gone(self, tag: str) -> None:
        """The message with delivery ``tag`` was let go by a script of its own (a job's
        final write, see :meth:`.claims.JobGuard.finish`): its acknowledgement has
        nothing left to write."""
        with self._lock:
            self._gone.add(tag)

    def never_gone(self, tag: str) -> None:
        """Forget a :meth:`gone` that did not happen (the final write failed)."""
        with self._lock:
            self._gone.discard(tag)
