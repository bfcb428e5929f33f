"""Run the API on uvicorn in the foreground until interrupted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.errors import ServiceError
from .tokens import TokenStore


def serve(settings: Any, tokens: TokenStore, address: str = "127.0.0.1", port: int = 8765,
          cert: str | None = None, key: str | None = None, origins: list[str] | None = None,
          reload: Callable[[], Any] | None = None) -> None:
    """Serve the API (and, over TLS, with Secure cookies) on ``address:port``; ``origins``
    are the web origins allowed to call it from a browser (CORS, none by default);
    ``reload`` reads the settings again when the inventory changes."""
    import socket

    import uvicorn

    from .app import create_api

    api = create_api(settings, tokens, secure_cookie=bool(cert), reload=reload)
    if origins:
        from fastapi.middleware.cors import CORSMiddleware

        api.add_middleware(CORSMiddleware, allow_origins=list(origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"], allow_credentials=False)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as probe:             # a clear error before uvicorn's own
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as e:
            raise ServiceError(f"cmq serve: cannot listen on {address}:{port}: {e.strerror}") from None
    scheme = "https" if cert else "http"
    print(f"cmq serve: {scheme}://{address}:{port}/ (API description: /api/docs)", flush=True)
    uvicorn.run(api, host=address, port=port, ssl_certfile=cert, ssl_keyfile=key, log_level="warning",
                access_log=False, server_header=False)
