"""The broker's address: one URL string, whatever form the inventory names it in.

``broker:`` in the inventory is a URL or a mapping::

    broker: redis://:PASSWORD@10.0.0.5:6379/0           # rediss:// for TLS, unix:///path
    broker: {url: rediss://10.0.0.5:6380/0, tls: {ca: ca.pem, cert: client.pem, key: client.key}}
    broker: {sentinels: ["10.0.0.5:26379", "10.0.0.6:26379"], master: cmq, password: TBD,
             sentinel_password: TBD, db: 0, tls: {...}}

``password`` may be ``TBD`` (asked for, hidden) or given as ``password_file:`` (0600, first
line), and so may ``sentinel_password`` (``sentinel_password_file:``).

Whatever the form, the broker travels as one URL (``CMQ_BROKER``, ``services.json``), which
:func:`parse` reads back into a :class:`BrokerAddress`:

- ``redis://[:PASSWORD@]HOST:PORT/DB``, ``rediss://...`` (TLS), ``unix:///PATH``;
- ``sentinel://[:PASSWORD@]HOST:PORT,HOST:PORT/DB?master=NAME[&sentinel_password=S]`` for a
  Sentinel group (``&tls=1`` when its Redis servers and sentinels speak TLS);
- TLS files as ``ssl_ca_certs``, ``ssl_certfile`` and ``ssl_keyfile`` in the query.

Connections are made from it in one place, :mod:`cmqueue.queue.broker`.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from ..core.errors import ConfigError, InsecureFileError
from .asking import ASK, ask_hidden
from .fields import fail, string

#: Keys of the mapping form.
URL_KEYS = {"url", "tls"}
GROUP_KEYS = {"sentinels", "master", "password", "password_file", "sentinel_password",
              "sentinel_password_file", "db", "tls"}
TLS_KEYS = {"ca", "cert", "key"}
#: The query keys that name TLS files, by the ``tls:`` key they come from.
TLS_QUERY = {"ca": "ssl_ca_certs", "cert": "ssl_certfile", "key": "ssl_keyfile"}
SCHEMES = ("redis", "rediss", "unix", "sentinel")
#: The port of a sentinel given without one.
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class BrokerAddress:
    """A broker named by a URL (see the module): a Redis server, or a Sentinel group."""

    scheme: str
    #: (host, port) of the Redis server, or of each sentinel of a group.
    hosts: tuple[tuple[str, int], ...] = ()
    password: str | None = None
    username: str | None = None
    db: int = 0
    #: The Sentinel group's name (its ``master``); empty for a plain Redis.
    master: str = ""
    sentinel_password: str | None = None
    #: Whether connections use TLS, and the files that check the server and name the client.
    tls: bool = False
    tls_files: dict[str, str] = field(default_factory=dict)
    #: The path of a ``unix://`` socket.
    path: str = ""

    @property
    def is_sentinel(self) -> bool:
        """Whether this names a Sentinel group (its primary is asked of the sentinels)."""
        return self.scheme == "sentinel"

    def redis_url(self, host: str | None = None, port: int | None = None) -> str:
        """A redis:// (rediss:// with TLS) URL of one server: this plain one, or the group's
        server at ``host:port``; TLS files in the query, as redis-py reads them."""
        if self.scheme == "unix":
            query = urlencode({"db": self.db, **({"password": self.password} if self.password else {})})
            return f"unix://{self.path}?{query}"
        h, p = (host, port) if host else self.hosts[0]
        scheme = "rediss" if self.tls else "redis"
        query = urlencode(self.tls_files)
        url = f"{scheme}://{userinfo(self.username, self.password)}{host_port(h, p)}/{self.db}"
        return url + (f"?{query}" if query else "")


def userinfo(username: str | None, password: str | None) -> str:
    """``user:password@`` of a URL, quoted (empty without either)."""
    if not password and not username:
        return ""
    return f"{quote(username or '', safe='')}:{quote(password or '', safe='')}@"


def host_port(host: str, port: int) -> str:
    """``host:port`` as a URL writes it (``[v6]:port``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _hostport(text: str, default: int | None, where: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) as a pair; ``default`` when the port is left out."""
    text = text.strip()
    host, _, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not host:
        host, port = text, ""
    host = host.strip("[]")
    if not port:
        if default is None:
            raise ConfigError(f"{where}: {text!r} has no port")
        return host, default
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {text!r} is not host:port")
    return host, int(port)


def parse(url: str, where: str = "broker") -> BrokerAddress:
    """The broker ``url`` names (see the module); ConfigError naming ``where`` when it is not
    a broker URL."""
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise ConfigError(f"{where}: not a URL ({e})") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"{where}: must be a redis://, rediss://, unix:// or sentinel:// URL, "
                          f"got scheme {parts.scheme!r}")
    query = dict(parse_qsl(parts.query))
    tls_files = {k: query.pop(k) for k in list(query) if k in TLS_QUERY.values()}
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    try:
        db = int(query.get("db") or (parts.path.strip("/") if parts.scheme != "unix" else "") or 0)
    except ValueError:
        raise ConfigError(f"{where}: the database must be a number, got {parts.path.strip('/')!r}") from None
    common: dict[str, Any] = {"password": unquote(password) or query.get("password") or None,
                              "username": unquote(user) or None, "db": db, "tls_files": tls_files}
    if parts.scheme == "unix":
        return BrokerAddress("unix", path=parts.path, **common)
    default = SENTINEL_PORT if parts.scheme == "sentinel" else 6379
    hosts = tuple(_hostport(h, default, where) for h in hostlist.split(",") if h.strip())
    if not hosts:
        raise ConfigError(f"{where}: names no host")
    if parts.scheme == "sentinel":
        if not query.get("master"):
            raise ConfigError(f"{where}: a sentinel:// URL needs ?master=NAME (the Sentinel group)")
        return BrokerAddress("sentinel", hosts, master=query["master"],
                             sentinel_password=query.get("sentinel_password") or None,
                             tls=query.get("tls") in ("1", "true", "yes"), **common)
    if len(hosts) > 1:
        raise ConfigError(f"{where}: a {parts.scheme}:// URL names one host (a Sentinel group is sentinel://)")
    return BrokerAddress(parts.scheme, hosts, tls=parts.scheme == "rediss", **common)


def render(address: BrokerAddress) -> str:
    """The URL of ``address``, as :func:`parse` reads it."""
    if address.scheme != "sentinel":
        return address.redis_url()
    query: dict[str, str] = {"master": address.master}
    if address.sentinel_password:
        query["sentinel_password"] = address.sentinel_password
    if address.tls:
        query["tls"] = "1"
    query.update(address.tls_files)
    hosts = ",".join(host_port(h, p) for h, p in address.hosts)
    return f"sentinel://{userinfo(address.username, address.password)}{hosts}/{address.db}?{urlencode(query)}"


def check(path: Path, value: Any) -> str | dict[str, Any]:
    """``broker:`` of the inventory at ``path``, checked: a URL, or the mapping (its secrets
    are read by :func:`url_of` when the inventory's broker is the one used)."""
    where = f"{path.name}: broker"
    if isinstance(value, str):
        address = parse(string(path, "broker", value), where)
        if address.scheme == "sentinel" and not address.master:
            raise fail(path, "broker", "names no master")
        return value
    if not isinstance(value, dict):
        raise fail(path, "broker", f"must be a redis:// URL or a mapping, got {type(value).__name__}")
    keys = GROUP_KEYS if "sentinels" in value else URL_KEYS
    unknown = sorted(set(map(str, value)) - keys)
    if unknown:
        raise fail(path, f"broker.{unknown[0]}", f"unknown field (known: {', '.join(sorted(keys))})")
    tls = value.get("tls")
    if tls is not None and tls is not True:
        if not isinstance(tls, dict):
            raise fail(path, "broker.tls", "must be a mapping of ca, cert and key files (or true)")
        bad = sorted(set(map(str, tls)) - TLS_KEYS)
        if bad:
            raise fail(path, f"broker.tls.{bad[0]}", "unknown field (known: ca, cert, key)")
        if ("cert" in tls) != ("key" in tls):
            raise fail(path, "broker.tls", "give cert and key together")
        for k, v in tls.items():
            string(path, f"broker.tls.{k}", v)
    if "sentinels" not in value:
        if "url" not in value:
            raise fail(path, "broker", "give url: (a Redis) or sentinels: and master: (a Sentinel group)")
        address = parse(string(path, "broker.url", value["url"]), f"{where}.url")
        if tls and address.scheme != "rediss":
            raise fail(path, "broker.url", "tls: needs a rediss:// URL")
        return dict(value)
    sentinels = value["sentinels"]
    if not isinstance(sentinels, list) or not sentinels:
        raise fail(path, "broker.sentinels", "must be a list of host:port")
    for i, s in enumerate(sentinels):
        _hostport(string(path, f"broker.sentinels[{i}]", s), SENTINEL_PORT, f"{where}.sentinels[{i}]")
    if not value.get("master"):
        raise fail(path, "broker.master", "is required with sentinels: (the name the sentinels monitor)")
    string(path, "broker.master", value["master"])
    for name in ("password", "sentinel_password"):
        if value.get(name) is not None and value.get(f"{name}_file") is not None:
            raise fail(path, f"broker.{name}", f"give {name} or {name}_file, not both")
    db = value.get("db", 0)
    if isinstance(db, bool) or not isinstance(db, int) or db < 0:
        raise fail(path, "broker.db", f"must be a database number, got {db!r}")
    return dict(value)


def url_of(path: Path, value: str | dict[str, Any]) -> str:
    """The URL of the inventory's ``broker:`` (checked by :func:`check`): secrets written
    ``TBD`` are asked for, ``*_file`` ones read (they must be 0600)."""
    if isinstance(value, str):
        return value
    tls = value.get("tls")
    files = {TLS_QUERY[k]: str(_relative(path, v)) for k, v in (tls or {}).items()} if isinstance(tls, dict) else {}
    if "sentinels" not in value:
        address = parse(value["url"], f"{path.name}: broker.url")
        return render(BrokerAddress(**{**address.__dict__, "tls_files": {**address.tls_files, **files}}))
    hosts = tuple(_hostport(s, SENTINEL_PORT, "broker.sentinels") for s in value["sentinels"])
    return render(BrokerAddress("sentinel", hosts, password=_secret(path, value, "password"),
                                db=int(value.get("db", 0)), master=str(value["master"]),
                                sentinel_password=_secret(path, value, "sentinel_password"),
                                tls=bool(tls), tls_files=files))


def _relative(path: Path, name: str) -> Path:
    """A file named in the inventory: ``~`` expanded, relative to the inventory's folder."""
    p = Path(name).expanduser()
    return p if p.is_absolute() else (path.parent / p).resolve()


def _secret(path: Path, value: dict[str, Any], name: str) -> str | None:
    """``broker.NAME``: given, asked for when TBD, or read from ``NAME_file``."""
    where = f"{path.name}: broker.{name}"
    if value.get(f"{name}_file") is not None:
        file = _relative(path, str(value[f"{name}_file"]))
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            text = file.read_text().splitlines()
        except OSError as e:
            raise ConfigError(f"{where}_file: {file}: {e.strerror or e}") from None
        if mode & 0o077:
            raise InsecureFileError(f"{where}_file: {file} is accessible by group/others (mode {mode:04o}); "
                                    f"run: chmod 600 {file}")
        if not text or not text[0]:
            raise ConfigError(f"{where}_file: {file} is empty")
        return text[0]
    secret = value.get(name)
    if secret == ASK:
        return ask_hidden(where, f"{name.replace('_', ' ')} of the broker: ",
                          f"give broker.{name}_file, or set CMQ_BROKER")
    return None if secret is None else str(secret)
