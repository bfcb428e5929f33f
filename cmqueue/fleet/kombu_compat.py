"""Workarounds for kombu's Redis transport in a worker: when the broker goes away, and
when this host's clock is off.

A worker acknowledges a message when its job has ended (late acks). If the connection to
the broker was lost while the job ran, kombu has closed the message's channel meanwhile,
and acknowledging it raises ``AttributeError`` (the channel's connection is ``None``),
which Celery treats as unrecoverable: the whole worker exits. And on closing such a
channel kombu tries to put its unacknowledged messages back through that same missing
connection, with the same end (celery/celery#10205 and kombu's "NoneType has no
attribute" reports are this family).

:func:`install` makes every acknowledgement remove the message from kombu's ``unacked``
bookkeeping, with its holder's note, through a client of the worker's own in one round
trip (:mod:`cmqueue.queue.receipts`), so that a message whose channel is gone is
acknowledged too; and it turns off the restore on close: cmq puts back what a worker
dropped itself (see :mod:`cmqueue.queue.orphans`).
"""

from __future__ import annotations

import logging
from typing import Any

import kombu.transport.redis as kombu_redis
from kombu.transport import virtual

from ..core import clock
from ..queue.receipts import Receipts

log = logging.getLogger("cmq.kombu_compat")

_receipts: Receipts | None = None


def install(receipts: Receipts) -> None:
    """Apply the workarounds in this process; ``receipts`` lets messages go through the
    worker's own client of the broker."""
    global _receipts
    _receipts = receipts
    qos = kombu_redis.QoS
    if getattr(qos, "_cmq_compat", False):
        return

    def ack(self: Any, delivery_tag: str) -> None:
        assert _receipts is not None
        _receipts.let_go(delivery_tag)          # with the holder's note, in one round trip
        if self.channel.connection is None or getattr(self.channel, "closed", False):
            self._delivered.pop(delivery_tag, None)
            log.info("acknowledged %s after its channel was closed by a lost connection", delivery_tag)
            return
        virtual.QoS.ack(self, delivery_tag)

    qos.ack = ack
    qos._cmq_compat = True
    kombu_redis.Channel.do_restore = False
    # Delivery times (and the visibility timeout's cut-off) on the fleet's clock: a worker
    # whose host clock is behind would otherwise have its messages handed out again at once.
    kombu_redis.time = clock.now
