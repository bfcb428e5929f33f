"""A live cluster with `cmq serve` running on it, started as a user starts them: Redis,
two sshd machines (m1 labelled cpu), workers, two folder storage services (box, shelf),
libcloud's dummy cloud ``d`` and an ec2 cloud with a TBD secret, and a token."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from cmqueue.cli.demo_machines import random_free_port

from ..conftest import make_env, teardown, wait_for
from .streams import read_until


class Served:
    """A `cmq serve` process of a cluster and a token for it."""

    def __init__(self, env, token: str, port: int, proc: subprocess.Popen) -> None:
        self.env, self.token, self.port, self.proc = env, token, port, proc
        self.url = f"http://127.0.0.1:{port}"

    def client(self, token: str | None = "default", **kw) -> httpx.Client:
        """An HTTP client of the API with the token (another one, or none)."""
        headers = {"Authorization": f"Bearer {self.token if token == 'default' else token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=90, **kw)


@contextmanager
def serving(root: Path, first: int) -> Iterator[Served]:
    """The cluster and its server under ``root`` (machines on 127.0.0.<first>...)."""
    for folder in ("box", "shelf"):
        (root / folder).mkdir()
    storage = {"box": {"type": "local", "directory": str(root / "box")},
               "shelf": {"type": "local", "directory": str(root / "shelf")}}
    clouds = {"d": {"type": "dummy", "credentials": {"key": 0}},        # libcloud's test double
              "aws": {"type": "ec2", "credentials": {"key": "AKIAEXAMPLE", "secret": "TBD"}}}
    env = make_env(root, machines=2, slots=2, first=first, labels={"m1": ["cpu"]},
                   sections={"storage": storage, "clouds": clouds})
    proc = None
    try:
        token = env.run("serve", "token", "create", "ci", check=True).out.strip()
        port = random_free_port()
        proc = subprocess.Popen([sys.executable, "-m", "cmqueue", "serve", f"--port={port}"], env=env.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert read_until(proc.stdout, "\n", timeout=60).startswith(f"cmq serve: http://127.0.0.1:{port}/")

        def answers() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers, timeout=30, what="cmq serve to answer")
        yield Served(env, token, port, proc)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        teardown(env)
