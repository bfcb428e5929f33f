"""The API application: routes under ``/api/``, every one behind a token or a console
session but the health check; cmq's errors answered as JSON with the status their class
carries (400, 404, 409, 503), never a traceback.

The routes call the same code as the command line (:class:`cmqueue.api.cluster.Cluster`,
:mod:`cmqueue.submit.specs`, the history store): there is no second implementation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..core.errors import CmqError
from .auth import COOKIE, Sessions, caller
from .deps import Clusters
from .schemas import Health, Login, Problem
from .tokens import TokenStore

log = logging.getLogger("cmq.serve")

#: The answers every authenticated route may give besides its own.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "the request is wrong (the message says which field)"},
    401: {"model": Problem, "description": "no valid token or session"},
    404: {"model": Problem, "description": "no such job, machine or batch"},
    409: {"model": Problem, "description": "refused: it cannot be done now (the message says why)"},
    503: {"model": Problem, "description": "a service cmq needs (the broker, the history) is not reachable"},
}


def _problem(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def create_api(settings: Any, tokens: TokenStore, secure_cookie: bool = False,
               reload: Callable[[], Any] | None = None) -> FastAPI:
    """The API for the inventory and home of ``settings``, its tokens in ``tokens``;
    ``reload`` reads the settings again when the inventory changes."""
    from . import routes_clouds, routes_data, routes_events, routes_jobs, routes_machines, routes_workflows

    api = FastAPI(title="cmq", version=__version__, description="Run shell jobs and small workflows on a fleet of "
                  "machines. Every route but /api/health needs `Authorization: Bearer cmq_...` (made by `cmq serve "
                  "token create NAME`) or the console's session cookie.", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/openapi.json", lifespan=_lifespan,
                  generate_unique_id_function=_operation_id)
    api.state.settings = settings
    api.state.tokens = tokens
    api.state.sessions = Sessions(tokens)
    api.state.clusters = Clusters(settings, reload)
    api.state.secure_cookie = secure_cookie

    @api.exception_handler(CmqError)
    async def cmq_error(_: Request, e: CmqError) -> JSONResponse:
        return _problem(e.http_status, str(e))

    @api.exception_handler(RequestValidationError)
    async def bad_request(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return _problem(400, f"{where}: {first.get('msg', 'invalid')}")

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return _problem(e.status_code, str(e.detail), headers=getattr(e, "headers", None))

    @api.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.error("cmq serve: %s %s: %s: %s", request.method, request.url.path, type(e).__name__, e)
        return _problem(500, f"internal error ({type(e).__name__}); the server's log has the details")

    @api.get("/api/health", response_model=Health, tags=["server"])
    def health() -> dict[str, Any]:
        """The server answers. No token needed."""
        return {"ok": True, "version": __version__}

    @api.post("/api/login", status_code=204, tags=["server"], responses={401: ERRORS[401], 400: ERRORS[400]})
    def login(body: Login, request: Request) -> Response:
        """Open a console session with a token: sets the session cookie (HttpOnly,
        SameSite=Strict; Secure over TLS)."""
        sid = request.app.state.sessions.open(body.token)
        if sid is None:
            return _problem(401, "the token is not valid", headers={"WWW-Authenticate": "Bearer"})
        answer = Response(status_code=204)
        answer.set_cookie(COOKIE, sid, httponly=True, samesite="strict", secure=request.app.state.secure_cookie,
                          path="/")
        return answer

    @api.post("/api/logout", status_code=204, tags=["server"], responses={401: ERRORS[401]})
    def logout(request: Request, _: str = Depends(caller)) -> Response:
        """End the console session."""
        request.app.state.sessions.close(request.cookies.get(COOKIE, ""))
        answer = Response(status_code=204)
        answer.delete_cookie(COOKIE, path="/")
        return answer

    for module in (routes_jobs, routes_workflows, routes_machines, routes_data, routes_clouds, routes_events):
        api.include_router(module.router, dependencies=[Depends(caller)], responses=ERRORS)
    _console(api)

    api.openapi = lambda: _spec(api)               # type: ignore[method-assign]
    return api


#: The console's pages run only what the server sent (no inline script, no other origin).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _console(api: FastAPI) -> None:
    """The web console: static pages at ``/`` and ``/console/`` that call the API with
    the session cookie (the pages hold nothing secret; the data needs the login)."""
    from pathlib import Path

    from fastapi.staticfiles import StaticFiles

    folder = Path(__file__).with_name("console")
    api.mount("/console", StaticFiles(directory=folder), name="console")

    @api.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(folder / "index.html", media_type="text/html")

    @api.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        answer = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            answer.headers.setdefault(name, value)
        return answer


def _operation_id(route: Any) -> str:
    """A route's operationId in the spec: its function's name (``submit_jobs``), which a
    generated client takes as the name of its call."""
    return route.name


def _spec(api: FastAPI) -> dict[str, Any]:
    """The OpenAPI spec as FastAPI makes it, without the 422 answers it documents for
    every route: a request that does not fit is answered 400 here (see ``bad_request``)."""
    if api.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        spec = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
        for path in spec.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            spec.get("components", {}).get("schemas", {}).pop(name, None)
        api.openapi_schema = spec
    return api.openapi_schema


@asynccontextmanager
async def _lifespan(api: FastAPI) -> AsyncIterator[None]:
    yield
    api.state.clusters.close()
