"""The cost of one job, counted: Redis commands by process and command, Redis fsyncs, and
the history store's disk writes, for N `true` jobs from `cmq submit --wait` to the
recorded result.

On 4 loopback sshd machines x 4 slots with a private Redis (AOF, ``appendfsync`` as asked,
``always`` by default, as `cmq up` starts it):

  commands   every command Redis executed, read with MONITOR, charged to the process
             whose connection sent it (worker, recorder, submit; found by the client's
             port) and divided by N
  fsyncs     fdatasync/fsync calls of redis-server (strace -c) and of cmq's processes
             (the history store's SQLite), divided by N
  writes     Redis commands that change data (each waits for the AOF fsync of its
             event-loop turn under ``always``)

MONITOR and strace slow Redis down: this script counts, bench_jobs.py times.
Usage: python bench/budget.py [--jobs=1000] [--fsync=always] [--record] [--label=TEXT]
Needs strace and root (or ptrace rights over the processes) for the fsync counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_jobs import four_by_four, installed_cmq, report, versions  # noqa: E402

#: Commands that change data (and so are written to the AOF).
WRITES = {"lpush", "rpush", "brpop", "lpop", "rpop", "set", "del", "hset", "hdel", "hmset", "zadd", "zrem",
          "xadd", "xtrim", "expire", "pexpire", "sadd", "srem", "incr", "incrby", "evalsha", "eval",
          "multi", "exec", "setex", "hincrby", "lrem", "getdel", "publish", "fcall"}
MONITOR_LINE = re.compile(r'^[\d.]+ \[\d+ (?P<addr>[^\]]+)\] "(?P<cmd>[^"]+)"')


class Ports:
    """Which process holds each local TCP port that talks to Redis (sampled every 20 ms,
    so short-lived clients are caught)."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.owner: dict[int, str] = {}
        self.cpu: dict[int, tuple[str, float]] = {}     # pid -> (kind, CPU seconds at the last sample)
        self.base: dict[int, float] = {}                 # pid -> CPU seconds when counting began
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Ports:
        """Start sampling."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (waits up to 5 s)."""
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        self._sample_cpu(first=True)
        while not self._stop.wait(0.02):
            self._sample_cpu()
            for c in psutil.net_connections(kind="tcp4"):
                if c.raddr and c.raddr.port == self.redis_port and c.pid and c.laddr.port not in self.owner:
                    self.owner[c.laddr.port] = kind_of(c.pid)


    def _sample_cpu(self, first: bool = False) -> None:
        for p in psutil.process_iter(["cmdline", "name", "cpu_times"]):
            t = p.info["cpu_times"]
            if t is None:
                continue
            used = t.user + t.system
            if p.pid not in self.cpu:
                self.base[p.pid] = used if first else 0.0
            self.cpu[p.pid] = (cpu_kind(p.info["name"] or "", p.info["cmdline"] or []), used)

    def cpu_by_kind(self) -> dict[str, float]:
        """CPU seconds used since counting began, by kind of process."""
        out: dict[str, float] = collections.defaultdict(float)
        for pid, (kind, used) in self.cpu.items():
            out[kind] += used - self.base.get(pid, 0.0)
        return out


def cpu_kind(name: str, cmdline: list[str]) -> str:
    """The part a process plays, for the CPU table."""
    cmd = " ".join(cmdline)
    if name == "redis-server":
        return "redis"
    if "json.loads(sys.stdin" in cmd:
        return "machine sessions"
    if name in ("sh", "true", "bash"):
        return "the jobs' shells"
    if name == "sshd":
        return "sshd"
    if name == "ssh":
        return "ssh clients"
    if "cmqueue" in cmd:
        return kind_of_cmd(cmd)
    if name in ("strace", "redis-cli") or "budget.py" in cmd:
        return "measuring"
    return "other"


def kind_of_cmd(cmd: str) -> str:
    """worker, recorder or submit, from a cmq process's command line."""
    for kind in ("worker", "recorder", "flower"):
        if f" {kind}" in cmd:
            return kind
    return "submit"


def kind_of(pid: int) -> str:
    """worker, recorder, launcher (a command it runs) or client, from the command line."""
    try:
        return kind_of_cmd(" ".join(psutil.Process(pid).cmdline()))
    except psutil.Error:
        return "?"


def strace(pids: list[int], out: Path) -> subprocess.Popen:
    """strace -c -f counting fsync and fdatasync of ``pids``."""
    argv = ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(out)]
    for p in pids:
        argv += ["-p", str(p)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fsyncs(path: Path) -> int:
    """Calls counted in a strace -c summary."""
    total = 0
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in ("fsync", "fdatasync") and len(parts) >= 4:
            total += int(parts[3])
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--fsync", default="always")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--label", default="", help="what the run measures (printed and recorded)")
    opts = ap.parse_args()
    if not shutil.which("strace"):
        raise SystemExit("strace is needed: apt-get install strace")
    root = Path(tempfile.mkdtemp(prefix="cmq-budget-"))
    cluster, srv, config, env = four_by_four(root, opts.fsync)
    cmq = [str(installed_cmq())]
    n = opts.jobs
    try:
        subprocess.run([*cmq, "up"], env=env, check=True, capture_output=True)
        subprocess.run([*cmq, "submit", "--wait", "--all", "true"], env=env, check=True, capture_output=True)
        state = json.loads((root / "home" / "services.json").read_text())
        cmq_pids = [rec["pid"] for rec in (state.get("workers") or {}).values()]
        cmq_pids += [state[k]["pid"] for k in ("recorder", "launcher") if (state.get(k) or {}).get("pid")]
        ports = Ports(srv.port).start()              # pass 1: count, under MONITOR and strace
        mon_out = root / "monitor.txt"
        with mon_out.open("w") as f:                       # the password goes by environment
            monitor = subprocess.Popen(["redis-cli", "-p", str(srv.port), "MONITOR"], stdout=f,
                                       env={**os.environ, "REDISCLI_AUTH": srv.password})
        redis_trace = strace([srv.proc.pid], root / "redis.strace")
        cmq_trace = strace(cmq_pids, root / "cmq.strace") if cmq_pids else None
        time.sleep(1)                                    # strace attached
        submit = f"{' '.join(cmq)} submit --wait true ::: $(seq {n}) >/dev/null"
        subprocess.run(submit, shell=True, env=env, check=True)
        time.sleep(1)                                    # the recorder's last batch
        for t in (redis_trace, cmq_trace):
            if t is not None:
                t.send_signal(signal.SIGINT)
                t.wait(10)
        monitor.terminate()
        monitor.wait(10)
        ports.stop()
        plain = Ports(srv.port).start()              # pass 2: CPU and time, without MONITOR and strace
        time.sleep(0.5)
        t0 = time.perf_counter()
        subprocess.run(submit, shell=True, env=env, check=True)
        took = time.perf_counter() - t0
        time.sleep(1)
        plain.stop()
    finally:
        subprocess.run([*cmq, "down", "--grace=2"], env=env, capture_output=True)
        cluster.stop()
        srv.stop()

    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in mon_out.read_text(errors="replace").splitlines():
        m = MONITOR_LINE.match(line)
        if not m:
            continue
        port = int(m["addr"].rsplit(":", 1)[1]) if ":" in m["addr"] else 0
        kind = ports.owner.get(port, "lua" if m["addr"] == "lua" else "?")
        counts[(kind, m["cmd"].lower())] += 1
    redis_fsyncs = fsyncs(root / "redis.strace")
    cmq_fsyncs = fsyncs(root / "cmq.strace") if (root / "cmq.strace").exists() else 0
    shutil.rmtree(root, ignore_errors=True)

    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for (kind, cmd), c in counts.items():
        by_kind[kind][cmd] += c
    out = [f"per job, {n} x `true` on 4 machines x 4 slots, redis appendfsync {opts.fsync}"
           + (f" ({opts.label})" if opts.label else "") + ":"]
    total = writes = 0.0
    for kind in sorted(by_kind):
        if kind == "lua":
            continue
        cmds = by_kind[kind]
        k_total = sum(cmds.values()) / n
        k_writes = sum(c for cmd, c in cmds.items() if cmd in WRITES) / n
        total += k_total
        writes += k_writes
        top = ", ".join(f"{cmd} {c / n:.2f}" for cmd, c in cmds.most_common(8) if c / n >= 0.01)
        out.append(f"  {kind:9} {k_total:6.2f} commands ({k_writes:5.2f} writes): {top}")
    lua = by_kind.get("lua", collections.Counter())
    if lua:
        out.append("  inside Lua " + ", ".join(f"{cmd} {c / n:.2f}" for cmd, c in lua.most_common(8)))
    out.append(f"  all       {total:6.2f} commands ({writes:5.2f} writes)")
    out.append(f"  redis fsyncs {redis_fsyncs / n:6.2f}   cmq processes' fsyncs {cmq_fsyncs / n:6.2f}")
    cpu = plain.cpu_by_kind()
    shares = [f"{k} {v * 1000 / n:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v * 1000 / n >= 0.05]
    out.append(f"  again without MONITOR and strace (CPU sampled every 20 ms): {n / took:.0f} jobs/s")
    out.append("  CPU ms per job: " + ", ".join(shares))
    report("budget.py" + (f" {opts.label}" if opts.label else ""), out, versions(), opts.record)


if __name__ == "__main__":
    main()
