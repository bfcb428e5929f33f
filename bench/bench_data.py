"""Moving data and reducing: cmq against raw scp / rsync / tar-over-ssh, in one run.

On 4 loopback sshd machines (127.0.0.61-64); every contender uses the same ssh options
and a persistent ControlMaster per host:

  fan-out     one 200 MB file to 4 machines at once: `cmq put` (through the Python API,
              and as the command `cmq put`) against 4 parallel scp / rsync / tar|ssh
              (rate = bytes delivered / wall time)
  shared      the same, to one absolute path that all 4 machines see on one disk (as
              an NFS home): `cmq put` against 4 parallel scp's to that path
  many files  1,000 files of 4 KiB to one machine: `cmq put -r` against rsync -a,
              tar|ssh and scp -r
  resend      a job staging the 200 MB file, twice on the same machine: bytes moved
              each time (the input cache: the second should move 0)
  reduce      1,000 `echo N` jobs with a sum reduce (a chord) against the same jobs as
              a plain group; median of 3 alternating runs

Prints each figure and the ratios; --record appends them to bench/RESULTS.md.
Usage: python bench/bench_data.py [--size-mb=200] [--files=1000] [--map=1000] [--record] [--label=TEXT]
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

from bench_jobs import report, ssh_config, timed, versions  # noqa: E402

from cmqueue.cli.demo_machines import LoopbackCluster  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402


def best(runs: list[float]) -> float:
    """Median wall time of a few runs (noisy shared machine)."""
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--map", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--label", default="", help="what the run measures (in its heading in RESULTS.md)")
    ap.add_argument("--record", action="store_true")
    opts = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cmq-bench-data-"))
    cluster = LoopbackCluster(root / "cluster", n=4, slots=4, first=61).start()
    redis_srv = RedisServer(root / "redis")
    redis_srv.start()
    config = cluster.write_inventory(root / "cmq.yaml", redis_srv.url, settings={"flower_port": 0})
    env = {**os.environ, "CMQ_CONFIG": str(config), "CMQ_HOME": str(root / "home")}
    os.environ.update(CMQ_HOME=env["CMQ_HOME"])
    cmq = [sys.executable, "-m", "cmqueue"]
    ctl = root / "ctl"
    ctl.mkdir(mode=0o700)
    cfg = ssh_config(cluster, root / "ssh_config", ctl)
    ssh = f"ssh -F {cfg}"
    hosts = [m.name for m in cluster.machines]
    work = {m.name: m.workdir for m in cluster.machines}
    big = root / "big.bin"
    with big.open("wb") as f:
        for _ in range(opts.size_mb):
            f.write(os.urandom(1 << 20))
    size = big.stat().st_size
    small = root / "small"
    small.mkdir()
    for i in range(opts.files):
        (small / f"f{i:05d}.dat").write_bytes(os.urandom(4096))
    4096 * opts.files

    def clean() -> None:
        for h in hosts:
            for name in ("dst", "jobs", "cache"):
                shutil.rmtree(work[h] / name, ignore_errors=True)
            (work[h] / "dst").mkdir()

    def fan(cmd: str) -> float:
        clean()
        return timed(" & ".join(cmd.format(h=h, w=work[h]) for h in hosts) + " & wait", shell=True)

    fanout: dict[str, list[float]] = {k: [] for k in ("cmq", "cli", "scp", "rsync", "tar")}
    shared: dict[str, list[float]] = {"cmq": [], "scp": []}
    one_disk = root / "shared"

    def clean_shared() -> None:
        shutil.rmtree(one_disk, ignore_errors=True)
        one_disk.mkdir()

    many: dict[str, list[float]] = {k: [] for k in ("cmq", "scp", "rsync", "tar")}
    resend: list[tuple[int, float, int, float]] = []
    reduce_t: dict[str, list[float]] = {"group": [], "chord": []}
    try:
        subprocess.run([*cmq, "up"], env=env, check=True, capture_output=True)
        for h in hosts:
            subprocess.run(["ssh", "-F", str(cfg), "-MNf", h], check=True)
        from cmqueue.api.cluster import Cluster

        with Cluster.from_config(str(config)) as c:
            c.wait(c.broadcast("true"))                                   # warm every worker
            for _ in range(opts.runs):
                clean()
                t0 = time.perf_counter()
                recs = c.wait(c.put(str(big), "m[1-4]", "dst/"))
                fanout["cmq"].append(time.perf_counter() - t0)
                assert all(r.state.value == "succeeded" for r in recs), [r.reason for r in recs]
                clean()
                fanout["cli"].append(timed(f"{shlex.join(cmq)} put {big} 'm[1-4]:dst/' >/dev/null", shell=True,
                                           env=env))
                fanout["scp"].append(fan(f"scp -q -F {cfg} {big} {{h}}:{{w}}/dst/"))
                fanout["rsync"].append(fan(f"rsync -a -e '{ssh}' {big} {{h}}:{{w}}/dst/"))
                fanout["tar"].append(fan(f"tar -C {root} -cf - big.bin | {ssh} {{h}} 'tar -C {{w}}/dst -xf -'"))
                clean_shared()
                t0 = time.perf_counter()
                recs = c.wait(c.put(str(big), "m[1-4]", f"{one_disk}/"))
                shared["cmq"].append(time.perf_counter() - t0)
                assert all(r.state.value == "succeeded" for r in recs), [r.reason for r in recs]
                clean_shared()
                shared["scp"].append(timed(" & ".join(f"scp -q -F {cfg} {big} {h}:{one_disk}/" for h in hosts)
                                           + " & wait", shell=True))

                clean()
                t0 = time.perf_counter()
                recs = c.wait(c.put(str(small), "m1", "dst/small", recursive=True))
                many["cmq"].append(time.perf_counter() - t0)
                assert recs[0].state.value == "succeeded", recs[0].reason
                clean()
                many["scp"].append(timed(f"scp -q -r -F {cfg} {small} m1:{work['m1']}/dst/", shell=True))
                clean()
                many["rsync"].append(timed(f"rsync -a -e '{ssh}' {small}/ m1:{work['m1']}/dst/small/", shell=True))
                clean()
                many["tar"].append(timed(f"tar -C {root} -cf - small | {ssh} m1 'tar -C {work['m1']}/dst -xf -'",
                                         shell=True))

            clean()
            first = c.submit("cmp big.bin big.bin", on="m1", puts=[str(big)]).wait()
            second = c.submit("cmp big.bin big.bin", on="m1", puts=[str(big)]).wait()
            assert first.ok and second.ok, (first.reason, second.reason)
            resend.append((first.data["staged"]["bytes"], first.data["staged"]["seconds"],
                           second.data["staged"]["bytes"], second.data["staged"]["seconds"]))

            args = list(range(opts.map))
            for _ in range(opts.runs):
                t0 = time.perf_counter()
                c.wait(c.map("echo {}", args))
                reduce_t["group"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                res = c.mapreduce("echo {}", args, reduce="sum").wait()
                reduce_t["chord"].append(time.perf_counter() - t0)
                assert res.data["value"] == sum(args), res.reason
    finally:
        subprocess.run([*cmq, "down", "--grace=2"], env=env, capture_output=True)
        for h in hosts:
            subprocess.run(["ssh", "-F", str(cfg), "-O", "exit", h], capture_output=True)
        cluster.stop()
        redis_srv.stop()
        shutil.rmtree(root, ignore_errors=True)

    mb = 1e6
    fan_rate = {k: 4 * size / best(v) / mb for k, v in fanout.items()}
    many_rate = {k: opts.files / best(v) for k, v in many.items()}
    lines = [f"fan-out: {opts.size_mb} MB file to 4 machines, MB/s delivered (median of {opts.runs}):",
             f"  cmq put (API)      {fan_rate['cmq']:8.1f}",
             f"  cmq put (CLI)      {fan_rate['cli']:8.1f}   (a new Python process, submit, wait, print)"]
    for k in ("scp", "rsync", "tar"):
        lines.append(f"  raw {k:<14} {fan_rate[k]:8.1f}   cmq/{k} = {fan_rate['cmq'] / fan_rate[k]:.2f}x"
                     f" (target >= 0.8x), CLI {fan_rate['cli'] / fan_rate[k]:.2f}x")
    shared_rate = {k: 4 * size / best(v) / mb for k, v in shared.items()}
    lines += [f"shared: the same file to 4 machines that see one directory on one disk, MB/s (median of {opts.runs}):",
              f"  cmq put (API)      {shared_rate['cmq']:8.1f}",
              f"  raw scp            {shared_rate['scp']:8.1f}   cmq/scp = "
              f"{shared_rate['cmq'] / shared_rate['scp']:.2f}x (target >= 0.8x)"]
    lines.append(f"many files: {opts.files} x 4 KiB to one machine, files/s (median of {opts.runs}):")
    lines.append(f"  cmq put -r         {many_rate['cmq']:8.1f}")
    for k in ("scp", "rsync", "tar"):
        lines.append(f"  raw {k:<14} {many_rate[k]:8.1f}   cmq/{k} = {many_rate['cmq'] / many_rate[k]:.2f}x"
                     " (target >= 0.8x)")
    b1, s1, b2, s2 = resend[0]
    lines += [f"resend: a job staging the {opts.size_mb} MB input, twice on one machine:",
              f"  first   {b1:>11,d} bytes moved, staging {s1:.2f}s",
              f"  second  {b2:>11,d} bytes moved, staging {s2:.2f}s (target 0 bytes)",
              f"reduce: {opts.map} `echo N` jobs, seconds (median of {opts.runs}):",
              f"  plain group        {best(reduce_t['group']):8.2f}",
              f"  with sum reduce    {best(reduce_t['chord']):8.2f}   overhead = "
              f"{100 * (best(reduce_t['chord']) / best(reduce_t['group']) - 1):+.1f}% (target <= +20%)"]
    v = versions()
    v["rsync"] = subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    report("bench_data.py" + (f" {opts.label}" if opts.label else ""), lines, v, opts.record)


if __name__ == "__main__":
    main()
