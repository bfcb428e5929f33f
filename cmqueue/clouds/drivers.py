"""Compute drivers from the inventory's clouds (libcloud's, with credentials from the
inventory or asked for), and the errors of a cloud in one line: a cloud that cannot be
reached is a service error (exit 3), its URL's query and libcloud's noise left out."""

from __future__ import annotations

import re
from typing import Any

from ..config.asking import ask_hidden
from ..core.errors import CmqError, ConfigError, ServiceError
from .config import ASK, CloudConfig


class CloudError(CmqError):
    """A cloud refused an action or does not have the VM; the message names both."""


class CloudUnavailableError(ServiceError):
    """A cloud cannot be reached, or refused the credentials (exit 3)."""


def credentials_of(config: CloudConfig) -> dict[str, Any]:
    """The cloud's credentials, each ``TBD`` asked for on the terminal (hidden, once)."""
    out = {}
    for key, value in config.credentials.items():
        if value != ASK:
            out[key] = value
            continue
        out[key] = ask_hidden(f"{config.where}.credentials.{key}", f"{key} of cloud {config.name} ({config.type}): ",
                              "give it in the inventory (which must then be 0600)")
    return out


def compute_driver(config: CloudConfig) -> Any:
    """The libcloud compute driver of ``config``, opened with its credentials."""
    from libcloud.compute.providers import get_driver

    try:
        cls = get_driver(config.type)
    except AttributeError:
        raise ConfigError(f"{config.where}.type: libcloud has no compute driver {config.type!r}") from None
    except ImportError as e:
        extra = " (pip install 'cmqueue[clouds]')" if config.type == "libvirt" else ""
        raise CloudUnavailableError(f"{config.where}: the {config.type} driver cannot load: {e}{extra}") from None
    creds = credentials_of(config)
    try:
        if config.type == "libvirt":
            return cls(uri=str(creds.get("uri", "qemu:///system")))
        key, secret = creds.pop("key", None), creds.pop("secret", None)
        return cls(key, secret, **creds) if secret is not None else cls(key, **creds)
    except Exception as e:  # noqa: BLE001 - the drivers' own errors: one line naming the cloud
        raise CloudUnavailableError(f"{config.where}: cannot open the {config.type} driver: "
                                    f"{first_line(e)}") from None


def first_line(e: object) -> str:
    """The first line of an error's text (an S3-style XML error: its message), at most 200 characters."""
    text = str(getattr(e, "value", None) or e).strip()
    line = (text.splitlines() or [type(e).__name__])[0]
    return _QUERY.sub(r"\1?...", line)[:200]     # a request's query string can hold a key id or signature


_QUERY = re.compile(r"(/[^\s?'\"]*)\?[^\s'\")]*")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def unavailable(e: BaseException, where: str) -> CloudUnavailableError | None:
    """The cloud could not be reached, or refused the credentials: that error (exit 3),
    one line naming the endpoint and the reason and never the request; else None."""
    from libcloud.common.types import InvalidCredsError
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout

    if isinstance(e, InvalidCredsError):
        return CloudUnavailableError(f"{where}: the credentials were refused: {first_line(e)}")
    if isinstance(e, (RequestsConnectionError, Timeout, OSError)):
        found = _ERRNO.search(str(e))
        reason = ("timed out" if isinstance(e, Timeout) or "timed out" in str(e).lower()
                  else found.group(1).strip().lower() if found else type(e).__name__)
        return CloudUnavailableError(f"{where}: cannot reach it: {reason}")
    return None
