"""The fleet's clock: the broker's.

A worker on another machine (an agent) may run on a clock that is off. Each worker
measures its host's offset from the broker's clock (Redis TIME) when it starts and with
every heartbeat; beyond ``SKEW_TOLERANCE`` seconds it stamps job events, start and end
times, machine states and kombu's delivery times on the broker's clock instead of its
own, and says so in its log. Within the tolerance nothing changes: hosts kept in step
by NTP use their own clocks.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("cmq.clock")

#: Seconds of difference from the broker's clock that are left alone.
SKEW_TOLERANCE = 2.0

_offset = 0.0


def now() -> float:
    """Seconds since the epoch on the fleet's clock."""
    return time.time() + _offset


def offset() -> float:
    """Seconds added to this host's clock (0.0 unless it is off)."""
    return _offset


def measure(client: Any) -> float:
    """The broker's clock minus this host's, in seconds (half a round trip precise)."""
    before = time.time()
    seconds, micros = client.time()
    after = time.time()
    return seconds + micros / 1e6 - (before + after) / 2


def follow(client: Any) -> float:
    """Measure the offset from the broker and adopt it when it is beyond the tolerance;
    returns the offset in use."""
    global _offset
    measured = measure(client)
    adopted = measured if abs(measured) > SKEW_TOLERANCE else 0.0
    if abs(adopted - _offset) > SKEW_TOLERANCE or (adopted == 0.0) != (_offset == 0.0):
        if adopted:
            log.warning("this host's clock is %+.1f s off the broker's: job times are put on the broker's clock",
                        -measured)
        else:
            log.warning("this host's clock agrees with the broker's again")
    _offset = adopted
    return _offset
