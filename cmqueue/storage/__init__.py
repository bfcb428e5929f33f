"""Data across storage services: one provider interface over a local folder, a directory
on a machine, S3 and S3-compatible servers, Azure Blob and any libcloud storage driver;
the services are named in the inventory's ``storage:`` section."""

from __future__ import annotations

from typing import Any

from ..core.errors import UsageError
from .base import Entry, NotFoundError, Provider, StorageError, StorageUnavailableError
from .config import StorageConfig

__all__ = ["Entry", "NotFoundError", "Provider", "StorageConfig", "StorageError", "StorageUnavailableError",
           "open_service", "provider_for"]


def provider_for(config: StorageConfig, inventory: Any = None) -> Provider:
    """The provider of one service (``inventory`` gives an ssh service its machine)."""
    if config.type == "local":
        from .local import LocalProvider

        return LocalProvider(config)
    if config.type == "ssh":
        from .ssh import SshProvider

        return SshProvider(config, inventory.machine(config.machine))
    from .cloud import CloudProvider

    return CloudProvider(config)


def open_service(inventory: Any, name: str) -> Provider:
    """The provider of the service called ``name`` in ``inventory``."""
    config = inventory.storage.get(name)
    if config is None:
        known = ", ".join(inventory.storage) or "(none: add a storage: section)"
        raise UsageError(f"unknown storage service {name!r} in {inventory.path.name}; services: {known}")
    return provider_for(config, inventory)
