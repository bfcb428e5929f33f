"""Flower, the web view of the queues: on 127.0.0.1, behind a login, with its task
history kept on disk. Knows how to make and read the login and how to start Flower with
the cluster's Celery app (so neither the broker URL nor the password is on a command line).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config.settings import Settings
from ..core.errors import ServiceError
from ..core.files import check_private, private_dir, write_private

USER = "cmq"


def flower_dir(settings: Settings) -> Path:
    """Flower's private directory under the cmq home (login and task history)."""
    return private_dir(settings.home / "flower")


def login(settings: Settings, create: bool = True) -> tuple[str, str, bool]:
    """(user, password, created_now). The login lives in a 0600 file, made on first use."""
    path = flower_dir(settings) / "login"
    if path.exists():
        check_private(path)
        user, _, password = path.read_text().strip().partition(":")
        return user, password, False
    if not create:
        raise ServiceError(f"no Flower login yet ({path}); `cmq up` or `cmq flower` makes one")
    password = secrets.token_urlsafe(18)
    write_private(path, f"{USER}:{password}\n")
    return USER, password, True


def serve(app: Any, settings: Settings, port: int, address: str = "127.0.0.1",
          announce: Callable[[str, str], None] | None = None) -> None:
    """Run Flower in the foreground for ``app`` (blocks). ``announce(url, user)`` is told
    where it listens and who logs in before it starts (never the password)."""
    from .local_servers import port_free

    if not port_free(address, port):
        raise ServiceError(f"port {port} on {address} is in use; choose another with --port "
                           "(or settings: flower_port)")
    user, password, _ = login(settings)
    if announce is not None:
        announce(f"http://{address}:{port}/", user)
    os.environ["FLOWER_BASIC_AUTH"] = f"{user}:{password}"     # read by Flower, never on argv
    db = flower_dir(settings) / "flower.db"
    app.start(["flower", f"--port={port}", f"--address={address}", "--persistent=True",
               f"--db={db}", "--state_save_interval=5000", "--natural_time=False",
               "--tasks_columns=name,uuid,state,kwargs,received,runtime,worker"])
