"""A test double of the EC2 Query API on a loopback port, for the error paths of a
driver cloud: it is not a cloud (no VM exists behind it) and says so in README.

It answers DescribeInstances with no instances, DescribeImages with one image (ami-1), and whatever error it was told to
answer an action with, in EC2's own XML (``<Response><Errors><Error>``), so libcloud's
EC2 driver parses it as it parses Amazon's.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

IMAGE = ('<?xml version="1.0" encoding="UTF-8"?>\n<DescribeImagesResponse '
         'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><imagesSet><item><imageId>ami-1</imageId>'
         '<name>debian-12</name><imageState>available</imageState><architecture>x86_64</architecture>'
         '</item></imagesSet></DescribeImagesResponse>')
EMPTY = ('<?xml version="1.0" encoding="UTF-8"?>\n<DescribeInstancesResponse '
         'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><reservationSet/></DescribeInstancesResponse>')


class Ec2Double:
    """``with Ec2Double() as ec2:`` a server on 127.0.0.1:``ec2.port``; ``ec2.errors``
    maps an action (``RunInstances``) or ``*`` to (HTTP status, EC2 error code, message)."""

    def __init__(self) -> None:
        self.errors: dict[str, tuple[int, str, str]] = {}
        self.actions: list[str] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: str) -> None:
                params = parse_qs(urlparse(self.path).query)
                params.update(parse_qs(body))
                action = params.get("Action", ["?"])[0]
                double.actions.append(action)
                status, payload = 200, IMAGE if action == "DescribeImages" else EMPTY
                error = double.errors.get(action) or double.errors.get("*")
                if error:
                    status, code, message = error
                    payload = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
                               f'<Message>{message}</Message></Error></Errors><RequestID>1</RequestID></Response>')
                data = payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's names
                self._answer("")

            def do_POST(self) -> None:  # noqa: N802
                self._answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def __enter__(self) -> Ec2Double:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
