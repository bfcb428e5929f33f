"""The dependencies of the REST routes: one Cluster per server thread, following the
inventory as it changes. Routes take their Cluster from here (``Depends(cluster)``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from fastapi import Request

from ..core.errors import CmqError

log = logging.getLogger("cmq.serve")


class Clusters:
    """One :class:`~cmqueue.api.cluster.Cluster` per server thread (a Cluster's store and
    clients belong to one thread), all closed when the server stops. When the inventory
    or its companion files change (machines edited, VMs joined), ``reload`` reads the
    settings again and each thread's next Cluster uses them."""

    def __init__(self, settings: Any, reload: Callable[[], Any] | None = None) -> None:
        from ..config.inventory import inventory_mtime

        self.settings = settings
        self.reload = reload
        self._seen = inventory_mtime(settings.inventory.path) if settings is not None else 0.0
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._apps: dict[int, Any] = {}          # id(settings) -> the Celery app every thread shares

    def _app(self, settings: Any) -> Any:
        """The Celery app of ``settings``, made once and shared by every thread (sending
        is thread-safe; a first send per thread would otherwise pay for a new app)."""
        with self._lock:
            app = self._apps.get(id(settings))
            if app is None:
                from ..queue.celery_app import create_app

                app = self._apps[id(settings)] = create_app(settings)
            return app

    def _follow_inventory(self) -> None:
        from ..config.inventory import inventory_mtime

        now = inventory_mtime(self.settings.inventory.path)
        if now == self._seen:
            return
        with self._lock:
            if now == self._seen:
                return
            self._seen = now
            try:
                self.settings = self.reload()
            except CmqError as e:                    # a file being edited: keep what was read
                log.warning("cmq serve: the inventory changed but cannot be read (%s); keeping it as it was", e)

    def get(self) -> Any:
        """This thread's Cluster (a new one after the inventory changed)."""
        if self.reload is not None:
            self._follow_inventory()
        cluster = getattr(self._local, "cluster", None)
        if cluster is not None and cluster.settings is not self.settings:
            with self._lock:
                self._all.remove(cluster)
            cluster.close()                       # (not the shared app: other threads may send with it)
            cluster = None
        if cluster is None:
            from ..api.cluster import Cluster

            settings = self.settings
            app = self._app(settings) if settings is not None and settings.broker else None
            cluster = self._local.cluster = Cluster(settings, trust_recorder=True, app=app)
            with self._lock:
                self._all.append(cluster)
        return cluster

    def close(self) -> None:
        """Close every Cluster made, then the shared apps."""
        with self._lock:
            for cluster in self._all:
                cluster.close()
            self._all.clear()
            for app in self._apps.values():
                app.close()
            self._apps.clear()


def cluster(request: Request) -> Any:
    """The calling thread's Cluster (a FastAPI dependency)."""
    return request.app.state.clusters.get()
