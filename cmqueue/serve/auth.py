"""Who may call the API: a bearer token (``Authorization: Bearer cmq_...``) or the
session cookie the console's login sets (HttpOnly, SameSite=Strict; Secure over TLS).

Sessions live in the server's memory: a restart logs everyone out, and a revoked token
ends the sessions it opened at their next request.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPBearer

from .tokens import TokenStore

#: The console's session cookie.
COOKIE = "cmq_session"
#: Seconds a console session lasts without use.
SESSION_IDLE = 12 * 3600.0

#: The two ways to call the API, as the OpenAPI spec declares them (``securitySchemes``),
#: so that Swagger UI and generated clients know them. ``caller`` reads both itself.
BEARER = HTTPBearer(scheme_name="bearer", bearerFormat="cmq_...", auto_error=False,
                    description="a token made by `cmq serve token create NAME`")
SESSION = APIKeyCookie(name=COOKIE, scheme_name="session", auto_error=False,
                       description="the console's session cookie, set by POST /api/login")


@dataclass
class Sessions:
    """Console sessions: a random id -> (token name, token hash, last use)."""

    tokens: TokenStore
    _live: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, token: str) -> str | None:
        """A new session for ``token`` when it is live; its id (the cookie's value)."""
        name = self.tokens.check(token)
        if name is None:
            return None
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._live[sid] = (name, self.tokens.digest(token), time.monotonic())
        return sid

    def close(self, sid: str) -> None:
        """End session ``sid``."""
        with self._lock:
            self._live.pop(sid, None)

    def who(self, sid: str) -> str | None:
        """The token name of live session ``sid`` (its token still valid), else None."""
        with self._lock:
            found = self._live.get(sid)
        if found is None:
            return None
        name, digest, used = found
        if time.monotonic() - used > SESSION_IDLE or self.tokens.check_digest(digest) != name:
            self.close(sid)
            return None
        with self._lock:
            self._live[sid] = (name, digest, time.monotonic())
        return name


def caller(request: Request, _bearer: object = Depends(BEARER), _session: object = Depends(SESSION)) -> str:
    """The name of the token the request carries (header or session cookie); 401 when
    it carries none that is live. A FastAPI dependency."""
    state = request.app.state
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        name = state.tokens.check(token.strip()) if scheme.lower() == "bearer" else None
        if name is None:
            raise HTTPException(401, "the token is not valid (`cmq serve token create NAME` makes one)",
                                headers={"WWW-Authenticate": "Bearer"})
        return name
    sid = request.cookies.get(COOKIE, "")
    name = state.sessions.who(sid) if sid else None
    if name is None:
        raise HTTPException(401, "log in, or send a token: Authorization: Bearer cmq_...",
                            headers={"WWW-Authenticate": "Bearer"})
    return name
