"""The recorder's schedule loop: look, fire what is due, then wait for the next due time.

The wait is a blocking read of the broker's channel :data:`CHANNEL`, on which every
change of a schedule (`cmq schedule add`, ``remove``, ``pause``, ``unpause``) is
announced, bounded by the next due time and by ``SCHEDULE_CHECK`` seconds (a note lost
while the broker was away is made up for then). Nothing polls faster than that. Without
a broker the loop still fires, from the store alone, after each bounded wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..config.settings import Settings
from ..core import defaults
from .fire import Firing, check

#: The broker channel on which a change of a schedule is announced.
CHANNEL = "cmq:schedules"


def notify(client: Any) -> bool:
    """Announce on the broker that schedules changed, so the recorder looks at once;
    False when the broker did not take it (the recorder looks within SCHEDULE_CHECK s)."""
    from redis import RedisError

    try:
        client.publish(CHANNEL, "changed")
        return True
    except (RedisError, OSError):
        return False


class Waker:
    """Waits up to a given time for a note on :data:`CHANNEL` (or for ``stop``)."""

    def __init__(self, client: Any, stop: threading.Event) -> None:
        self.client = client
        self.stop = stop
        self.pubsub: Any = None

    def wait(self, seconds: float) -> None:
        """Return after ``seconds``, at a note on the channel, or when stopped."""
        from redis import RedisError

        seconds = max(0.0, seconds)
        try:
            if self.pubsub is None:
                self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                self.pubsub.subscribe(CHANNEL)
            deadline = time.monotonic() + seconds
            while not self.stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or self.pubsub.get_message(timeout=left) is not None:
                    break
            while self.pubsub.get_message(timeout=0) is not None:     # one look for a burst of notes
                pass
        except (RedisError, OSError):
            self.close()
            self.stop.wait(seconds)

    def close(self) -> None:
        """Drop the subscription (made again on the next wait)."""
        if self.pubsub is not None:
            try:
                self.pubsub.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self.pubsub = None


def loop(store: Any, client: Any, load: Callable[[], Settings], stop: threading.Event,
         say: Callable[[str], Any], clock: Callable[[], float] = time.time) -> None:
    """Until ``stop`` is set: fire the schedules of ``store`` that are due by ``clock()``
    (through a Cluster of ``load()``'s settings), tell ``say`` what fired, and wait for
    the next due time (see the module)."""
    from ..api.cluster import Cluster

    waker = Waker(client, stop)
    bound = float(defaults.SCHEDULE_CHECK)
    try:
        while not stop.is_set():
            try:
                settings = load()
                fired, wake = check(store, clock(), settings.get("schedule_timezone"),
                                    float(defaults.SCHEDULE_LATE), lambda s=settings: Cluster(s))
                for f in fired:
                    say(_told(f))
            except Exception as e:  # noqa: BLE001 - the next look may work (the store was busy)
                say(f"schedules: {type(e).__name__}: {e}")
                wake = clock() + bound
            waker.wait(min(wake - clock(), bound))
    finally:
        waker.close()


def _told(f: Firing) -> str:
    what = f"sent {f.id}" if not f.error else f"failed: {f.error}"
    return f"schedule {f.name} fired for {time.strftime('%Y-%m-%d %H:%M', time.gmtime(f.due))} UTC: {what}"


def start(store: Any, client: Any, load: Callable[[], Settings], say: Callable[[str], Any]) -> threading.Event:
    """Run :func:`loop` in a daemon thread; returns the event that stops it."""
    stop = threading.Event()
    threading.Thread(target=loop, args=(store, client, load, stop, say), name="cmq-schedules", daemon=True).start()
    return stop
