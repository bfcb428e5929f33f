"""`cmq serve`: the REST API in the foreground, and its tokens."""

from __future__ import annotations

import ipaddress
from typing import Any

from ..core.errors import UsageError
from . import output
from .common import Args, load_settings, number_option, output_format, print_rows


def cmd_serve(args: Args) -> int:
    """Run cmq's REST API in the foreground, or manage its tokens.

Usage:
  cmq serve [options] [--address=A] [--port=P] [--cert=FILE --key=FILE] [--allow-origin=ORIGIN]...
  cmq serve [options] token create NAME
  cmq serve [options] token list [--output=OUTPUT]
  cmq serve [options] token revoke NAME

Options:
  --address=A            address to listen on; anything but loopback exposes the API
                         (tokens still required; use TLS) [default: 127.0.0.1]
  --port=P               port (default: settings: serve_port, 8765)
  --cert=FILE            TLS certificate (PEM); with --key, the API is served over https
  --key=FILE             TLS private key (PEM, 0600)
  --allow-origin=ORIGIN  a web origin whose pages may call the API (CORS; none by default)
  --output=OUTPUT        table, json or csv [default: table]

Every route but /api/health needs a token, sent as `Authorization: Bearer cmq_...`.
`token create NAME` prints a new token once: it is kept only as a hash, in
~/.cloudmesh/cmq/serve/tokens.json (0600), and `token revoke NAME` ends it at once.
The API's description is at /openapi.json, readable at /api/docs.

Examples:
  cmq serve token create alice
  cmq serve
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8765/api/jobs
  curl -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
       -d '{"command": "uname -n", "all": true, "wait": 30}' http://127.0.0.1:8765/api/jobs
"""
    from ..config.settings import home_dir
    from ..serve.tokens import TokenStore

    tokens = TokenStore(home_dir() / "serve" / "tokens.json")
    if args["token"]:
        return _tokens(args, tokens)
    settings = load_settings(args, check_keys=False)
    port = number_option(args, "--port", int) or int(settings.get("serve_port"))
    if not 0 < port < 65536:
        raise UsageError(f"--port={port}: from 1 to 65535")
    if bool(args["--cert"]) != bool(args["--key"]):
        raise UsageError("--cert and --key go together")
    if args["--key"]:
        from ..core.files import check_private

        check_private(args["--key"], "the TLS key")
    from ..serve.server import serve

    if not tokens.names():
        output.err.print("cmq serve: no token yet, so nothing can call the API: `cmq serve token create NAME` "
                         "makes one", markup=False, highlight=False)
    elif not args["--cert"] and not _loopback(args["--address"]):
        output.err.print(f"cmq serve: {args['--address']} is not loopback and there is no --cert: tokens would "
                         "travel in clear", markup=False, highlight=False)
    serve(settings, tokens, address=args["--address"], port=port, cert=args["--cert"], key=args["--key"],
          origins=args["--allow-origin"], reload=lambda: load_settings(args, check_keys=False))
    return 0


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _tokens(args: Args, tokens: Any) -> int:
    if args["create"]:
        token = tokens.create(args["NAME"])
        output.err.print(f"token {args['NAME']} (shown once; keep it secret):", markup=False, highlight=False)
        output.out.print(token, markup=False, highlight=False)
        return 0
    if args["revoke"]:
        tokens.revoke(args["NAME"])
        output.err.print(f"token {args['NAME']} revoked", markup=False, highlight=False)
        return 0
    import time

    rows = [{"name": t["name"], "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(t["created"] or 0))}
            for t in tokens.names()]
    print_rows(rows, ["name", "created"], output_format(args))
    return 0


COMMANDS: dict[str, Any] = {"serve": cmd_serve}
