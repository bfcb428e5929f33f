"""clock: a worker adopts the broker's clock only when its own is off by more than the
tolerance (a stand-in for Redis TIME answers what a broker an hour ahead would)."""

from __future__ import annotations

import time

import pytest

from cmqueue.core import clock


class BrokerTime:
    """Answers TIME like Redis, ``ahead`` seconds from this host's clock."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def time(self) -> tuple[int, int]:
        t = time.time() + self.ahead
        return int(t), int((t % 1) * 1e6)


@pytest.fixture(autouse=True)
def reset():
    yield
    clock.follow(BrokerTime(0))


def test_a_clock_an_hour_off_is_put_on_the_brokers(caplog):
    assert abs(clock.follow(BrokerTime(3600)) - 3600) < 0.5
    assert abs(clock.now() - (time.time() + 3600)) < 0.5
    assert "this host's clock is -3600.0 s off the broker's" in caplog.text


def test_a_small_difference_is_left_alone():
    assert clock.follow(BrokerTime(1.0)) == 0.0 and abs(clock.now() - time.time()) < 0.1


def test_back_in_step_the_host_clock_is_used_again(caplog):
    clock.follow(BrokerTime(-3600))
    assert clock.follow(BrokerTime(0)) == 0.0 and clock.offset() == 0.0
    assert "agrees with the broker's again" in caplog.text
