"""cmq: run shell jobs and small workflows on a fleet of machines through Celery queues."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .api.cluster import Cluster, Job
    from .clouds.cloud import Cloud
    from .storage.pool import Pool


def __getattr__(name: str):
    """Import the API lazily: ``import cmqueue`` stays cheap (no Celery at import)."""
    if name in ("Cluster", "Job"):
        from .api import cluster

        return getattr(cluster, name)
    if name == "Cloud":
        from .clouds.cloud import Cloud

        return Cloud
    if name == "Pool":
        from .storage.pool import Pool

        return Pool
    raise AttributeError(name)


__all__ = ["Cloud", "Cluster", "Job", "Pool", "__version__"]
