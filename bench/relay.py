"""Relay fan-out: one file to N machines when the controller's link is the slow one, for
docs/transfers.md (the section between ``<!-- relay -->`` markers).

    .venv/bin/python bench/relay.py                 # print the figures (~15 min)
    .venv/bin/python bench/relay.py --write         # and append them to bench/RESULTS.md
                                                    # and rewrite the section of docs/transfers.md
    .venv/bin/python bench/relay.py --machines 4 --size 20MB --headline-size 0 --repeats 1   # a smoke run

The fleet is tests/support/topology.py: machines in network namespaces behind a bridge,
the controller's veth shaped to 100 Mbit/s both ways (tc tbf), machine-to-machine links
unshaped; an sshd in every namespace, a private redis-server, `cmq up`. Contenders, taking
turns within each round, --repeats rounds:

  one scp              the file to one machine (the time the link needs for one copy)
  scp to all at once   one scp per machine, started together, as a user would
  cmq put --relay=off  every copy over the controller's link (plain `cmq put` while cmq
                       has no --relay)
  cmq put --relay=X    for X in --relays (default auto, chain, tree:2; --headline-relays,
                       default auto): the controller sends each byte once and the machines
                       pass it on

scp goes over one persistent ControlMaster per machine (opened before timing), as cmq's
own ssh sessions do. After every cmq run each copy's SHA-256 on every machine is checked
(one filesystem holds all work directories); after every scp each copy's size. Each figure
is the median of the rounds, with the spread (min-max) and the ratio to one scp.

The curve: --machines (default 4,8,16,32) at --size (default 10MB). The headline: one
--headline-size file (default 1GB) to --headline-machines (default 16), one scp against
the relay variants; the controller-bound variants would take machines x one scp each
(16 x 84 s at 1 GB), so they run there only with --headline-baselines. By default the
curve's rounds take ~7 minutes and the headline's ~9 (the relay's share is a guess until
it lands).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.bench_jobs import report, ssh_config, versions  # noqa: E402
from bench.reliability import measured, replace_section, run_cmq  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.topology import Topology, available  # noqa: E402

DOC = ROOT / "docs" / "transfers.md"
#: Relay modes tried after --relay=off (each only once `cmq put` has --relay).
RELAYS = ("auto", "chain", "tree:2")
ONE, ALL, OFF = "one scp", "scp to all at once", "cmq put --relay=off"
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str) -> int:
    """Bytes in ``text``: 100MB, 1GB, 512MiB (decimal units unless ...iB), or 0."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMG]I?B|B)?\s*", text.upper())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (say 100MB, 1GB)")
    return int(float(m[1]) * UNITS[m[2] or ""])


def human(size: int) -> str:
    """``size`` bytes as the options say it (1 GB, 10 MB)."""
    for unit in ("GB", "MB", "KB"):
        if size >= UNITS[unit] and size % UNITS[unit] == 0:
            return f"{size // UNITS[unit]} {unit}"
    return f"{size:,} bytes"


def payload(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    """The SHA-256 of the file at ``path``."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def revision() -> str:
    """The commit cmq's code is at (``+changes`` when cmqueue/ differs from it)."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "cmqueue"],
                           capture_output=True, text=True).stdout.strip()
    return (head.stdout.strip() or "an unknown commit") + ("+changes" if dirty else "")


@dataclass
class Case:
    """One file size and machine count: every contender's times, and its failures."""

    size: int
    machines: int
    times: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


class Fleet:
    """The topology, Redis and `cmq up`, the scp ssh config, and the contenders."""

    def __init__(self, root: Path, machines: int, rate_mbit: float) -> None:
        self.root = root
        self.topo = Topology(root / "net", machines=machines, rate_mbit=rate_mbit, slots=2)
        self.redis = RedisServer(root / "redis")
        self.env: dict[str, str] = {}
        self.cfg = root / "ssh_config"
        self.relay_option = False

    def start(self) -> Fleet:
        """Build and start everything (cmq's masters and scp's masters open)."""
        self.topo.start()
        self.redis.start()
        cluster = self.topo.cluster
        config = cluster.write_inventory(self.root / "cmq.yaml", self.redis.url, settings={"flower_port": 0})
        env = {k: v for k, v in os.environ.items() if k != "CMQ_BROKER"}
        self.env = {**env, "CMQ_CONFIG": str(config), "CMQ_HOME": str(self.root / "home")}
        self.cmq("up", timeout=600)
        self.cmq("submit", "--wait", "--all", "true", timeout=600)            # every worker warm
        ctl = self.root / "ctl"
        ctl.mkdir(mode=0o700)
        ssh_config(cluster, self.cfg, ctl)
        for m in cluster.machines:
            subprocess.run(["ssh", "-F", str(self.cfg), "-MNf", m.name], check=True, timeout=60)
        self.relay_option = "--relay" in self.cmq("put", "--help").stdout
        return self

    def stop(self) -> None:
        """`cmq down`, the scp masters, Redis, the sshd's and the namespaces."""
        try:
            if self.env:
                subprocess.run([sys.executable, "-m", "cmqueue", "down", "--grace=2"], env=self.env,
                               capture_output=True, timeout=120)
            for m in self.topo.cluster.machines if self.topo.cluster else []:
                subprocess.run(["ssh", "-F", str(self.cfg), "-O", "exit", m.name], capture_output=True, timeout=30)
        finally:
            self.redis.stop()
            self.topo.stop()

    def cmq(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run ``cmq ARGS``; SystemExit with its output when it fails."""
        return run_cmq(self.env, *args, timeout=timeout)

    def names(self, n: int) -> list[str]:
        """The first ``n`` machines."""
        return [m.name for m in self.topo.cluster.machines[:n]]

    def inbox(self, name: str) -> Path:
        """Where the copies go on ``name``: in/ under its work directory."""
        return self.topo.cluster.machine(name).workdir / "in"

    def clean(self) -> None:
        """Empty every machine's in/ (an empty one stays, for scp to write into)."""
        for m in self.topo.cluster.machines:
            shutil.rmtree(self.inbox(m.name), ignore_errors=True)
            self.inbox(m.name).mkdir()

    def scp(self, src: Path, n: int, timeout: float) -> float:
        """Seconds for ``n`` scp's of ``src`` started together, one to each machine."""
        self.clean()
        argv = [["scp", "-q", "-F", str(self.cfg), str(src), f"{h}:{self.inbox(h)}/"] for h in self.names(n)]
        t0 = time.perf_counter()
        procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for a in argv]
        codes = [p.wait(timeout=timeout) for p in procs]
        took = time.perf_counter() - t0
        for p, code in zip(procs, codes, strict=True):
            if code != 0:
                raise RuntimeError(f"scp exited {code}: {p.stderr.read().decode()[-500:]}")
        for h in self.names(n):
            got = (self.inbox(h) / src.name).stat().st_size
            if got != src.stat().st_size:
                raise RuntimeError(f"scp: {h} has {got:,} bytes, not {src.stat().st_size:,}")
        return took

    def put(self, src: Path, n: int, relay: str | None, digest: str, timeout: float) -> float:
        """Seconds for `cmq put [--relay=RELAY] SRC 'm[1-n]:in/'`; then every copy's SHA-256."""
        self.clean()
        argv = [sys.executable, "-m", "cmqueue", "put", *([f"--relay={relay}"] if relay else []),
                str(src), f"m[1-{n}]:in/"]
        t0 = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
        took = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv[3:])} exited {r.returncode}: {(r.stderr or r.stdout)[-800:]}")
        copies = [self.inbox(h) / src.name for h in self.names(n)]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:       # hashlib frees the GIL
            sums = list(pool.map(lambda p: sha256(p) if p.is_file() else "", copies))
        bad = [h for h, got in zip(self.names(n), sums, strict=True) if got != digest]
        if bad:
            raise RuntimeError(f"{shlex.join(argv[3:])}: wrong or missing copy on {', '.join(bad)}")
        return took


def contenders(fleet: Fleet, relays: list[str], baselines: bool, which: tuple[str, ...] = ("all", "off")) -> list[str]:
    """The contenders' names for a case, in the order they take turns (``which`` of the
    controller-bound baselines: scp to all, cmq put --relay=off)."""
    off = OFF if fleet.relay_option else "cmq put (no --relay yet)"
    names = [ONE, *([x for k, x in (("all", ALL), ("off", off)) if k in which] if baselines else [])]
    return names + ([f"cmq put --relay={r}" for r in relays] if fleet.relay_option else [])


def measure(fleet: Fleet, case: Case, src: Path, digest: str, name: str, rate_mbit: float) -> None:
    """One timed run of contender ``name`` on ``case``; a failure is recorded, not raised."""
    if name in case.failed:
        return
    link = case.size * 8 / ((rate_mbit or 1000) * 1e6)     # unshaped: time it as 1 Gbit/s
    timeout = 300 + 3 * link * (case.machines if name in (ALL, OFF) or "no --relay" in name else 2)
    try:
        if name == ONE:
            took = fleet.scp(src, 1, timeout)
        elif name == ALL:
            took = fleet.scp(src, case.machines, timeout)
        else:
            relay = name.split("--relay=")[1] if "--relay=" in name else None
            took = fleet.put(src, case.machines, relay, digest, timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        case.failed[name] = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
        print(f"  {human(case.size)} x {case.machines}: {name}: FAILED {case.failed[name]}", file=sys.stderr)
        return
    case.times.setdefault(name, []).append(took)
    print(f"  {human(case.size)} x {case.machines}: {name}: {took:.2f} s", file=sys.stderr, flush=True)


def table(cases: list[Case], names: list[str], lead: str) -> list[str]:
    """A markdown table: a row per case, a column per contender (median, spread, x one scp)."""
    rows = [lead, "", "| machines | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for case in cases:
        one = statistics.median(case.times[ONE]) if case.times.get(ONE) else None
        cells = []
        for name in names:
            got = case.times.get(name)
            if name in case.failed:
                cells.append("failed")
            elif not got:
                cells.append("not run")
            else:
                med = statistics.median(got)
                spread = f" ({min(got):.1f}-{max(got):.1f})" if len(got) > 1 else ""
                ratio = f", {med / one:.2f}x" if one and name != ONE else ""
                cells.append(f"{med:.1f} s{spread}{ratio}")
        rows.append(f"| {case.machines} | " + " | ".join(cells) + " |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", default="4,8,16,32", help="machine counts of the curve (comma-separated)")
    ap.add_argument("--size", type=parse_size, default=parse_size("10MB"), help="file size of the curve")
    ap.add_argument("--headline-size", type=parse_size, default=parse_size("1GB"), help="0: no headline")
    ap.add_argument("--headline-machines", type=int, default=16)
    ap.add_argument("--headline-baselines", action="store_true",
                    help="also scp to all and --relay=off in the headline (machines x one scp each)")
    ap.add_argument("--relays", default=",".join(RELAYS), help="relay modes after off (comma-separated)")
    ap.add_argument("--headline-relays", default="auto", help="relay modes of the headline")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; each contender runs once a round")
    ap.add_argument("--baselines", default="all,off",
                    help="the curve's controller-bound contenders: all (scp to all at once), off (cmq put "
                         "--relay=off); comma-separated, empty for none")
    ap.add_argument("--rate", type=float, default=100, help="the controller link's rate, Mbit/s (0: unshaped)")
    ap.add_argument("--record", action="store_true", help="append to bench/RESULTS.md only (a run beside the "
                    "docs' figures, such as the 64-machine one)")
    ap.add_argument("--write", action="store_true", help="append to bench/RESULTS.md and rewrite the section "
                    "of docs/transfers.md")
    opts = ap.parse_args()
    if not available():
        raise SystemExit("needs root, iproute2 (ip, tc) and sshd: the fleet is network namespaces")
    counts = sorted({int(c) for c in opts.machines.split(",") if c.strip()})
    relays = [r.strip() for r in opts.relays.split(",") if r.strip()]
    head_relays = [r.strip() for r in opts.headline_relays.split(",") if r.strip()]
    headline = Case(opts.headline_size, opts.headline_machines) if opts.headline_size else None
    most = max([*counts, *([headline.machines] if headline else [])])
    stamp = measured(("python", "celery", "redis-server", "openssh", "cpus")) + f", cmq at {revision()}"
    with tempfile.TemporaryDirectory(prefix="cmq-relay-") as tmp:
        root = Path(tmp)
        curve_src, head_src = root / "curve.bin", root / "headline.bin"
        curve_digest = payload(curve_src, opts.size)
        head_digest = payload(head_src, headline.size) if headline else ""
        fleet = Fleet(root, most, opts.rate)
        try:
            t0 = time.monotonic()
            fleet.start()
            print(f"{most} machines up in {time.monotonic() - t0:.0f} s; cmq put --relay: "
                  f"{'yes' if fleet.relay_option else 'not yet'}", file=sys.stderr)
            curve = [Case(opts.size, n) for n in counts]
            curve_names = contenders(fleet, relays, baselines=True,
                                     which=tuple(b.strip() for b in opts.baselines.split(",") if b.strip()))
            head_names = contenders(fleet, head_relays, baselines=opts.headline_baselines)
            for rep in range(opts.repeats):
                print(f"round {rep + 1} of {opts.repeats}", file=sys.stderr)
                for case in curve:
                    for name in curve_names:
                        measure(fleet, case, curve_src, curve_digest, name, opts.rate)
                if headline:
                    for name in head_names:
                        measure(fleet, headline, head_src, head_digest, name, opts.rate)
        finally:
            fleet.stop()
    link = (f"machines in network namespaces behind one {opts.rate:g} Mbit/s controller link (tc tbf)" if opts.rate
            else "machines in network namespaces behind one unshaped controller link (veth)")
    lines = table(curve, curve_names, f"A {human(opts.size)} file to N {link}: seconds, median of "
                  f"{opts.repeats} rounds taking turns (min-max), and the ratio to one scp.")
    if headline:
        lines += ["", *table([headline], head_names, f"The headline: {human(headline.size)} to "
                                                     f"{headline.machines} machines, the same way.")]
    if not fleet.relay_option:
        lines += ["", "cmq put has no --relay yet: the relay variants were not run."]
    lines += ["", stamp + "."]
    failed = [f"{human(c.size)} x {c.machines}, {n}: {why}" for c in [*curve, *([headline] if headline else [])]
              for n, why in c.failed.items()]
    if failed:
        print("\n".join(lines))
        print("FAILED:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    args = " ".join(a for a in sys.argv[1:] if a not in ("--write", "--record"))
    report(f"relay.py{' ' + args if args else ''}", lines, versions(), record=opts.write or opts.record)
    if opts.write:
        text = DOC.read_text() if DOC.exists() else ""
        if "<!-- relay -->" in text and "<!-- /relay -->" in text:
            DOC.write_text(replace_section(text, "relay", lines))
            print(f"wrote {DOC} and bench/RESULTS.md")
        else:
            print(f"{DOC}: no <!-- relay --> ... <!-- /relay --> markers; wrote bench/RESULTS.md only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
