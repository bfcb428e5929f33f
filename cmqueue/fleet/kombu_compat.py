"""Workarounds for kombu's Redis transport in a worker: when the broker goes away, and
when this host's clock is off.

A worker acknowledges a message when its job has ended (late acks). If the connection to
the broker was lost while the job ran, kombu has closed the message's channel meanwhile,
and acknowledging it raises ``AttributeError`` (the channel's connection is ``None``),
which Celery treats as unrecoverable: the whole worker exits. And on closing such a
channel kombu tries to put its unacknowledged messages back through that same missing
connection, with the same end (celery/celery#10205 and kombu's "NoneType has no
attribute" reports are this family).

:func:`install` makes the acknowledgement of a message whose channel is gone remove the
message from kombu's ``unacked`` bookkeeping through a client of the worker's own, and
turns off the restore on close: cmq puts back what a worker dropped itself (see
:mod:`cmqueue.queue.orphans`).
"""

from __future__ import annotations

import logging
from typing import Any

import kombu.transport.redis as kombu_redis

from ..core import clock
from ..queue.orphans import HOLDERS, UNACKED, UNACKED_INDEX

log = logging.getLogger("cmq.kombu_compat")

_client: Any = None


def _ack_on_a_closed_channel(delivery_tag: str) -> None:
    pipe = _client.pipeline(transaction=True)
    pipe.zrem(UNACKED_INDEX, delivery_tag)
    pipe.hdel(UNACKED, delivery_tag)
    pipe.hdel(HOLDERS, delivery_tag)
    pipe.execute()
    log.info("acknowledged %s after its channel was closed by a lost connection", delivery_tag)


def install(client: Any) -> None:
    """Apply the workarounds in this process; ``client`` is a redis-py client of the broker."""
    global _client
    _client = client
    qos = kombu_redis.QoS
    if getattr(qos, "_cmq_compat", False):
        return
    original_ack = qos.ack

    def ack(self: Any, delivery_tag: str) -> None:
        if self.channel.connection is None or getattr(self.channel, "closed", False):
            _ack_on_a_closed_channel(delivery_tag)
            self._delivered.pop(delivery_tag, None)
            return
        original_ack(self, delivery_tag)

    qos.ack = ack
    qos._cmq_compat = True
    kombu_redis.Channel.do_restore = False
    # Delivery times (and the visibility timeout's cut-off) on the fleet's clock: a worker
    # whose host clock is behind would otherwise have its messages handed out again at once.
    kombu_redis.time = clock.now
