"""Every connection to the broker is made here, from its URL (:mod:`cmqueue.config.broker`).

A plain Redis is connected to as named. A Sentinel group is asked for its current primary
on each new connection (redis-py's ``Sentinel.master_for``; kombu's sentinel transport for
Celery), so that after a failover every client reconnects to the new primary. TLS files in
the URL check the server's certificate and name the client.

Replication is asynchronous: a write the old primary acknowledged may be missing on the
new one. :func:`replicated` waits (``WAIT``) until the writes made so far reached
``replicas`` replicas, for the writes that accept, start and end a job.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from ..config.broker import BrokerAddress, host_port, parse, userinfo

#: Key written before a WAIT: WAIT counts the replicas that have the writes of its own
#: connection, so the waiting connection writes once (after the writes it vouches for).
MARK = "cmq:replicated"
#: Seconds a sentinel is given to answer.
SENTINEL_TIMEOUT = 2.0


def _tls_kwargs(address: BrokerAddress) -> dict[str, Any]:
    """redis-py's TLS arguments: certificates are always checked."""
    if not address.tls:
        return {}
    return {"ssl": True, "ssl_cert_reqs": "required", "ssl_check_hostname": True, **address.tls_files}


def _url_tls(address: BrokerAddress) -> dict[str, Any]:
    """What a TLS URL does not say: the server's certificate and name are checked."""
    return {"ssl_cert_reqs": "required", "ssl_check_hostname": True} if address.tls else {}


def sentinel_of(address: BrokerAddress, **kwargs: Any) -> Sentinel:
    """A redis-py Sentinel for the group ``address`` names; ``kwargs`` go to the primary's connections."""
    tls = _tls_kwargs(address)
    # No retries on a sentinel: the next one is asked instead (redis-py would back off on each).
    sentinel_kwargs = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT,
                       "retry": Retry(NoBackoff(), 0),
                       **({"password": address.sentinel_password} if address.sentinel_password else {}), **tls}
    return Sentinel(list(address.hosts), sentinel_kwargs=sentinel_kwargs, password=address.password,
                    username=address.username, db=address.db, **tls, **kwargs)


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """A redis-py client of the broker at ``url`` (the current primary of a Sentinel group);
    ``kwargs`` are redis-py's (timeouts, health checks)."""
    address = parse(url)
    if address.is_sentinel:
        return sentinel_of(address, **kwargs).master_for(address.master)
    return redis.Redis.from_url(address.redis_url(), **_url_tls(address), **kwargs)


def connect_async(url: str, **kwargs: Any) -> Any:
    """An asyncio redis-py client of the broker at ``url`` (see :func:`connect`)."""
    from redis.asyncio import Redis
    from redis.asyncio.sentinel import Sentinel as AsyncSentinel

    address = parse(url)
    if address.is_sentinel:
        tls = _tls_kwargs(address)
        sentinel_kwargs = {"socket_timeout": SENTINEL_TIMEOUT,
                           **({"password": address.sentinel_password} if address.sentinel_password else {}), **tls}
        group = AsyncSentinel(list(address.hosts), sentinel_kwargs=sentinel_kwargs, password=address.password,
                              username=address.username, db=address.db, **tls, **kwargs)
        return group.master_for(address.master)
    return Redis.from_url(address.redis_url(), **_url_tls(address), **kwargs)


def error_line(url: str, error: Exception) -> str:
    """One line for a broker that does not answer (redis-py's error about a group lists
    every sentinel connection it tried)."""
    if isinstance(error, MasterNotFoundError):
        address = parse(url)
        sentinels = ", ".join(f"{h}:{p}" for h, p in address.hosts)
        return f"no sentinel answers, or none knows a primary of group {address.master!r} (sentinels: {sentinels})"
    return str(error) or type(error).__name__


def is_group(url: str) -> bool:
    """Whether ``url`` names a Sentinel group."""
    return parse(url).is_sentinel


def primary(url: str, timeout: float = SENTINEL_TIMEOUT) -> str:
    """``host:port`` of the Redis that serves ``url`` now: the group's primary as its
    sentinels say (a RedisError when none answers), or the one server named."""
    address = parse(url)
    if address.scheme == "unix":
        return address.path
    if not address.is_sentinel:
        host, port = address.hosts[0]
        return f"{host}:{port}"
    host, port = sentinel_of(address, socket_timeout=timeout).discover_master(address.master)
    return f"{host}:{port}"


def describe(url: str) -> str:
    """``; primary HOST:PORT`` for a Sentinel group (what its sentinels say now), else ''."""
    if not parse(url).is_sentinel:
        return ""
    try:
        return f"; primary {primary(url)}"
    except (redis.RedisError, OSError) as e:
        return f"; no primary known ({error_line(url, e)})"


def group_settled(url: str) -> str:
    """'' when every sentinel of the group ``url`` names the same primary, that server says
    it is one (after a start, a sentinel may still name the primary it last knew), and a
    replica is in sync with it; else what is not so yet."""
    address = parse(url)
    named = set()
    for host, port in address.hosts:
        client = redis.Redis(host=host, port=port, password=address.sentinel_password, socket_timeout=SENTINEL_TIMEOUT,
                             socket_connect_timeout=SENTINEL_TIMEOUT, **_tls_kwargs(address))
        try:
            named.add(tuple(client.sentinel_get_master_addr_by_name(address.master) or ()))
        except (redis.RedisError, OSError) as e:
            return f"sentinel {host}:{port}: {e}"
        finally:
            client.close()
    if len(named) != 1 or not next(iter(named)):
        return f"the sentinels name {len(named)} primaries"
    client = connect(url, socket_timeout=SENTINEL_TIMEOUT, socket_connect_timeout=SENTINEL_TIMEOUT)
    try:
        role = client.info("replication").get("role")
        if role != "master":
            return f"the primary the sentinels name is a {role}"
        return "" if online_replicas(client) else "no replica is in sync yet"
    except (redis.RedisError, OSError) as e:
        return error_line(url, e)
    finally:
        client.close()


def celery_settings(url: str, results: bool = False, backend_class: str = "") -> dict[str, Any]:
    """Celery's settings for a broker at ``url``: ``broker_url`` and the transport options
    it needs (the group's name, TLS); with ``results`` also the result backend on the same
    Redis (of ``backend_class``, a class path, when given)."""
    address = parse(url)
    conf: dict[str, Any] = {}
    options: dict[str, Any] = {}
    tls = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True, **address.tls_files} if address.tls else None
    if address.is_sentinel:
        auth = userinfo(address.username, address.password)
        broker = ";".join(f"sentinel://{auth}{host_port(h, p)}/{address.db}" for h, p in address.hosts)
        options = {"master_name": address.master,
                   "sentinel_kwargs": {"socket_timeout": SENTINEL_TIMEOUT,
                                       **({"password": address.sentinel_password} if address.sentinel_password else {}),
                                       **(_tls_kwargs(address))}}
    else:
        broker = address.redis_url().split("?", 1)[0] if address.scheme != "unix" else address.redis_url()
    conf["broker_url"] = broker
    conf["broker_transport_options"] = options
    conf["result_backend_transport_options"] = dict(options)
    if tls:
        conf["broker_use_ssl"] = conf["redis_backend_use_ssl"] = tls
    if results:
        conf["result_backend"] = (f"{backend_class}+" if backend_class else "") + broker
    return conf


def kombu_connection(url: str) -> Any:
    """A kombu Connection to the broker at ``url``, as Celery's workers connect."""
    import kombu

    conf = celery_settings(url)
    return kombu.Connection(conf["broker_url"], transport_options=conf["broker_transport_options"],
                            ssl=conf.get("broker_use_ssl") or False)


def online_replicas(client: redis.Redis) -> int:
    """How many replicas of the broker are connected and in sync (a replica still loading
    the primary's data would only make a WAIT time out)."""
    info = client.info("replication")
    return sum(1 for k, v in info.items()
               if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online")


class ReplicaLagError(redis.ConnectionError):
    """The broker's replicas did not confirm the last writes in time: a failover now could
    lose them. A broker error like any other: the step that wrote runs again (its writes
    are safe to repeat) once the broker answers, on whichever primary it is then."""


class ReplicaWait:
    """After a write that must survive a failover: wait until ``wanted`` replicas have it,
    or as many as are in sync (read every ``recheck`` seconds), at most ``timeout`` seconds;
    :class:`ReplicaLagError` when they do not. A broker with no replica costs nothing but
    one INFO now and then."""

    def __init__(self, client: redis.Redis, wanted: int, timeout: float, recheck: float = 10.0) -> None:
        self.client, self.wanted, self.timeout, self.recheck = client, int(wanted), float(timeout), recheck
        self.connected = 0
        self.checked = -recheck

    def __call__(self) -> int:
        """Wait; the number of replicas that have the writes made so far."""
        if self.wanted <= 0:
            return 0
        now = time.monotonic()
        if now - self.checked >= self.recheck:
            self.connected = online_replicas(self.client)
            self.checked = now
        wanted = min(self.wanted, self.connected)
        acked = replicated(self.client, wanted, self.timeout) if wanted else 0
        if acked < wanted:
            self.checked = -self.recheck             # look again: the replica may be gone
            raise ReplicaLagError(f"{acked} of {wanted} replica(s) confirmed the last writes within "
                                  f"{self.timeout:g} s")
        return acked


def replicated(client: redis.Redis, replicas: int, timeout: float) -> int:
    """Wait up to ``timeout`` seconds until ``replicas`` replicas have every write made so far
    on the broker (this client's and those it saw acknowledged); the number that have them.
    0 ``replicas``: returns at once."""
    if replicas <= 0:
        return 0
    pipe = client.pipeline(transaction=False)
    pipe.set(MARK, repr(time.time()))
    pipe.execute_command("WAIT", replicas, max(1, int(timeout * 1000)))
    return int(pipe.execute()[1])
