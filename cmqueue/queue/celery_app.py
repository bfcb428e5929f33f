"""The Celery app, built by a factory from the settings. Nothing is created at import."""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import Celery
from celery.backends.redis import RedisBackend, SentinelBackend

from ..config.broker import parse
from ..config.settings import Settings
from ..core.defaults import SHARED_QUEUE
from . import celery_tasks as tasks
from . import routing
from .broker import celery_settings


class Publishing:
    """What the result backend of a client that publishes workflows does differently: it
    registers chords, but never subscribes to results (they are followed on the event stream)."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Do not subscribe to the task's result."""

    def add_pending_result(self, result: Any, *args: Any, **kwargs: Any) -> Any:
        """Do not wait for the result."""
        return result

    def remove_pending_result(self, result: Any) -> Any:
        """Nothing to unsubscribe from."""
        return result


class PublishingBackend(Publishing, RedisBackend):
    """The publishing result backend on one Redis."""


class PublishingSentinelBackend(Publishing, SentinelBackend):
    """The publishing result backend on a Sentinel group's primary."""


def chord_backend(app: Celery) -> Any:
    """A publishing result backend of ``app``'s broker, to register chords with."""
    cls = PublishingSentinelBackend if parse(app.cmq_settings.require_broker()).is_sentinel else PublishingBackend
    return cls(app=app, url=app.conf.broker_url)


def worker_client_name() -> str:
    """The name a worker process's broker connections carry (Redis CLIENT SETNAME)."""
    return f"cmq-worker-{socket.gethostname()}-{os.getpid()}"


def create_app(settings: Settings, worker: bool = False, publisher: bool = False) -> Celery:
    """A Celery app for ``settings``: queues from the inventory, late acks, prefetch 1.

    Only a ``worker`` app has a result backend: it carries map members' outcomes to their
    reduce (a chord). Clients follow results on the event stream instead; a ``publisher``
    (it publishes workflows' chords) has a backend that registers chords and nothing else.
    """
    url = settings.require_broker()
    publishing = "PublishingSentinelBackend" if parse(url).is_sentinel else "PublishingBackend"
    conf = celery_settings(url, results=worker or publisher,
                           backend_class=f"cmqueue.queue.celery_app:{publishing}" if publisher and not worker else "")
    vt = int(settings.get("visibility_timeout"))
    app = Celery("cmq", broker=conf.pop("broker_url"), set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_queues=routing.all_queues(settings.inventory),
        task_default_queue=SHARED_QUEUE,
        task_create_missing_queues=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_enable_remote_control=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            **conf.pop("broker_transport_options"),
            # An idle machine's BRPOP returns every polling_interval seconds: a worker with
            # hundreds of machines would otherwise wake hundreds of times a second.
            **({"polling_interval": 5} if worker else {}),
            # Named, so that a stopping worker can end its own pending BRPOPs at once
            # (see cmqueue.fleet.consumers.Channels.close) instead of waiting out the interval.
            **({"client_name": worker_client_name()} if worker else {}),
            "visibility_timeout": vt,
            "unacked_restore_interval": int(settings.get("restore_interval")),
            "unacked_restore_throttle": 1,
        },
        result_backend=conf.pop("result_backend", None),
        result_chord_ordered=True,
        result_expires=int(settings.get("done_ttl")),
    )
    app.conf.update(conf)            # TLS, and the result backend's transport options
    tasks.register(app)
    app.cmq_settings = settings
    app.cmq_fleet = None
    return app
