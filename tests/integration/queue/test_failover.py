"""A broker you can lose: the inventory names a Redis Sentinel group (a primary, a replica
and three sentinels, real redis-server processes on loopback, password and AOF), and the
primary is SIGKILLed while jobs run. The sentinels promote the replica; every cmq client
follows it, and nothing cmq accepted is lost.

With CMQ_FAULT_FIGURES set (``bench/reliability.py``) each moment is tried 5 times and the
tallies go to docs/reliability.md."""

from __future__ import annotations

import time

import pytest

from tests.conftest import make_env, teardown, wait_for
from tests.integration.queue.test_fault_figures import (
    FIGURES,
    ROUNDS,
    crash_rounds,
    started,
    submit,
)
from tests.support.tally import count

pytestmark = pytest.mark.timeout(600)

JOBS = 300
#: Seconds from the kill to every job having run (the issue's bound on recovery).
RECOVERY = 90


def test_broker_sentinel_failover(tmp_path):
    cenv = make_env(tmp_path, machines=2, slots=4, first=201, sentinel=True)
    log = tmp_path / "runs.log"
    try:
        ps = cenv.run("ps")
        assert "primary 127.0.0.1:" in ps.err, ps.err          # which primary is in use
        t0 = time.monotonic()
        sub = submit(cenv, log, "sleep 0.2", JOBS)
        wait_for(lambda: len(started(log)) >= 20, timeout=120, what="the run under way")
        victim = cenv.redis.kill_primary()
        new = cenv.redis.wait_primary(not_=victim)
        done = cenv.run("wait", f"--timeout={RECOVERY}", sub["batch"], timeout=RECOVERY + 60)
        records = cenv.run("status", "--json", sub["batch"], check=True).json()
        tally = count("Sentinel group: the primary SIGKILLed while jobs run", records, log, time.monotonic() - t0)
        tally.record()
        assert done.code == 0, done.err
        assert f"primary 127.0.0.1:{cenv.redis.ports[new]}" in cenv.run("ps").err
    finally:
        teardown(cenv)
    assert len(records) == JOBS and all(r["state"] == "succeeded" for r in records), tally
    assert {r["id"] for r in records} <= started(log)            # each ran at least once
    tally.check()


#: Rounds of a failover at each moment: as many as of a crash when the figures are taken,
#: fewer in a plain test run (each round waits for a failover and a resync).
FAILOVER_ROUNDS = ROUNDS if FIGURES else 1


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["during submit", "mid-run", "during a reduce"])
def test_sentinel_primary_killed(tmp_path, moment):
    # The broker is a Sentinel group; its primary is SIGKILLed and the replica promoted.
    # Replication is asynchronous: what the new primary lacks is put back, from the history.
    cenv = make_env(tmp_path, machines=2, slots=2, first=205, sentinel=True)
    try:
        crash_rounds(cenv, tmp_path, moment, FAILOVER_ROUNDS, "Sentinel primary killed (SIGKILL)")
    finally:
        teardown(cenv)
