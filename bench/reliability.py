"""The figures of docs/reliability.md, made by one command.

    .venv/bin/python bench/reliability.py            # print them
    .venv/bin/python bench/reliability.py --write    # and rewrite the tables in docs/reliability.md

Faults: runs tests/integration/queue/test_fault_figures.py (each fault on a loopback cluster,
each job's starts counted on the machines) and tabulates what became of the jobs.
Soak: 20,000 short jobs over 4 loopback machines x 4 slots (--soak-machines,
--soak-slots), submitted in rounds; after
5k, 10k and 20k it reads the memory of every cmq process (resident now and peak), times
`cmq status`, and checks that the history accounts for every job.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.bench_jobs import versions  # noqa: E402
from cmqueue.cli.demo_machines import LoopbackCluster  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"


def run_faults(module: str = "tests/integration/queue/test_fault_figures.py") -> list[dict]:
    """Run the fault tests of ``module`` with figures on; returns their tallies."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        out = Path(f.name)
    env = {**os.environ, "CMQ_FAULT_FIGURES": str(out)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0",
                        module], cwd=ROOT, env=env)
    tallies = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    out.unlink()
    if r.returncode != 0:
        print(f"warning: some fault tests failed (exit {r.returncode}); their rows may be missing",
              file=sys.stderr)
    return tallies


def faults_table(tallies: list[dict]) -> list[str]:
    """Markdown rows for the fault tallies."""
    rows = ["| fault | accepted | succeeded | failed | ran once | ran twice (reported by cmq) | lost | took "
            "| recovery |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in tallies:
        recovery = f"{t['recovery']} s" if t.get("recovery") is not None else "-"
        rows.append(f"| {t['fault']} | {t['accepted']:,} | {t['succeeded']:,} | {t['failed']:,} | "
                    f"{t['ran_once']:,} | {t['ran_twice']} ({t['reported']}) | {t['lost']} | {t['seconds']} s "
                    f"| {recovery} |")
    return rows


def memory_kib(pid: int) -> tuple[int, int]:
    """(resident now, peak resident) of ``pid`` in KiB, from /proc."""
    text = Path(f"/proc/{pid}/status").read_text()
    field = {k: int(v.split()[0]) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(.+)$", text, re.M)}
    return field["VmRSS"], field["VmHWM"]


def timed_median(argv: list[str], env: dict, runs: int = 3) -> float:
    """Median wall time of ``argv`` over ``runs`` runs."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def submit_peak_kib(argv: list[str], env: dict) -> tuple[str, int]:
    """Run a `cmq submit --json`; returns (its batch id, its peak resident KiB)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read()
    proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"cmq submit exited {proc.returncode}")
    return json.loads(out)["batch"], usage.ru_maxrss


def soak(total: int, machines: int = 4, slots: int = 4) -> list[str]:
    """Run the soak; returns markdown lines."""
    root = Path(tempfile.mkdtemp(prefix="cmq-soak-"))
    cluster = LoopbackCluster(root / "cluster", n=machines, slots=slots, first=0, subnet="127.2").start()
    redis_srv = RedisServer(root / "redis")
    redis_srv.start()
    config = cluster.write_inventory(root / "cmq.yaml", redis_srv.url, settings={"flower_port": 0})
    home = root / "home"
    env = {**os.environ, "CMQ_CONFIG": str(config), "CMQ_HOME": str(home)}
    env.pop("CMQ_BROKER", None)
    cmq = [sys.executable, "-m", "cmqueue"]
    checkpoints = [c for c in (total // 4, total // 2, total) if c]
    rows = []
    batches: list[str] = []
    done = 0
    submit_peak = 0
    t0 = time.monotonic()
    try:
        subprocess.run([*cmq, "up"], env=env, check=True, capture_output=True)
        services = json.loads((home / "services.json").read_text())
        procs = {f"worker {name}": rec["pid"] for name, rec in sorted(services["workers"].items())}
        procs["recorder"] = services["recorder"]["pid"]
        for mark in checkpoints:
            args = [str(i) for i in range(done, mark)]
            batch, peak = submit_peak_kib([*cmq, "submit", "--json", "true", ":::", *args], env)
            submit_peak = max(submit_peak, peak)
            batches.append(batch)
            subprocess.run([*cmq, "wait", "--timeout=900", batch], env=env, check=True, capture_output=True)
            done = mark
            elapsed = time.monotonic() - t0
            states: dict[str, int] = {}
            for b in batches:
                out = subprocess.run([*cmq, "status", "--json", b], env=env, check=True,
                                     capture_output=True, text=True).stdout
                for rec in json.loads(out):
                    states[rec["state"]] = states.get(rec["state"], 0) + 1
            mem = {name: memory_kib(pid) for name, pid in procs.items()}
            status_all = timed_median([*cmq, "status"], env)
            status_batch = timed_median([*cmq, "status", batch], env)
            rows.append((mark, elapsed, states, mem, status_all, status_batch))
            print(f"{mark:,} jobs: {elapsed:.0f} s, states {states}, status {status_all:.2f} s", flush=True)
    finally:
        subprocess.run([*cmq, "down", "--grace=2"], env=env, capture_output=True)
        cluster.stop()
        redis_srv.stop()
    names = list(rows[0][3]) if rows else []
    lines = [f"{total:,} `true` jobs on {machines} loopback machines x {slots} slots, submitted in rounds.", "",
             "| after | " + " | ".join(f"{m:,} jobs" for m, *_ in rows) + " |",
             "|---|" + "---:|" * len(rows)]
    lines.append("| time since the first submit | " + " | ".join(f"{r[1]:.0f} s" for r in rows) + " |")
    lines.append("| jobs in history: succeeded / other | "
                 + " | ".join(f"{r[2].get('succeeded', 0):,} / {sum(r[2].values()) - r[2].get('succeeded', 0)}"
                              for r in rows) + " |")
    for name in names:
        lines.append(f"| {name}: resident (peak), MiB | "
                     + " | ".join(f"{r[3][name][0] / 1024:.0f} ({r[3][name][1] / 1024:.0f})" for r in rows) + " |")
    lines.append("| `cmq status` (median of 3) | " + " | ".join(f"{r[4]:.2f} s" for r in rows) + " |")
    lines.append("| `cmq status BATCH` of the last round | " + " | ".join(f"{r[5]:.2f} s" for r in rows) + " |")
    lines.append(f"\nPeak resident of a `cmq submit` of up to {total // 2:,} jobs: {submit_peak / 1024:.0f} MiB.")
    return lines


def replace_section(text: str, name: str, body: list[str]) -> str:
    """Replace what is between ``<!-- name -->`` and ``<!-- /name -->`` in ``text``."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if start not in text or end not in text:
        raise SystemExit(f"{DOC}: markers {start} ... {end} are missing")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + "\n" + "\n".join(body) + "\n" + end + tail


def run_cmq(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``cmq ARGS`` with ``env``; SystemExit with its output when it fails."""
    r = subprocess.run([sys.executable, "-m", "cmqueue", *args], capture_output=True, text=True, env=env,
                       timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"cmq {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def measured(keys: tuple[str, ...]) -> str:
    """``Measured DATE with python X, ...``: the date and the versions named by ``keys``."""
    v = versions()
    return f"Measured {time.strftime('%Y-%m-%d')} with " + ", ".join(f"{k} {v[k]}" for k in keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--soak", type=int, default=20000, help="jobs in the soak (0: none)")
    ap.add_argument("--soak-machines", type=int, default=4, help="machines in the soak")
    ap.add_argument("--soak-slots", type=int, default=4, help="slots of each machine in the soak")
    ap.add_argument("--no-faults", action="store_true", help="skip the fault tests")
    ap.add_argument("--write", action="store_true", help="rewrite the tables in docs/reliability.md")
    opts = ap.parse_args()
    stamp = measured(("python", "celery", "kombu", "redis-server", "openssh", "cpus"))
    text = DOC.read_text()
    if not opts.no_faults:
        table = faults_table(run_faults())
        print("\n".join(table))
        text = replace_section(text, "faults", [*table, "", stamp + "."])
    if opts.soak:
        lines = soak(opts.soak, opts.soak_machines, opts.soak_slots)
        print("\n".join(lines))
        text = replace_section(text, "soak", [*lines, "", stamp + "."])
    if opts.write:
        DOC.write_text(text)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
