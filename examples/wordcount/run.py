"""Word counts over a text corpus: split it into shards, stage one shard and count.py
into each job's directory, count on the machines, reduce the JSON counts to one.

    .venv/bin/python examples/wordcount/run.py                       # a loopback cluster of its own
    .venv/bin/python examples/wordcount/run.py --config "$CMQ_CONFIG" # the demo kept by `cmq demo --keep`
    .venv/bin/python examples/wordcount/run.py --config cmq.yaml     # your machines (cmq up first)

The corpus defaults to the licence texts Debian ships (/usr/share/common-licenses); give
your own files with --corpus. The result is checked against a count done here.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


def split(files: list[str], shards: int, into: Path) -> list[Path]:
    """The corpus's lines dealt round-robin into ``shards`` files."""
    lines = [ln for f in files for ln in Path(f).read_text(encoding="utf-8", errors="replace").splitlines()]
    outs = [into / f"shard-{i:03d}.txt" for i in range(shards)]
    for i, out in enumerate(outs):
        out.write_text("\n".join(lines[i::shards]) + "\n", encoding="utf-8")
    return outs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="your inventory (its stack started with `cmq up`); default: loopback")
    ap.add_argument("--corpus", nargs="*", default=None, help="text files (default: Debian's licence texts)")
    ap.add_argument("--shards", type=int, default=12)
    ap.add_argument("--top", type=int, default=10)
    a = ap.parse_args()
    files = a.corpus or sorted(p for p in glob.glob("/usr/share/common-licenses/*") if Path(p).is_file())
    if not files:
        print("no corpus: give text files with --corpus", file=sys.stderr)
        return 2

    from contextlib import nullcontext

    from cmqueue import Cluster
    from cmqueue.cli.demo import example_stack

    stack = nullcontext(None) if a.config else example_stack("wordcount")
    with tempfile.TemporaryDirectory() as tmp, stack as settings:
        shards = split(files, a.shards, Path(tmp))
        c = Cluster.from_config(a.config) if a.config else Cluster(settings)
        with c:
            t0 = time.monotonic()
            job = c.mapreduce("python3 count.py {/}", shards, reduce="json",
                              puts=[str(HERE / "count.py"), "{}"])
            res = job.wait()
            took = time.monotonic() - t0
        if not res.ok:
            print(f"wordcount failed: {res.reason}", file=sys.stderr)
            return 1
        counts = Counter(res.data["value"])
        here = Counter(w.lower() for f in shards for w in re.findall(r"[A-Za-z']+", f.read_text()))
    machines = Counter(m["machine"] for m in res.data["members"])
    print(f"{sum(counts.values())} words, {len(counts)} distinct, from {len(files)} files in {a.shards} shards, "
          f"counted on {', '.join(f'{m} ({n})' for m, n in sorted(machines.items()))} in {took:.2f}s")
    for word, n in counts.most_common(a.top):
        print(f"{n:8d}  {word}")
    same = counts == here
    print(f"matches a count done here: {'yes' if same else 'NO'}")
    print(json.dumps({"words": sum(counts.values()), "distinct": len(counts), "matches": same}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
