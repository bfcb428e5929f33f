"""Making libcloud storage drivers from the inventory: S3-compatible servers path-style at
their endpoint, Azure Blob, any other driver by name, credentials from the inventory or
asked for, and libcloud's reading of proxy variables done once."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from .base import (
    StorageUnavailableError,
)
from .config import StorageConfig
from .secrets import secret_of


def _s3_compatible_driver() -> type:
    """libcloud's MinIO driver (path-style, any host) without the ``Version`` parameter."""
    from libcloud.storage.drivers.minio import MinIOConnectionAWS4, MinIOStorageDriver

    class S3CompatibleConnection(MinIOConnectionAWS4):
        def add_default_params(self, params: dict) -> dict:
            params = super().add_default_params(params)
            params.pop("Version", None)
            return params

    class S3CompatibleDriver(MinIOStorageDriver):
        name = "S3-compatible"
        connectionCls = S3CompatibleConnection

    return S3CompatibleDriver


def _endpoint(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    return {"host": parts.hostname, "port": parts.port or (443 if secure else 80), "secure": secure}


def make_driver(config: StorageConfig) -> Any:
    """The libcloud storage driver of ``config``, with its secret resolved."""
    from libcloud.storage.providers import get_driver
    from libcloud.storage.types import Provider as Drivers

    secret = secret_of(config)
    if config.type == "s3":
        if config.endpoint:
            return _s3_compatible_driver()(config.key, secret, **_endpoint(config.endpoint))
        return get_driver(Drivers.S3)(config.key, secret, region=config.region)
    if config.type == "azure":
        extra = _endpoint(config.endpoint) if config.endpoint else {}
        return get_driver(Drivers.AZURE_BLOBS)(config.key, secret, **extra)
    try:
        cls = get_driver(config.driver)
    except AttributeError:
        raise StorageUnavailableError(f"{config.where}.driver: libcloud has no storage driver "
                                      f"{config.driver!r}") from None
    args = dict(config.args)
    return cls(config.key, secret, **args) if config.key else cls(**args)


def read_environment_once(driver: Any) -> None:
    """Read the proxy and CA-bundle variables once for the driver's HTTP session.

    requests reads them (and looks for ~/.netrc) again on every request: a fifth of a
    small object's GET here. The session gets the proxies for the endpoint (``no_proxy``
    honoured) and the bundle of ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, as requests
    would have chosen them, and stops reading the environment.
    """
    import requests.utils

    conn = getattr(driver, "connection", None)
    if conn is None or not hasattr(conn, "connect"):
        return
    if conn.connection is None:
        conn.connect()
    http = conn.connection
    session = getattr(http, "session", None)
    if session is None or not hasattr(http, "host"):
        return
    if not session.proxies:                   # a proxy_url given to the driver stays
        session.proxies = requests.utils.get_environ_proxies(http.host)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and getattr(http, "verification", None) is True:
        http.ca_cert = bundle
    session.trust_env = False
