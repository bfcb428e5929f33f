"""A broker you can lose: failover time, and what TLS and replica waits cost, for
docs/reliability.md (the section between ``<!-- failover -->`` markers).

    .venv/bin/python bench/failover.py            # print the figures
    .venv/bin/python bench/failover.py --write    # and rewrite the section

Failover time: `cmq up --ha` (a primary, a replica, three sentinels on loopback) drives two
loopback sshd machines x 4 slots; a batch of short jobs runs; the primary is SIGKILLed.
The time is from the kill to the first job that starts afterwards (its start as the
history records it: the job went through the new primary). Between rounds the old primary
comes back as a replica and the group is let settle.

Costs: the same `cmq submit --wait` of N `true` jobs, in jobs/s, through the embedded Redis
(`cmq up`), the embedded Redis on TLS (`cmq up --tls`), and the group (`cmq up --ha`) with
settings replica_acks 0 (never wait) and 1 (the default: a replica has every write that
accepts, starts or ends a job). The variants take turns, each in a home of its own, and
are repeated; the median and the spread are printed, with the ratio to plain TCP.

Which jobs were accepted, ran, were lost or ran twice: tests/integration/queue/test_failover.py
with figures on (a failover during a submit, mid-run and during a reduce, 5 rounds each,
and the 300 jobs of the issue's check), tabulated as the faults table is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.reliability import DOC, faults_table, measured, replace_section, run_cmq, run_faults  # noqa: E402
from cmqueue.cli.demo_machines import LoopbackCluster  # noqa: E402

#: Loopback addresses of the machines (127.0.0.FIRST...): not used by the test suite.
FIRST = 215
VARIANTS = {"TCP (cmq up)": ("up",), "TLS (cmq up --tls)": ("up", "--tls"),
            "group, replica_acks 0": ("up", "--ha"), "group, replica_acks 1 (default)": ("up", "--ha")}


class Setup:
    """One cmq home and inventory on the shared machines."""

    def __init__(self, root: Path, cluster: LoopbackCluster, name: str, settings: dict) -> None:
        self.home = root / name / "home"
        config = cluster.write_inventory(root / name / "cmq.yaml", None,
                                         settings={"flower_port": 0, "worker_processes": 1, **settings})
        env = {k: v for k, v in os.environ.items() if k != "CMQ_BROKER"}
        self.env = {**env, "CMQ_CONFIG": str(config), "CMQ_HOME": str(self.home)}

    def cmq(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run ``cmq ARGS``; SystemExit with its output when it fails."""
        return run_cmq(self.env, *args, timeout=timeout)

    def redis(self) -> dict:
        """The recorded embedded Redis (``members`` and ``ports`` of a group)."""
        return json.loads((self.home / "services.json").read_text())["redis"]


def jobs_per_second(setup: Setup, up: tuple[str, ...], n: int) -> float:
    """`cmq up`, then N `true` jobs through `cmq submit --wait`, timed; then `cmq down`."""
    setup.cmq(*up)
    try:
        t0 = time.perf_counter()
        setup.cmq("submit", "--wait", "true # {}", ":::", *map(str, range(n)))
        return n / (time.perf_counter() - t0)
    finally:
        setup.cmq("down", "--grace=2")


def costs(root: Path, cluster: LoopbackCluster, n: int, repeats: int) -> list[str]:
    """The jobs/s table of each variant (see the module)."""
    setups = {name: Setup(root, cluster, f"cost-{i}", {"replica_acks": 0} if "acks 0" in name else {})
              for i, name in enumerate(VARIANTS)}
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for rep in range(repeats):
        for name, up in VARIANTS.items():
            rates[name].append(jobs_per_second(setups[name], up, n))
            print(f"round {rep + 1}: {name}: {rates[name][-1]:.0f} jobs/s", file=sys.stderr)
    base = statistics.median(rates["TCP (cmq up)"])
    rows = [f"{n:,} `true` jobs through `cmq submit --wait` on 2 loopback machines x 4 slots, "
            f"each variant {repeats} times, taking turns.", "",
            "| broker | jobs/s, median | spread (min-max) | vs TCP |", "|---|---:|---:|---:|"]
    for name, got in rates.items():
        med = statistics.median(got)
        rows.append(f"| {name} | {med:.0f} | {min(got):.0f}-{max(got):.0f} | {med / base:.2f}x |")
    return rows


def failover_times(root: Path, cluster: LoopbackCluster, rounds: int, jobs: int) -> list[float]:
    """Seconds from the kill of the primary to the first job started after it, per round."""
    setup = Setup(root, cluster, "failover", {})
    setup.cmq("up", "--ha")
    times = []
    try:
        for _ in range(rounds):
            sub = json.loads(setup.cmq("submit", "--json", "sleep 0.2 # {}", ":::", *map(str, range(jobs))).stdout)
            _wait_started(setup, sub["batch"], 10)
            rec = setup.redis()
            victim = _primary_member(setup, rec)
            killed = time.time()
            os.kill(rec["members"][victim]["pid"], signal.SIGKILL)
            setup.cmq("wait", "--timeout=300", sub["batch"], timeout=400)
            rows = json.loads(setup.cmq("status", "--json", sub["batch"]).stdout)
            after = [r["started"] for r in rows if r["started"] and r["started"] > killed]
            times.append(round(min(after) - killed, 1))
            print(f"failover: {times[-1]} s", file=sys.stderr)
            setup.cmq("up")                                  # the killed member comes back, a replica
            _wait_in_sync(setup)
    finally:
        setup.cmq("down", "--grace=2")
    return times


def _primary_member(setup: Setup, rec: dict) -> str:
    """Which member is primary now, as `cmq ps` says."""
    said = setup.cmq("ps").stderr
    return next(m for m, p in rec["ports"].items() if f"primary 127.0.0.1:{p}" in said)


def _wait_started(setup: Setup, batch: str, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = json.loads(setup.cmq("status", "--json", batch).stdout)
        if sum(1 for r in rows if r["started"]) >= n:
            return
        time.sleep(0.2)
    raise SystemExit(f"{n} jobs of {batch} did not start within {timeout} s")


def _wait_in_sync(setup: Setup, timeout: float = 120) -> None:
    """Until the primary has a replica in sync (so that the next round can fail over)."""
    import redis

    from cmqueue.queue.broker import connect, online_replicas

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if online_replicas(connect(setup.redis()["url"], socket_timeout=2)):
                return
        except redis.RedisError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"no replica in sync within {timeout} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="failovers")
    ap.add_argument("--jobs", type=int, default=300, help="jobs in the batch that runs during a failover")
    ap.add_argument("--cost-jobs", type=int, default=1000, help="jobs per cost measurement")
    ap.add_argument("--repeats", type=int, default=3, help="times each cost variant runs")
    ap.add_argument("--no-tallies", action="store_true", help="skip the failover tests' tallies")
    ap.add_argument("--write", action="store_true", help="rewrite the section in docs/reliability.md")
    opts = ap.parse_args()
    stamp = measured(("python", "celery", "kombu", "redis-server", "cpus"))
    tallies = [] if opts.no_tallies else faults_table(run_faults("tests/integration/queue/test_failover.py"))
    with tempfile.TemporaryDirectory(prefix="cmq-failover-") as tmp:
        root = Path(tmp)
        cluster = LoopbackCluster(root / "cluster", n=2, slots=4, first=FIRST).start()
        try:
            times = failover_times(root, cluster, opts.rounds, opts.jobs)
            table = costs(root, cluster, opts.cost_jobs, opts.repeats)
        finally:
            cluster.stop()
    lines = [f"Failover time, SIGKILL of the primary to the first job started on the new one, "
             f"{len(times)} rounds: median {statistics.median(times)} s, "
             f"spread {min(times)}-{max(times)} s ({', '.join(f'{t} s' for t in times)}).", "", *table, "",
             *([*tallies, ""] if tallies else []), stamp + "."]
    print("\n".join(lines))
    if opts.write:
        DOC.write_text(replace_section(DOC.read_text(), "failover", lines))
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
