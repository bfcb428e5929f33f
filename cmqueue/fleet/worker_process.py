"""One worker process that drives many machines.

Celery runs one task consumer per worker with one prefetch count for all its queues, and
has no per-queue concurrency (celery/celery#1599). cmq needs a cap per machine, so the
worker's task consumer is replaced (:class:`MachineConsumers`, standing in for Celery's
``Tasks`` consumer step): each machine gets a channel of its own on the worker's broker
connection, consuming the machine's queue, its labels' queues and the shared queue, with
credit equal to its free slots. Redis hands a message to the channel that asked first,
so shared and label work goes to whichever machine frees a slot first, and a full or
paused machine asks for nothing. Every channel feeds Celery's one thread pool; the
message is tagged with its machine (a ``cmq_machine`` header) so the task finds that
machine's :class:`~cmqueue.fleet.machine_driver.MachineDriver`.

Everything else stays Celery's: the pool, acknowledgements, retries and countdowns,
chords, events, remote control, reconnecting after a lost connection.

Which machines a process serves is decided by leases (see :mod:`cmqueue.queue.lease`): it
takes the lease of each machine it is given; one held by another live worker (on this
host or another controller) is kept on standby, and taken over when its holder dies or
its lease lapses. That is how several controllers share one fleet.
"""

from __future__ import annotations

import logging
import resource
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from celery import Celery

from ..config.inventory import Inventory, Machine, load
from ..core import clock
from ..core.errors import ServiceError
from ..queue import orphans
from ..queue.broker import connect
from ..queue.claims import CANCEL_CHANNEL
from ..queue.lease import Lease, group_lease, worker_lease
from ..queue.receipts import Receipts
from . import kombu_compat
from .machine_driver import MachineDriver, worker_name

log = logging.getLogger("cmq.fleet")

def chooser(names: list[str] | None, part: tuple[int, int] | None) -> Callable[[Inventory], list[Machine]]:
    """The machines a worker process serves in an inventory: the enabled ssh and local
    ones (agents run their own worker), limited to ``names``, and of those share ``part``
    ``(i, n)``: every n-th by name from the i-th (1-based). Adding or removing a machine
    can move others to another process; the lease hands each over once its jobs end."""
    def choose(inv: Inventory) -> list[Machine]:
        eligible = sorted((m for m in inv.enabled() if m.mode != "agent" and (names is None or m.name in names)),
                          key=lambda m: m.name)
        if part is None:
            return eligible
        i, n = part
        return eligible[i - 1::n]
    return choose


class Fleet:
    """The machines one worker process serves, their leases and shared helpers."""

    def __init__(self, app: Celery, group: str, choose: Callable[[Inventory], list[Machine]]) -> None:
        s = app.cmq_settings
        self.app = app
        self.settings = s
        self.group = group
        self.hostname = worker_name(group)
        self.choose = choose
        self.redis = connect(s.require_broker(), health_check_interval=30)
        self.receipts = Receipts(self.redis)            # messages taken and let go
        self.drivers: dict[str, MachineDriver] = {}     # served (lease held)
        self.standby: dict[str, Machine] = {}            # lease held by another worker
        self._leases: dict[str, Lease] = {}              # of the machines on standby
        self.consumer: Any = None
        self._ready: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer_starts = 0
        self._starter = ThreadPoolExecutor(max_workers=max(1, int(s.get("start_parallel"))),
                                           thread_name_prefix="cmq-start")
        self._inventory_mtime = self._mtime()
        self.own = Lease(self.redis, group_lease(group, s.inventory.path, s.home), what=f"worker {group}")

    # -- which machines ---------------------------------------------------------------------
    def start(self) -> list[str]:
        """Take the leases of this process's machines and open them concurrently (jobs
        flow to each as soon as it is ready). Returns the names on standby."""
        self.own.take()                      # one process of this name on this host
        raise_fd_limit()
        self.follow_clock()
        self.sweep_orphans()                 # what a dead predecessor held goes back to the queues
        for machine in self.choose(self.settings.inventory):
            self.offer(machine)
        for target, name in ((self._heartbeat, "heartbeat"), (self._listen_cancels, "cancels")):
            threading.Thread(target=target, name=f"cmq-{name}", daemon=True).start()
        return sorted(self.standby)

    def offer(self, machine: Machine) -> None:
        """Serve ``machine`` when its lease is free (or its holder died), else keep it on
        standby and try again at each heartbeat."""
        lease = self._leases.get(machine.name) or Lease(self.redis, worker_lease(machine.name),
                                                        what=f"worker {machine.name}")
        try:
            lease.take(wait=0)
        except ServiceError as e:
            if machine.name not in self.standby:
                log.warning("%s: standing by (%s)", machine.name, e)
            self.standby[machine.name] = machine
            self._leases[machine.name] = lease
            return
        self.standby.pop(machine.name, None)
        self._leases.pop(machine.name, None)
        driver = MachineDriver(self, machine, lease)
        with self._lock:
            self.drivers[machine.name] = driver
        self._starter.submit(self._bring_up, driver)

    def _bring_up(self, driver: MachineDriver) -> None:
        try:
            driver.start()
        except Exception:  # noqa: BLE001 - one machine's failure must not stop the others
            log.exception("%s: cannot start", driver.machine.name)
            driver.pause(f"{driver.machine.name}: cannot start; see the worker's log")
        log.info("%s: %s", driver.machine.name, "paused: " + driver.pause_reason if driver.paused.is_set()
                 else "ready")
        with self._lock:
            self._ready.add(driver.machine.name)
        self._in_loop(lambda: self.consumer.task_consumer.attach(driver))

    def ready(self) -> list[MachineDriver]:
        """Drivers whose machine was opened (reachable or paused)."""
        with self._lock:
            return [d for n, d in self.drivers.items() if n in self._ready]

    def retire(self, driver: MachineDriver) -> None:
        """Stop serving ``driver``'s machine: no new jobs; once its running jobs end its
        channel closes and its lease, if still ours, is given back."""
        driver.retiring = True
        self._in_loop(lambda: self.consumer.task_consumer.set_consuming(driver.machine.name, False))

    def _finish_retired(self) -> None:
        """Close the retired machines whose jobs ended. One this process should still serve
        (its fields changed, or another worker took its lease) goes on standby: it is
        offered again at the next heartbeat."""
        wanted = {m.name: m for m in self.choose(self.settings.inventory)}
        for name, driver in list(self.drivers.items()):
            if driver.retiring and not driver.runner.running_ids():
                with self._lock:
                    self.drivers.pop(name, None)
                    self._ready.discard(name)
                self._in_loop(lambda n=name: self.consumer.task_consumer.detach(n))
                still_ours = driver.lease.keep()
                driver.stop(release=still_ours)
                log.warning("%s: no longer served by this worker", name)
                if name in wanted:
                    self.standby[name] = wanted[name]

    def _reload(self) -> None:
        """The inventory changed: serve new machines, retire removed ones."""
        mtime = self._mtime()
        if mtime == self._inventory_mtime:
            return
        self._inventory_mtime = mtime
        try:
            inv = load(self.settings.inventory.path)
        except Exception as e:  # noqa: BLE001 - a file being edited: keep the old one
            log.warning("inventory changed but cannot be read (%s); keeping the machines served", e)
            return
        wanted = {m.name: m for m in self.choose(inv)}
        self.settings.inventory = inv
        for name, driver in list(self.drivers.items()):
            if name not in wanted or wanted[name] != driver.machine:
                log.warning("%s: removed or changed in the inventory", name)
                self.retire(driver)
        for name in list(self.standby):
            if name not in wanted:
                del self.standby[name]
                self._leases.pop(name, None)
        for name, machine in wanted.items():
            if name not in self.drivers and name not in self.standby:
                log.warning("%s: new in the inventory; serving it", name)
                self.offer(machine)

    def _mtime(self) -> float:
        """The newest time of the inventory and its companion files (machines added by
        `cmq vagrant up` or `cmq cloud boot --join`)."""
        from ..config.inventory import inventory_mtime

        return inventory_mtime(self.settings.inventory.path)

    # -- the consumer -------------------------------------------------------------------
    def _in_loop(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` in the consumer's thread (channels belong to its event loop)."""
        consumer = self.consumer
        if consumer is not None and consumer.task_consumer is not None:
            consumer.call_soon(fn)

    def consume(self, driver: MachineDriver, on: bool) -> None:
        """Pause or resume ``driver``'s machine (called by the driver)."""
        self._in_loop(lambda: self.consumer.task_consumer.set_consuming(driver.machine.name, on))

    def on_consumer_start(self, consumer: Any) -> None:
        """Celery's consumer (re)started: after a lost connection, the messages this
        process had taken but not started were dropped; put them back on their queues."""
        self.consumer = consumer
        self._consumer_starts += 1
        if self._consumer_starts == 1:
            return
        for driver in list(self.drivers.values()):
            try:
                with self.app.connection_for_write() as conn:
                    back = orphans.Restorer(self.redis, conn).restore_dropped(driver.guard.token,
                                                                               set(driver.runner.running_ids()))
            except Exception as e:  # noqa: BLE001 - the recorder's sweep still finds them later
                log.warning("cannot put back the messages dropped with the old connection: %s", e)
                return
            if back:
                log.warning("put back %d job(s) dropped with the old connection: %s", len(back), ", ".join(back))

    # -- shared helpers -------------------------------------------------------------------
    def follow_clock(self) -> None:
        """Put this worker's times on the broker's clock when this host's is off (see
        :mod:`cmqueue.core.clock`)."""
        try:
            clock.follow(self.redis)
        except redis.RedisError as e:
            log.warning("cannot compare this host's clock with the broker's: %s", e)

    def sweep_orphans(self) -> None:
        """Put back on their queues the messages held by workers that died (see
        :mod:`cmqueue.queue.orphans`); a broker error only delays that to the recorder's sweep."""
        try:
            with self.app.connection_for_write() as conn:
                back = orphans.Restorer(self.redis, conn).sweep()
        except Exception as e:  # noqa: BLE001 - the recorder sweeps again in seconds
            log.warning("cannot put back the messages of dead workers: %s", e)
            return
        if back:
            log.warning("put back %d job(s) held by a worker that died: %s", len(back), ", ".join(back))

    def _heartbeat(self) -> None:
        period = max(1.0, min(int(self.settings.get("claim_ttl")), int(self.settings.get("lease_ttl"))) / 3)
        while not self._stop.wait(period):
            try:
                self.follow_clock()
                self.own.keep()
                for driver in list(self.drivers.values()):
                    if not driver.retiring and not driver.beat():
                        self.retire(driver)
                    elif driver.retiring:
                        driver.guard.heartbeat(driver.runner.running_ids())
                self._finish_retired()
                for machine in list(self.standby.values()):
                    self.offer(machine)
                self._reload()
            except redis.RedisError as e:
                log.warning("heartbeat failed: %s", e)

    def _listen_cancels(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CANCEL_CHANNEL)
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=1.0)
                    if msg and msg.get("type") == "message":
                        job = msg["data"].decode()
                        for driver in list(self.drivers.values()):
                            if driver.runner.cancel(job):
                                log.info("cancelling job %s on %s", job, driver.machine.name)
            except redis.RedisError as e:
                log.warning("cancel listener: %s; reconnecting", e)
                self._stop.wait(1.0)

    def unblock_polls(self) -> None:
        """End this process's blocked BRPOPs at once (CLIENT UNBLOCK: they answer as
        when their timeout comes, with nothing popped)."""
        name = self.app.conf.broker_transport_options.get("client_name")
        if not name:
            return
        try:
            for client in self.redis.client_list():
                if client.get("name") == name and "b" in client.get("flags", ""):
                    self.redis.client_unblock(client["id"])
        except redis.RedisError as e:
            log.debug("cannot end the pending polls early: %s", e)

    def stop(self) -> None:
        """Stop the helpers, close every machine and give its lease back."""
        self._stop.set()
        self._starter.shutdown(wait=False, cancel_futures=True)
        for driver in list(self.drivers.values()):
            driver.stop(release=True)
        try:
            self.own.release()
        except redis.RedisError:
            pass


def raise_fd_limit() -> None:
    """Many machines need many descriptors (ssh pipes, a channel each): raise the soft
    limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


#: Celery's loggers that write a line for every task received and ended.
PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def quiet_per_task_lines(loglevel: str) -> None:
    """Below DEBUG, Celery's line per task received and per task ended is left out of the
    worker's log: every job's story is in the history (`cmq status`, `cmq logs`), and
    formatting two lines a job cost the worker's event loop about a tenth of its time.
    Warnings and errors (a task that raised) still reach the log."""
    if logging.getLevelName(loglevel.upper()) != logging.DEBUG:
        for name in PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def run_fleet(app: Celery, group: str, choose: Callable[[Inventory], list[Machine]], slots: int,
              loglevel: str = "INFO") -> None:
    """Run one worker process serving the machines ``choose`` picks, in the foreground
    until it is stopped. ``slots`` sizes the thread pool (threads start when used)."""
    fleet = Fleet(app, group, choose)
    app.cmq_fleet = fleet
    fleet.start()

    app.conf.worker_consumer = "cmqueue.fleet.consumers:FleetConsumer"
    kombu_compat.install(fleet.receipts)          # a lost connection must not end the worker
    # With Flower in the inventory (settings: flower_port), tasks send events from the start.
    # Without it, the worker's event dispatcher still runs (for its heartbeat, one event every
    # 2 s), so that a Flower started later turns task events on by remote control
    # (enable_events); without a dispatcher that call would change nothing.
    events_flag = ["-E"] if int(app.cmq_settings.get("flower_port")) else []
    quiet_per_task_lines(loglevel)
    try:
        app.worker_main([
            "worker", "-n", fleet.hostname, "-c", str(max(1, slots)),
            "-P", "threads", "--without-gossip", "--without-mingle",
            *events_flag, "-l", loglevel,
        ])
    finally:
        fleet.stop()
