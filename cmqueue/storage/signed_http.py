"""Requests to an object store on one kept-alive ``http.client`` connection, signed by the
libcloud driver's own connection (its SigV4 or Shared Key code: nothing is signed here).

libcloud sends through requests and urllib3, which cost about 0.3 ms of Python a
request here (URL parsing, header dicts, hooks, the environment), more than a small
object's whole GET against a server on the same machine: this way a small GET costs half
the CPU (0.26-0.34 ms). It is used only where it is the same request as libcloud's: no
proxy and no client certificate on the driver's session; TLS is verified with the CA
bundle libcloud would give requests (or not at all when libcloud is told not to).
"""

from __future__ import annotations

import http.client
import io
import ssl
from typing import Any
from urllib.parse import urlencode

#: Errors of a kept-alive connection the server closed while it was idle: the request is
#: sent again once, on a new connection.
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
#: Bytes of a request's body sent at a time.
BLOCK = 1 << 20


class FileSlice:
    """The first ``size`` bytes of open file ``f`` (from where it stands), as a request
    body: a file that grew since its Content-Length was taken is not sent past it (the
    server then finds the body's MD5 wrong, rather than reading the rest as the next
    request). Positions are in the slice, 0 to ``size``."""

    def __init__(self, f: Any, size: int) -> None:
        self.f, self.size, self.start = f, size, f.tell()

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left of the slice for -1)."""
        left = self.size - self.tell()
        return self.f.read(left if n < 0 else min(n, left)) if left > 0 else b""

    def tell(self) -> int:
        """Where the next read starts."""
        return self.f.tell() - self.start

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move as a file does (from the slice's start, here, or its end)."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: self.size}[whence]
        self.f.seek(self.start + max(0, min(self.size, base + offset)))
        return self.tell()


class SignedHttp:
    """One connection to the host of libcloud connection ``conn`` (not thread safe: a
    provider, and so this, belongs to one job)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.http: http.client.HTTPConnection | None = None

    @staticmethod
    def usable(conn: Any) -> bool:
        """Whether requests of ``conn`` can go this way (the same request as libcloud's)."""
        if not all(hasattr(conn, a) for a in ("host", "port", "secure", "pre_connect_hook", "morph_action_hook")):
            return False
        if conn.connection is None:
            conn.connect()
        session = getattr(conn.connection, "session", None)
        return session is not None and not session.proxies and not session.cert

    def _connect(self) -> http.client.HTTPConnection:
        timeout = getattr(self.conn.connection.session, "timeout", None) or self.conn.timeout
        if not self.conn.secure:
            return http.client.HTTPConnection(self.conn.host, int(self.conn.port), timeout=timeout, blocksize=BLOCK)
        verify = self.conn.connection.verification
        if verify is False:                  # libcloud told not to verify (VERIFY_SSL_CERT)
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            import requests.certs

            context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else requests.certs.where())
        return http.client.HTTPSConnection(self.conn.host, int(self.conn.port), timeout=timeout, context=context,
                                           blocksize=BLOCK)

    def signed(self, method: str, action: str, headers: dict[str, str] | None = None,
               params: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
        """(the URL path and query, the headers) of a request, as libcloud's connection
        prepares and signs it (``Connection.request`` up to the point it sends)."""
        conn = self.conn
        action = conn.morph_action_hook(action)
        conn.action, conn.method, conn.data = action, method, None
        try:
            params = conn.add_default_params(dict(params or {}))
            headers = conn.add_default_headers(dict(headers or {}))
            headers["User-Agent"] = conn._user_agent()
            port = int(conn.port)
            headers["Host"] = conn.host if port in (80, 443) else f"{conn.host}:{port}"
            params, headers = conn.pre_connect_hook(params, headers)
        finally:
            conn.reset_context()
        return (f"{action}?{urlencode(params, doseq=True)}" if params else action), headers

    def request(self, method: str, action: str, headers: dict[str, str] | None = None, body: Any = None,
                params: dict[str, str] | None = None) -> http.client.HTTPResponse:
        """Send a signed request and return the response, its body not yet read. A body
        that is a file is sent again from its start when a stale connection is retried."""
        url, signed = self.signed(method, action, headers, params)
        start = body.tell() if hasattr(body, "seek") else None
        for attempt in (1, 2):
            fresh = self.http is None
            if fresh:
                self.http = self._connect()
            try:
                self.http.request(method, url, body=body, headers=signed)
                return self.http.getresponse()
            except STALE:
                self.close()
                if fresh or attempt == 2 or (body is not None and start is None):
                    raise
                if start is not None:
                    body.seek(start)
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection (the next request opens another)."""
        if self.http is not None:
            self.http.close()
            self.http = None
