"""Byte counts of running transfers in the broker's Redis (a private redis-server)."""

from __future__ import annotations

import pytest
import redis

from cmqueue.queue import progress
from cmqueue.queue.progress import INTERVAL, ProgressReporter, read_progress


@pytest.fixture
def client(redis_server):
    c = redis.Redis.from_url(redis_server.url)
    yield c
    c.close()


@pytest.fixture
def clock(monkeypatch):
    """The reporter's clock, moved by the test."""
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


def test_a_transfer_shorter_than_the_interval_writes_nothing(client, clock):
    reporter = ProgressReporter(client, "job-short", total=4096)
    reporter(1024)
    reporter(4096)
    reporter.close()
    assert read_progress(client, ["job-short"]) == {}


def test_a_longer_transfer_is_counted_every_interval_and_at_its_end(client, clock):
    reporter = ProgressReporter(client, "job-long", total=300)
    reporter(100)
    assert read_progress(client, ["job-long"]) == {}
    clock[0] += INTERVAL
    reporter(200)
    assert read_progress(client, ["job-long"]) == {"job-long": (200, 300, "")}
    reporter(250)                                      # within the interval: not yet
    assert read_progress(client, ["job-long"]) == {"job-long": (200, 300, "")}
    reporter.close()
    assert read_progress(client, ["job-long"]) == {"job-long": (250, 300, "")}
    reporter.via = "m3"                                # a relayed copy names its feeder
    clock[0] += INTERVAL
    reporter(300)
    assert read_progress(client, ["job-long"]) == {"job-long": (300, 300, "m3")}
