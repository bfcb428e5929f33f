"""A Monte Carlo estimate of pi over all machines: each job throws darts with its own
seed and prints how many landed in the quarter circle; a sum reduce adds them up.

    .venv/bin/python examples/pi/run.py                       # a loopback cluster of its own
    .venv/bin/python examples/pi/run.py --config "$CMQ_CONFIG" # the demo kept by `cmq demo --keep`
    .venv/bin/python examples/pi/run.py --config cmq.yaml     # your machines (cmq up first)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter

#: Runs on the machine (python3, stdlib only): darts with seed $1, prints the hits.
THROW = ("python3 -c 'import random,sys; r=random.Random(int(sys.argv[1])); n=int(sys.argv[2]); "
         "print(sum(r.random()**2 + r.random()**2 <= 1 for _ in range(n)))' {} {samples}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="your inventory (its stack started with `cmq up`); default: loopback")
    ap.add_argument("--jobs", type=int, default=24)
    ap.add_argument("--samples", type=int, default=200_000, help="darts per job")
    a = ap.parse_args()

    from contextlib import nullcontext

    from cmqueue import Cluster
    from cmqueue.cli.demo import example_stack

    stack = nullcontext(None) if a.config else example_stack("pi")
    with stack as settings:
        c = Cluster.from_config(a.config) if a.config else Cluster(settings)
        with c:
            t0 = time.monotonic()
            job = c.mapreduce(THROW.replace("{samples}", str(a.samples)), range(1, a.jobs + 1), reduce="sum")
            res = job.wait()
            took = time.monotonic() - t0
    if not res.ok:
        print(f"pi failed: {res.reason}", file=sys.stderr)
        return 1
    darts = a.jobs * a.samples
    estimate = 4 * res.data["value"] / darts
    machines = Counter(m["machine"] for m in res.data["members"])
    print(f"pi ~ {estimate:.6f} (error {abs(estimate - math.pi):.6f}) from {darts} darts in {a.jobs} jobs on "
          f"{', '.join(f'{m} ({n})' for m, n in sorted(machines.items()))} in {took:.2f}s")
    print(json.dumps({"pi": estimate, "darts": darts, "jobs": a.jobs}))
    return 0 if abs(estimate - math.pi) < 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
