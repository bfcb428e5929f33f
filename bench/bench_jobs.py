"""Jobs/s and single-job latency: cmq against GNU parallel -S and raw ssh, in one run.

On 4 loopback sshd machines x 4 slots (127.0.0.61-64), every contender uses the same
ssh options and a persistent ControlMaster per host. Redis keeps an AOF with
``appendfsync always`` (what `cmq up` starts by default: settings: redis_fsync), unless
--fsync says otherwise.

  cmq        N `true` jobs: `cmq submit --wait true ::: 1..N` (CLI start included)
  parallel   GNU parallel -S 4/m1,...,4/m4 over the same kind of master
  ceiling    xargs -P4 per host running bare `ssh host true` over the masters
  latency    submit -> result of one job on an idle cluster (Python API, warm) against
             `ssh host true` over the master; median of N

The three contenders run in turn, round after round (--rounds), so that a change in the
machine's speed touches them alike; the ratio is the median of the rounds' ratios, with
its spread. Prints each figure and the ratios; --record appends them to bench/RESULTS.md.
Usage: python bench/bench_jobs.py [--jobs=1000] [--rounds=3] [--fsync=always] [--latency-runs=30] [--record]
                                  [--label=TEXT]
"""

from __future__ import annotations

import argparse
import os
import platform
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cmqueue.cli.demo_machines import LoopbackCluster  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402


def versions() -> dict[str, str]:
    import celery
    import kombu
    import redis

    def first_line(argv: list[str]) -> str:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "n/a"

    return {
        "python": platform.python_version(), "celery": celery.__version__, "kombu": kombu.__version__,
        "redis-py": redis.__version__, "redis-server": first_line(["redis-server", "--version"]).split(" ")[2],
        "openssh": first_line(["ssh", "-V"]), "parallel": first_line(["parallel", "--version"]),
        "cpus": str(os.cpu_count()),
    }


def fill_history(cmq: str, env: dict[str, str], count: int) -> None:
    """Run ``count`` real jobs of `true` through `cmq submit` (5,000 a command), so that
    the history holds them."""
    done = 0
    while done < count:
        size = min(5000, count - done)
        subprocess.run(f"{cmq} submit --wait true ::: $(seq {size}) >/dev/null", shell=True, env=env, check=True)
        done += size


def report(script: str, lines: list[str], v: dict[str, str], record: bool) -> None:
    """Print the figures and versions; with ``record`` append them to RESULTS.md."""
    print("\n".join(lines))
    print("versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    if record:
        with (HERE / "RESULTS.md").open("a") as f:
            f.write(f"\n## {script} — {time.strftime('%Y-%m-%d %H:%M')}\n\n```\n" + "\n".join(lines)
                    + "\n```\n" + "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + "\n")


def ssh_config(cluster: LoopbackCluster, path: Path, ctl: Path) -> Path:
    lines = []
    user = pwd.getpwuid(os.getuid()).pw_name
    for m in cluster.machines:
        lines += [f"Host {m.name}", f"  HostName {m.address}", f"  Port {m.port}", f"  User {user}",
                  f"  IdentityFile {cluster.key}", "  IdentitiesOnly yes",
                  f"  UserKnownHostsFile {cluster.known_hosts}", "  StrictHostKeyChecking yes",
                  "  BatchMode yes", "  ControlMaster auto",
                  f"  ControlPath {ctl}/%n", "  ControlPersist 600", ""]
    path.write_text("\n".join(lines))
    return path


def installed_cmq() -> Path:
    """The `cmq` command installed beside this Python: what users type (through the
    launcher that `cmq up` starts)."""
    entry = Path(sys.executable).with_name("cmq")
    if not entry.exists():
        raise SystemExit(f"{entry}: not found; install cmq with pip (.ci/setup does)")
    return entry


def four_by_four(root: Path, fsync: str) -> tuple[LoopbackCluster, RedisServer, Path, dict[str, str]]:
    """4 loopback sshd machines x 4 slots (127.0.0.61-64), a private Redis with
    ``appendfsync fsync``, their inventory, and the environment that points cmq at them."""
    cluster = LoopbackCluster(root / "cluster", n=4, slots=4, first=61).start()
    redis_srv = RedisServer(root / "redis", fsync=fsync)
    redis_srv.start()
    config = cluster.write_inventory(root / "cmq.yaml", redis_srv.url, settings={"flower_port": 0})
    return cluster, redis_srv, config, {**os.environ, "CMQ_CONFIG": str(config), "CMQ_HOME": str(root / "home")}


def timed(argv: list[str], env: dict | None = None, shell: bool = False) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, shell=shell, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: {argv if not shell else argv}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fsync", default="always", choices=["always", "everysec", "no"])
    ap.add_argument("--latency-runs", type=int, default=30)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--label", default="", help="what the run measures (in its heading in RESULTS.md)")
    opts = ap.parse_args()
    if not shutil.which("parallel"):
        raise SystemExit("GNU parallel is needed: apt-get install parallel")
    root = Path(tempfile.mkdtemp(prefix="cmq-bench-"))
    cluster, redis_srv, config, env = four_by_four(root, opts.fsync)
    cmq = [str(installed_cmq())]
    ctl = root / "ctl"
    ctl.mkdir(mode=0o700)
    cfg = ssh_config(cluster, root / "ssh_config", ctl)
    wrapper = root / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec ssh -F {cfg} "$@"\n')
    wrapper.chmod(0o755)
    hosts = [m.name for m in cluster.machines]
    try:
        subprocess.run([*cmq, "up"], env=env, check=True, capture_output=True)
        for h in hosts:                                     # peers' masters, opened before the burst
            subprocess.run([str(wrapper), "-MNf", h], check=True)
        n = opts.jobs
        # warm up every path once
        timed([*cmq, "submit", "--wait", "--all", "true"], env=env)
        timed(f"parallel --ssh {wrapper} -S {','.join('4/' + h for h in hosts)} true ::: 1 2 3 4", shell=True)

        rounds: list[dict[str, float]] = []
        args = [str(i) for i in range(n)]
        seq = root / "seq.txt"
        seq.write_text("\n".join(args) + "\n")
        per_host = n // len(hosts)
        script = " & ".join(f"seq {per_host} | xargs -P4 -I{{}} {wrapper} {h} true" for h in hosts) + " & wait"
        for _ in range(opts.rounds):
            results: dict[str, float] = {}
            results["cmq"] = n / timed([*cmq, "submit", "--wait", "true", ":::", *args], env=env)
            results["parallel"] = n / timed(
                f"parallel --ssh {wrapper} -S {','.join('4/' + h for h in hosts)} true :::: {seq}", shell=True)
            results["ceiling"] = per_host * len(hosts) / timed(script, shell=True)
            rounds.append(results)

        from cmqueue.api.cluster import Cluster

        os.environ.update(CMQ_HOME=env["CMQ_HOME"])
        lat_cmq, lat_ssh, lat_cli = [], [], []
        with Cluster.from_config(str(config)) as c:
            c.submit("true", on="m1").wait()
            for _ in range(opts.latency_runs):
                t0 = time.perf_counter()
                res = c.submit("true", on="m1").wait()
                lat_cmq.append(time.perf_counter() - t0)
                assert res.ok
        for _ in range(opts.latency_runs):
            lat_ssh.append(timed([str(wrapper), "m1", "true"]))
        for _ in range(5):
            lat_cli.append(timed([*cmq, "submit", "--wait", "--on=m1", "true"], env=env))
        lat = {"cmq": statistics.median(lat_cmq) * 1000, "ssh": statistics.median(lat_ssh) * 1000,
               "cli": statistics.median(lat_cli) * 1000}
    finally:
        subprocess.run([*cmq, "down", "--grace=2"], env=env, capture_output=True)
        for h in hosts:
            subprocess.run([str(wrapper), "-O", "exit", h], capture_output=True)
        cluster.stop()
        redis_srv.stop()
        shutil.rmtree(root, ignore_errors=True)

    v = versions()
    med = {k: statistics.median(r[k] for r in rounds) for k in ("cmq", "parallel", "ceiling")}
    vs_parallel = sorted(r["cmq"] / r["parallel"] for r in rounds)
    vs_ceiling = sorted(r["cmq"] / r["ceiling"] for r in rounds)
    lines = [
        f"jobs/s, {n} x `true` on 4 machines x 4 slots, redis appendfsync {opts.fsync}, "
        f"median of {len(rounds)} interleaved rounds:",
        f"  cmq                {med['cmq']:8.1f}   rounds: " + ", ".join(f"{r['cmq']:.0f}" for r in rounds),
        f"  GNU parallel -S    {med['parallel']:8.1f}   rounds: " + ", ".join(f"{r['parallel']:.0f}" for r in rounds),
        f"  xargs+ssh ceiling  {med['ceiling']:8.1f}   rounds: " + ", ".join(f"{r['ceiling']:.0f}" for r in rounds),
        f"  cmq/parallel = {statistics.median(vs_parallel):.2f}x (rounds {vs_parallel[0]:.2f}-{vs_parallel[-1]:.2f}; "
        "target >= 4.0x)",
        f"  cmq/ceiling  = {statistics.median(vs_ceiling):.2f}x (rounds {vs_ceiling[0]:.2f}-{vs_ceiling[-1]:.2f}; "
        "target >= 0.7x)",
        "latency of one job on an idle cluster (median):",
        f"  cmq API submit->result {lat['cmq']:7.1f} ms",
        f"  raw ssh host true      {lat['ssh']:7.1f} ms   difference = {lat['cmq'] - lat['ssh']:+.1f} ms"
        " (target <= +15 ms)",
        f"  cmq CLI submit --wait  {lat['cli']:7.1f} ms   (includes starting Python)",
    ]
    report("bench_jobs.py" + (f" {opts.label}" if opts.label else ""), lines, v, opts.record)


if __name__ == "__main__":
    main()
