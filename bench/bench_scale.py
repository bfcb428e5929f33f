"""Many machines from one controller: cmq's worker processes against GNU parallel -S.

For each fleet size (default 4, 16, 64, 256 loopback sshd machines on 127.1.x.y, 2 slots
each), in one run:

  cmq        `cmq up` wall time (until every machine consumes); resident memory of the
             controller's processes (worker processes, recorder, launcher, Redis) and of
             the ssh masters and sessions they opened, in all and per machine; idle CPU
             over 10 s (% of one core); throughput of N `true` jobs (`cmq submit --wait`)
  parallel   GNU `parallel -S` over the same machines and masters (one ssh config with
             ControlMaster): throughput of the same N jobs and its peak resident memory
  4 x 4     also 4 machines x 4 slots, with the default layout and with one worker process
             per machine, the layout before worker processes served many machines
             (`worker_processes: 4`)

Redis keeps an AOF with ``appendfsync always`` (what `cmq up` starts by default), unless
--fsync says otherwise.

Usage: python bench/bench_scale.py [--sizes=4,16,64,256] [--jobs=2000] [--fsync=always] [--record]
Needs GNU parallel (Debian: apt-get install parallel).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_jobs import report, ssh_config, timed, versions  # noqa: E402

from cmqueue.cli.demo_machines import LoopbackCluster  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

MiB = 1024 * 1024


def controller_processes(home: Path, control: Path) -> list[psutil.Process]:
    """cmq's processes for ``home``: the recorded services and their descendants, and the
    ssh masters that use ``control`` (they detach from the worker that opened them)."""
    state = json.loads((home / "services.json").read_text())
    roots = [rec["pid"] for rec in (state.get("workers") or {}).values()]
    roots += [state[k]["pid"] for k in ("recorder", "launcher", "redis") if state.get(k, {}).get("pid")]
    procs: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            p = psutil.Process(pid)
        except psutil.Error:
            continue
        for q in [p, *p.children(recursive=True)]:
            procs[q.pid] = q
    for p in psutil.process_iter(["cmdline"]):
        if str(control) in " ".join(p.info["cmdline"] or []):
            procs[p.pid] = p
    return list(procs.values())


def resident(procs: list[psutil.Process], ssh: bool | None = None) -> int:
    """Summed RSS in bytes of the processes still alive (``ssh``: only the ssh clients,
    or only the others)."""
    total = 0
    for p in procs:
        try:
            if ssh is not None and (p.name() == "ssh") != ssh:
                continue
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """Summed user+system CPU seconds of the processes still alive."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def measure_cmq(cluster: LoopbackCluster, root: Path, jobs: int, processes: int = 0,
                fsync: str = "always") -> dict[str, float]:
    """Start cmq on ``cluster`` (Redis with ``appendfsync fsync``) and measure it; stops it after."""
    redis_srv = RedisServer(root / "redis", fsync=fsync)
    redis_srv.start()
    n = len(cluster.machines)
    config = cluster.write_inventory(root / "cmq.yaml", redis_srv.url,
                                     settings={"flower_port": 0, **({"worker_processes": processes}
                                                                    if processes else {})})
    home = root / "home"
    env = {**os.environ, "CMQ_CONFIG": str(config), "CMQ_HOME": str(home)}
    cmq = [sys.executable, "-m", "cmqueue"]
    try:
        up = timed([*cmq, "up"], env)
        from cmqueue.machine.runner import control_dir

        os.environ["CMQ_HOME"] = str(home)
        control = control_dir()
        procs = controller_processes(home, control)
        time.sleep(2)                                   # let the start settle before the idle sample
        c0, t0 = cpu_seconds(procs), time.monotonic()
        time.sleep(10)
        idle = (cpu_seconds(procs) - c0) / (time.monotonic() - t0) * 100
        rss, rss_ssh = resident(procs), resident(procs, ssh=True)
        took = timed([*cmq, "submit", "--wait", "--json", "true", ":::", *map(str, range(jobs))], env)
        return {"machines": n, "up": up, "rss": rss, "rss_ssh": rss_ssh, "idle": idle,
                "rate": jobs / took, "processes": len(json.loads((home / "services.json").read_text())["workers"])}
    finally:
        subprocess.run([*cmq, "down", "--grace=5"], env=env, capture_output=True)
        redis_srv.stop()


def measure_parallel(cluster: LoopbackCluster, root: Path, jobs: int) -> dict[str, float]:
    """GNU parallel -S over the same machines, two jobs at a time on each, over masters."""
    ctl = root / "ctl"
    ctl.mkdir(mode=0o700, exist_ok=True)
    cfg = ssh_config(cluster, root / "ssh_config", ctl)
    ssh = f"ssh -F {cfg}"
    for m in cluster.machines:                          # open the masters first, as cmq up does
        subprocess.run(["ssh", "-F", str(cfg), m.name, "true"], check=True, capture_output=True)
    logins = ",".join(f"{cluster.slots}/{m.name}" for m in cluster.machines)
    argv = ["/usr/bin/time", "-f", "%M", "parallel", "--ssh", ssh, "-S", logins, "true", ":::",
            *map(str, range(jobs))]
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"parallel failed: {r.stderr[-2000:]}")
    peak_kib = int(r.stderr.strip().splitlines()[-1])
    subprocess.run(["pkill", "-f", str(ctl)], capture_output=True)
    return {"rate": jobs / took, "rss": peak_kib * 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="4,16,64,256")
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--fsync", default="always", choices=["always", "everysec", "no"])
    ap.add_argument("--record", action="store_true")
    opts = ap.parse_args()
    if not shutil.which("parallel"):
        raise SystemExit("GNU parallel is needed: apt-get install parallel")
    runs = [(int(size), 2, [("worker processes", 0)]) for size in opts.sizes.split(",")]
    if runs and runs[0][0] == 4:
        runs.insert(1, (4, 4, [("worker processes", 0), ("one per machine", 4)]))
    lines = [f"{'machines x slots':<24} {'procs':>5} {'cmq up':>7} {'resident':>9} {'(ssh)':>7} {'/machine':>9} "
             f"{'idle CPU':>8} {'jobs/s':>7} {'parallel jobs/s':>15} {'parallel RSS':>12} {'ratio':>6}"]
    for n, slots, layouts in runs:
        root = Path(tempfile.mkdtemp(prefix=f"cmq-bench-scale-{n}-"))
        cluster = LoopbackCluster(root / "cluster", n=n, slots=slots, first=0, subnet="127.1").start()
        try:
            par = measure_parallel(cluster, root, opts.jobs)
            for label, processes in layouts:
                c = measure_cmq(cluster, root / label.replace(" ", "-"), opts.jobs, processes, opts.fsync)
                lines.append(f"{n:>3} x {slots} {label:<16} {c['processes']:>5} {c['up']:>6.1f}s "
                             f"{c['rss'] / MiB:>7.0f}Mi {c['rss_ssh'] / MiB:>5.0f}Mi {c['rss'] / MiB / n:>7.1f}Mi "
                             f"{c['idle']:>7.1f}% {c['rate']:>7.0f} {par['rate']:>15.0f} {par['rss'] / MiB:>10.0f}Mi "
                             f"{c['rate'] / par['rate']:>5.2f}x")
                print(lines[-1], flush=True)
        finally:
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)
    lines.append(f"{opts.jobs} `true` jobs each, redis appendfsync {opts.fsync}; "
                 "resident: after `cmq up`, of cmq's processes and Redis and the "
                 "ssh masters and sessions, (ssh) of those ssh clients alone; ratio: cmq jobs/s over GNU parallel's")
    report("bench_scale.py", lines, versions(), opts.record)


if __name__ == "__main__":
    main()
