"""The REST API against the command line and the Python API, on the same cluster.

On 4 loopback sshd machines (127.6.0.1-4, 4 slots each), with `cmq up` and `cmq serve`:

  submit rate   N jobs of `true`, accepted per second (the time until every job is
                queued and recorded; each batch then runs to the end, untimed):
                REST one request per job and one request for all (``args``), the CLI
                one process per job (M of them) and one process for all (``:::``),
                the Python API one ``submit()`` per job and one ``map()``
  latency       ``GET /api/jobs/{id}`` of random jobs with H jobs (default 20,000) in
                the history: p50 and p99 over R requests on one keep-alive connection
                (goal: p99 <= 50 ms); ``GET /api/jobs?last=20`` likewise

Prints the table and the ratios; --record appends it to bench/RESULTS.md.
Usage: python bench/bench_serve.py [--jobs=500] [--cli-jobs=50] [--history=20000] [--requests=1000] [--record]
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_jobs import fill_history, report, versions  # noqa: E402

from cmqueue.cli.demo_machines import LoopbackCluster  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--cli-jobs", type=int, default=50)
    ap.add_argument("--history", type=int, default=20000)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--record", action="store_true")
    opts = ap.parse_args()
    import httpx

    root = Path(tempfile.mkdtemp(prefix="cmq-bench-serve-"))
    cluster = LoopbackCluster(root / "cluster", n=4, slots=4, first=0, subnet="127.6").start()
    redis_srv = RedisServer(root / "redis")
    redis_srv.start()
    config = cluster.write_inventory(root / "cmq.yaml", redis_srv.url, settings={"flower_port": 0})
    env = {**os.environ, "CMQ_CONFIG": str(config), "CMQ_HOME": str(root / "home")}
    os.environ.update({"CMQ_CONFIG": str(config), "CMQ_HOME": str(root / "home")})
    entry = Path(sys.executable).with_name("cmq")
    cmq = shlex.quote(str(entry))
    n = opts.jobs
    rate: dict[str, float] = {}
    server = None
    try:
        subprocess.run(f"{cmq} up", shell=True, env=env, check=True, capture_output=True)
        token = subprocess.run(f"{cmq} serve token create bench", shell=True, env=env, check=True,
                               capture_output=True, text=True).stdout.strip()
        port = free_port()
        server = subprocess.Popen([str(entry), "serve", f"--port={port}"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                           timeout=600)
        deadline = time.monotonic() + 30
        while True:
            try:
                if api.get("/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("cmq serve did not answer")
            time.sleep(0.1)
        from cmqueue.api.cluster import Cluster

        c = Cluster.from_config(str(config))

        def settle(ids: list[str]) -> None:
            records = c.wait(ids, timeout=600)
            if len(records) != len(ids) or any(r.state.value != "succeeded" for r in records):
                raise SystemExit("some benchmark jobs did not succeed")

        api.post("/api/jobs", json={"command": "true", "all": True, "wait": 60})           # warm every path
        t0 = time.perf_counter()
        ids = [api.post("/api/jobs", json={"command": "true"}).json()["jobs"][0]["id"] for _ in range(n)]
        rate["REST, a request per job"] = n / (time.perf_counter() - t0)
        settle(ids)
        t0 = time.perf_counter()
        ids = [j["id"] for j in api.post("/api/jobs", json={"command": "true",
                                                            "args": [str(i) for i in range(n)]}).json()["jobs"]]
        rate["REST, one request"] = n / (time.perf_counter() - t0)
        settle(ids)
        t0 = time.perf_counter()
        ids = [c.submit("true").id for _ in range(n)]
        rate["Python, submit() per job"] = n / (time.perf_counter() - t0)
        settle(ids)
        t0 = time.perf_counter()
        ids = [j.id for j in c.map("true {}", range(n))]
        rate["Python, one map()"] = n / (time.perf_counter() - t0)
        settle(ids)
        t0 = time.perf_counter()
        out = subprocess.run(f"{cmq} submit --json true ::: $(seq {n})", shell=True, env=env, check=True,
                             capture_output=True, text=True).stdout
        rate["CLI, one command"] = n / (time.perf_counter() - t0)
        settle([j.split('"')[0] for j in out.split('"id": "')[1:]])
        m = opts.cli_jobs
        t0 = time.perf_counter()
        ids = [subprocess.run(f"{cmq} submit true", shell=True, env=env, check=True, capture_output=True,
                              text=True).stdout.strip() for _ in range(m)]
        rate["CLI, a command per job"] = m / (time.perf_counter() - t0)
        settle(ids)

        fill_history(cmq, env, opts.history)                # a history of real jobs
        every = [r.id for r in c.store.jobs(last=opts.history)]
        sample = random.Random(7).choices(every, k=opts.requests)
        one = []
        for job in sample:
            t0 = time.perf_counter()
            r = api.get(f"/api/jobs/{job}")
            one.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
        listing = []
        for _ in range(max(50, opts.requests // 10)):
            t0 = time.perf_counter()
            api.get("/api/jobs", params={"last": 20})
            listing.append((time.perf_counter() - t0) * 1000)
        total = len(every)
        c.close()
        api.close()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        subprocess.run(f"{cmq} down --grace=2", shell=True, env=env, capture_output=True)
        cluster.stop()
        redis_srv.stop()
        shutil.rmtree(root, ignore_errors=True)

    lines = [f"jobs accepted per second ({n} jobs of `true`; the CLI one by one: {opts.cli_jobs}), 4 machines:"]
    base = rate["REST, a request per job"]
    for name, per_s in rate.items():
        lines.append(f"  {name:<28} {per_s:9.0f} /s   ({per_s / base:.2f}x REST one by one)")
    lines.append(f"GET /api/jobs/{{id}} with {total:,} jobs in the history, {opts.requests} requests, ms:")
    lines.append(f"  p50 {statistics.median(one):6.1f}   p99 {percentile(one, 99):6.1f}   (goal: p99 <= 50 ms)")
    lines.append(f"GET /api/jobs?last=20, ms:  p50 {statistics.median(listing):6.1f}   "
                 f"p99 {percentile(listing, 99):6.1f}")
    v = versions()
    import fastapi
    import uvicorn

    v.update({"fastapi": fastapi.__version__, "uvicorn": uvicorn.__version__})
    report("bench_serve.py", lines, v, opts.record)


if __name__ == "__main__":
    main()
