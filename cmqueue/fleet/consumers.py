"""The consumer of a fleet worker process: one channel per machine on the worker's broker
connection, each asking for as many messages as its machine has free slots, in place of
Celery's one ``Tasks`` consumer (see :mod:`cmqueue.fleet.worker_process` for why)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import bootsteps
from celery.worker.consumer import Consumer
from celery.worker.consumer.control import Control
from celery.worker.consumer.delayed_delivery import DelayedDelivery
from celery.worker.consumer.mingle import Mingle
from kombu import Queue
from kombu.common import QoS
from kombu.transport import virtual
from kombu.utils.json import dumps

from ..core import clock
from ..queue import orphans
from ..queue.receipts import TAG_HEADER
from .machine_driver import MachineDriver

log = logging.getLogger("cmq.fleet")

#: The header that tags a message with the machine whose channel took it.
MACHINE_HEADER = "cmq_machine"


class Router(dict):
    """The transport's callbacks by queue, made per machine.

    kombu keeps one callback per queue name and connection, so of several channels that
    consume the shared queue the last one would get every message. Here each machine
    channel registers its callbacks while it is ``current``, and a message read by a
    channel's BRPOP goes to that channel's callback (its credit, its acknowledgement).
    Queues registered outside a machine channel (remote control) are left as they are.
    """

    def __init__(self, transport: Any, items: dict[str, Any]) -> None:
        super().__init__(items)
        self.transport = transport
        self.current: MachineChannel | None = None
        self.owned: set[str] = set()

    def __setitem__(self, queue: str, callback: Any) -> None:
        if self.current is None:
            dict.__setitem__(self, queue, callback)
            return
        self.current.callbacks[queue] = callback
        self.owned.add(queue)
        dict.__setitem__(self, queue, lambda raw, q=queue: self.deliver(q, raw))

    def pop(self, queue: str, *default: Any) -> Any:
        """A channel stops consuming ``queue`` (kombu's basic_cancel)."""
        if queue in self.owned and self.current is not None:
            return self.current.callbacks.pop(queue, None)
        return dict.pop(self, queue, *default)

    def deliver(self, queue: str, raw: Any) -> None:
        """A message the current channel read from ``queue``."""
        chan = self.current
        callback = chan.callbacks.get(queue) if chan is not None else None
        if callback is None:                 # it stopped consuming meanwhile: back on the queue
            self.transport._reject_inbound_message(raw)
            return
        callback(raw)

    def using(self, chan: MachineChannel) -> Any:
        """Context: ``chan`` is the channel registering, cancelling or reading."""
        router = self

        class _Using:
            def __enter__(self) -> None:
                router.current = chan

            def __exit__(self, *_: Any) -> None:
                router.current = None
        return _Using()


def router_of(connection: Any) -> Router:
    """The Router of a kombu connection's transport (installed on first use)."""
    transport = connection.transport
    if not isinstance(transport._callbacks, Router):
        transport._callbacks = Router(transport, dict(transport._callbacks or {}))
    return transport._callbacks


class MachineChannel:
    """The consumer of one machine: a channel of its own whose credit is the machine's
    free slots (messages held for a countdown do not count), and the machine's queues."""

    def __init__(self, driver: MachineDriver, consumer: Any, handler: Callable[[Any], None]) -> None:
        self.driver = driver
        self.name = driver.machine.name
        self.waiting: set[str] = set()      # delivery tags held until their ETA
        self.callbacks: dict[str, Any] = {}
        self.router = router_of(consumer.connection)
        self.channel = consumer.connection.channel()
        qos = self.channel.qos
        qos.can_consume = self.can_consume
        qos.can_consume_max_estimate = lambda: max(self.driver.machine.slots - self.busy(), 0)
        qos.append = self.take
        read = self.channel.handlers["BRPOP"]

        def read_here(**options: Any) -> Any:
            with self.router.using(self):
                return read(**options)
        self.channel.handlers["BRPOP"] = read_here

        def on_message(message: Any) -> None:
            message.headers[MACHINE_HEADER] = self.name
            message.headers[TAG_HEADER] = message.delivery_tag
            if message.headers.get("eta"):
                self.waiting.add(message.delivery_tag)
            handler(message)

        queues = [Queue(q, routing_key=q) for q in driver.queues]
        self.consumer = consumer.app.amqp.TaskConsumer(self.channel, queues=queues,
                                                       on_decode_error=consumer.on_decode_error)
        self.consumer.on_message = on_message

    def take(self, message: Any, delivery_tag: str) -> None:
        """Record a message this channel took, with the note that this machine's driver
        holds it, in one round trip (in place of kombu's ``QoS.append``)."""
        delivery = message.delivery_info
        entry = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        held = orphans.Held(job=str((message.headers or {}).get("id", "?")), machine=self.name,
                            lease=self.driver.lease.me, claim=self.driver.guard.token)
        self.driver.fleet.receipts.take(delivery_tag, clock.now(), entry, held.dump())
        virtual.QoS.append(self.channel.qos, message, delivery_tag)

    def busy(self) -> int:
        """Messages taken and not done, apart from those waiting for their ETA (asked on
        every turn of the event loop: kept cheap)."""
        qos = self.channel.qos
        taken = len(qos._delivered) - len(qos._dirty)
        if not self.waiting:
            return taken
        held = sum(1 for tag in self.waiting if tag in qos._delivered)
        if held < len(self.waiting):             # acked or rejected while held
            self.waiting &= set(qos._delivered)
        return taken - held

    def can_consume(self) -> bool:
        """Whether the machine has a free slot (asked by kombu before each read)."""
        return self.busy() < self.driver.machine.slots

    def consume(self, on: bool) -> None:
        """Start or stop taking messages from the machine's queues."""
        with self.router.using(self):
            if on:
                self.consumer.consume()
            else:
                self.consumer.cancel()

    def close(self) -> None:
        """Stop and close the channel (messages it holds and did not start go back)."""
        for step in (self.consumer.cancel, self.channel.close):
            try:
                with self.router.using(self):
                    step()
            except Exception as e:  # noqa: BLE001 - a dead connection: the sweep restores them
                log.debug("closing the channel of %s: %s", self.name, e)


class Channels:
    """Stands in for Celery's task consumer: the machines' channels, opened and closed
    as machines are served and retired (always in the consumer's own thread)."""

    def __init__(self, fleet: Any, consumer: Any) -> None:
        self.fleet = fleet
        self.consumer = consumer
        self.on_message: Callable[[Any], None] | None = None     # set by Celery's event loop
        self.open: dict[str, MachineChannel] = {}

    def consume(self, *_: Any, **__: Any) -> None:
        """Celery's loop starts: open the channel of every machine that is ready."""
        for driver in self.fleet.ready():
            self.attach(driver)

    def attach(self, driver: MachineDriver) -> None:
        """Open ``driver``'s channel; it consumes unless the machine is paused."""
        name = driver.machine.name
        if name in self.open or self.on_message is None or driver.retiring:
            return
        chan = MachineChannel(driver, self.consumer, self._handle)
        self.open[name] = chan
        chan.consume(not driver.paused.is_set())
        driver.report("unreachable" if driver.paused.is_set() else "consuming", driver.pause_reason
                       if driver.paused.is_set() else "")

    def _handle(self, message: Any) -> None:
        assert self.on_message is not None
        self.on_message(message)

    def set_consuming(self, name: str, on: bool) -> None:
        """Pause or resume machine ``name``."""
        chan = self.open.get(name)
        if chan is not None:
            chan.consume(on)

    def detach(self, name: str) -> None:
        """Close machine ``name``'s channel (once its jobs ended). Its pending poll is
        ended first (see :meth:`close`), and with it this process's others, which only
        poll again."""
        if name in self.open:
            self.fleet.unblock_polls()
            self._close_channel(name)

    def _close_channel(self, name: str) -> None:
        chan = self.open.pop(name, None)
        if chan is not None:
            chan.close()

    def channel_of(self, message: Any) -> MachineChannel | None:
        """The machine channel a message came on."""
        name = (message.headers or {}).get(MACHINE_HEADER)
        return self.open.get(name) if name else None

    # What else Celery asks of a task consumer.
    def cancel(self) -> None:
        """Stop consuming every machine's queues."""
        for chan in self.open.values():
            chan.consume(False)

    def close(self) -> None:
        """Close every machine's channel. A channel waits for its pending BRPOP to answer
        before it closes (so that no message it pops is dropped), up to the polling
        interval; they are ended first, as if their timeout had come."""
        self.fleet.unblock_polls()
        for name in list(self.open):
            self._close_channel(name)

    def qos(self, *_: Any, **__: Any) -> None:
        """Credit is per machine (see MachineChannel.can_consume)."""

    @property
    def queues(self) -> list[Queue]:
        """The queues the machines' channels consume, each once: what Celery's
        ``active_queues`` (`celery inspect active_queues`, Flower's queue views) reports."""
        found: dict[str, Queue] = {}
        for chan in self.open.values():
            for queue in chan.consumer.queues:
                found.setdefault(queue.name, queue)
        return list(found.values())

    def consuming_from(self, queue: str) -> bool:
        """Whether some machine consumes ``queue``."""
        return any(queue in chan.driver.queues for chan in self.open.values())

    def add_queue(self, queue: Any) -> None:
        """Queues follow from the inventory: a remote `add_consumer` is refused."""
        log.warning("remote add_consumer(%s) ignored: a machine's queues come from the inventory", queue)

    def cancel_by_queue(self, queue: str) -> None:
        """Refused like add_queue."""
        log.warning("remote cancel_consumer(%s) ignored: pause a machine by disabling it", queue)


class MachineConsumers(bootsteps.StartStopStep):
    """The consumer step that replaces Celery's ``Tasks``: one channel per machine."""

    requires = (Mingle,)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        c.task_consumer = c.qos = None
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        """Consumer (re)started: new channels on the (new) connection."""
        fleet = c.app.cmq_fleet
        original = type(c).apply_eta_task.__get__(c)

        def apply_eta_task(request: Any) -> None:
            chan = c.task_consumer.channel_of(request.message)
            if chan is not None:
                tag = request.message.delivery_tag
                if chan.busy() >= chan.driver.machine.slots:
                    c.timer.call_after(0.25, apply_eta_task, (request,))     # the machine is full
                    return
                chan.waiting.discard(tag)
            original(request)

        c.apply_eta_task = apply_eta_task     # before the strategies take it
        c.update_strategies()
        c.qos_global = False
        c.task_consumer = Channels(fleet, c)
        c.qos = QoS(c.task_consumer.qos, 0)
        fleet.on_consumer_start(c)

    def stop(self, c: Any) -> None:
        """Stop taking messages (warm shutdown: the running jobs end first)."""
        if c.task_consumer:
            c.task_consumer.cancel()

    def shutdown(self, c: Any) -> None:
        """Close the channels."""
        if c.task_consumer:
            c.task_consumer.close()
            c.task_consumer = None


class FleetControl(Control):
    """Celery's remote control step, started after :class:`MachineConsumers`."""

    requires = (MachineConsumers,)


class FleetDelayedDelivery(DelayedDelivery):
    """Celery's delayed delivery step (AMQP only), after :class:`MachineConsumers`."""

    requires = (MachineConsumers,)


_STAND_INS = {
    "celery.worker.consumer.tasks:Tasks": "cmqueue.fleet.consumers:MachineConsumers",
    "celery.worker.consumer.control:Control": "cmqueue.fleet.consumers:FleetControl",
    "celery.worker.consumer.delayed_delivery:DelayedDelivery": "cmqueue.fleet.consumers:FleetDelayedDelivery",
}


class FleetConsumer(Consumer):
    """Celery's consumer with :class:`MachineConsumers` in place of ``Tasks``."""

    class Blueprint(Consumer.Blueprint):
        """The consumer's steps."""

        default_steps = [_STAND_INS.get(s, s) for s in Consumer.Blueprint.default_steps]
