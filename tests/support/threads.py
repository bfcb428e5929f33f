"""Helper threads that cannot fail silently: a test that starts one learns of its error."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Helper(threading.Thread):
    """A daemon thread running ``target``; :meth:`result` joins it with a deadline and
    re-raises what it raised, so its failure fails the test instead of leaving the test
    waiting for something the thread would have done. ``on_error`` runs in the thread when
    ``target`` raises (close the socket the test reads, set the event it waits on)."""

    def __init__(self, target: Callable[..., Any], *args: Any, on_error: Callable[[], None] | None = None,
                 name: str | None = None) -> None:
        super().__init__(name=name or getattr(target, "__name__", "helper"), daemon=True)
        self._call = (target, args)
        self._on_error = on_error
        self.error: BaseException | None = None
        self.value: Any = None

    def run(self) -> None:
        target, args = self._call
        try:
            self.value = target(*args)
        except BaseException as e:          # noqa: BLE001 - handed to the test by result()
            self.error = e
            if self._on_error is not None:
                self._on_error()

    def result(self, timeout: float = 60) -> Any:
        """Wait up to ``timeout`` seconds for the thread; its return value, or its exception
        raised here, or an AssertionError when it is still running."""
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"helper thread {self.name} still running after {timeout} s")
        if self.error is not None:
            raise AssertionError(f"helper thread {self.name} failed: {self.error!r}") from self.error
        return self.value


def start(target: Callable[..., Any], *args: Any, on_error: Callable[[], None] | None = None) -> Helper:
    """Start a :class:`Helper` running ``target(*args)``."""
    helper = Helper(target, *args, on_error=on_error)
    helper.start()
    return helper
