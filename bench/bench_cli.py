"""Interactive speed: what people type most, cmq against clush, parallel-ssh and GNU parallel.

On 16 loopback sshd machines (127.4.0.1-16), every contender over the same kind of
persistent ssh master per host (the peers through one ssh config; cmq through its own):

  fan-out    one command on every machine, outputs printed: `cmq submit --all --wait CMD`
             against `clush -w m[1-16] CMD`, `parallel-ssh -i -h HOSTS CMD` and GNU
             `parallel --nonall -S ... CMD`
  one job    `cmq submit --wait --on=m1 true` against a fresh `ssh m1 true` (no master)
             and `ssh m1 true` over the master
  listings   `cmq status`, `cmq jobs`, `cmq logs JOB`, `cmq machines`, `cmq --help`
             with N jobs (default 20,000) in the history, printed into a pipe

Every figure is the median wall time of --runs runs (a new process each, as typed).
Prints the table and the ratios; --record appends it to bench/RESULTS.md.
Usage: python bench/bench_cli.py [--machines=16] [--history=20000] [--runs=5] [--record]
Needs clush, parallel-ssh and GNU parallel (Debian: apt-get install clustershell pssh parallel).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_jobs import fill_history, installed_cmq, report, ssh_config, versions  # noqa: E402

from cmqueue.cli.demo_machines import LoopbackCluster  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

PEERS = {"clush": "clustershell", "parallel-ssh": "pssh", "parallel": "parallel"}


def median_ms(argv: str, env: dict[str, str], runs: int, expect: str | None = None) -> float:
    """Median wall time of the shell command ``argv`` in ms; ``expect`` must be in its output."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(argv, shell=True, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0 or (expect is not None and expect not in r.stdout):
            raise SystemExit(f"failed: {argv}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--machines", type=int, default=16)
    ap.add_argument("--history", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--record", action="store_true")
    opts = ap.parse_args()
    missing = [pkg for tool, pkg in PEERS.items() if not shutil.which(tool)]
    if missing:
        raise SystemExit(f"the peers are needed: apt-get install {' '.join(missing)}")
    n = opts.machines
    root = Path(tempfile.mkdtemp(prefix="cmq-bench-cli-"))
    cluster = LoopbackCluster(root / "cluster", n=n, slots=2, first=0, subnet="127.4").start()
    redis_srv = RedisServer(root / "redis")
    redis_srv.start()
    config = cluster.write_inventory(root / "cmq.yaml", redis_srv.url, settings={"flower_port": 0})
    env = {**os.environ, "CMQ_CONFIG": str(config), "CMQ_HOME": str(root / "home")}
    cmq = shlex.quote(str(installed_cmq()))
    ctl = root / "ctl"
    ctl.mkdir(mode=0o700)
    cfg = ssh_config(cluster, root / "ssh_config", ctl)
    hosts = [m.name for m in cluster.machines]
    hostfile = root / "hosts"
    hostfile.write_text("\n".join(hosts) + "\n")
    wrapper = root / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec ssh -F {cfg} "$@"\n')
    wrapper.chmod(0o755)
    fold = f"m[1-{n}]"
    cmd = "uname -r"
    release = os.uname().release
    fan: dict[str, float] = {}
    one: dict[str, float] = {}
    listing: dict[str, float] = {}
    try:
        subprocess.run(f"{cmq} up", shell=True, env=env, check=True, capture_output=True)
        for h in hosts:                                    # the peers' masters, open before timing
            subprocess.run([str(wrapper), "-MNf", h], check=True)
        contenders = {
            "cmq": f"{cmq} submit --all --wait {shlex.quote(cmd)}",
            "clush": f"clush -o '-F {cfg}' -f {n} -w {fold} {shlex.quote(cmd)}",
            "parallel-ssh": f"parallel-ssh -i -p {n} -x '-F {cfg}' -h {hostfile} {shlex.quote(cmd)}",
            "parallel": f"parallel --ssh {wrapper} --nonall -j {n} -S {','.join(hosts)} {shlex.quote(cmd)}",
        }
        for argv in contenders.values():                      # warm every path once
            median_ms(argv, env, 1, expect=release)
        for name, argv in contenders.items():
            fan[name] = median_ms(argv, env, opts.runs, expect=release)

        one["cmq"] = median_ms(f"{cmq} submit --wait --on=m1 true", env, opts.runs)
        one["fresh ssh"] = median_ms(f"{wrapper} -o ControlPath=none m1 true", env, opts.runs)
        one["ssh over master"] = median_ms(f"{wrapper} m1 true", env, opts.runs)

        fill_history(cmq, env, opts.history)                # a history of real jobs
        last = subprocess.run(f"{cmq} submit --json --wait --on=m1 'echo last'", shell=True, env=env,
                              check=True, capture_output=True, text=True).stdout
        job = last.split('"id": "')[1].split('"')[0]
        for name, argv in {"cmq status": "status", "cmq jobs": "jobs", "cmq logs JOB": f"logs {job}",
                           "cmq machines": "machines", "cmq --help": "--help"}.items():
            listing[name] = median_ms(f"{cmq} {argv} | cat", env, opts.runs)
        python = median_ms(f"{shlex.quote(sys.executable)} -c pass", env, opts.runs)
    finally:
        subprocess.run(f"{cmq} down --grace=2", shell=True, env=env, capture_output=True)
        for h in hosts:
            subprocess.run([str(wrapper), "-O", "exit", h], capture_output=True)
        cluster.stop()
        redis_srv.stop()
        shutil.rmtree(root, ignore_errors=True)

    lines = [f"one command on {n} machines, outputs printed (`{cmd}`), ms, median of {opts.runs}:"]
    lines.append(f"  cmq submit --all --wait  {fan['cmq']:8.0f}")
    for name in ("clush", "parallel-ssh", "parallel"):
        lines.append(f"  {name:<24} {fan[name]:8.0f}   peer/cmq = {fan[name] / fan['cmq']:.2f}x"
                     + (" (target >= 1.0x)" if name == "clush" else ""))
    lines.append(f"one job, ms, median of {opts.runs}:")
    lines.append(f"  cmq submit --wait        {one['cmq']:8.0f}   (target <= 150 ms)")
    for name in ("fresh ssh", "ssh over master"):
        lines.append(f"  {name:<24} {one[name]:8.0f}   peer/cmq = {one[name] / one['cmq']:.2f}x")
    lines.append(f"listings with {opts.history:,} jobs in the history, into a pipe, ms, median of {opts.runs}:")
    for name, ms in listing.items():
        target = 80 if name == "cmq --help" else 100
        lines.append(f"  {name:<24} {ms:8.0f}   (target <= {target} ms)")
    lines.append(f"  python -c pass           {python:8.0f}   (the floor: starting Python)")
    v = versions()
    for tool in ("clush", "parallel-ssh"):
        r = subprocess.run([tool, "--version"], capture_output=True, text=True)
        v[tool] = (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else "?"
    report("bench_cli.py", lines, v, opts.record)


if __name__ == "__main__":
    main()
