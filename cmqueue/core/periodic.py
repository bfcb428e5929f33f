"""A step repeated in a daemon thread, for the recorder's background duties."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def every(interval: float, make_step: Callable[[], Callable[[], Any]], name: str,
          on_error: Callable[[Exception], Any] | None = None) -> threading.Thread:
    """In a new daemon thread, call ``make_step()`` once (what it sets up lives in that
    thread), then the step it returns every ``interval`` seconds; an error is told to
    ``on_error`` and the steps go on (the broker may be restarting)."""
    def run() -> None:
        step = make_step()
        while True:
            time.sleep(interval)
            try:
                step()
            except Exception as e:  # noqa: BLE001 - go on: the next step may work
                if on_error:
                    on_error(e)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
