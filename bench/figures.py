"""README's and docs/throughput.md's performance figures, made from the runs recorded in
bench/RESULTS.md.

Every figure README or docs/ states about speed is a recorded run's own output, copied
with its date and versions by this script: nothing is typed by hand. Readings written by
hand stay in RESULTS.md, under the run they read.

    .venv/bin/python bench/figures.py            # print the blocks the files would get
    .venv/bin/python bench/figures.py --write    # put them into the files
    .venv/bin/python bench/figures.py --check    # exit 1 when a file's block differs
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
README = HERE.parent / "README.md"
THROUGHPUT = HERE.parent / "docs" / "throughput.md"
#: The benchmarks README quotes, in its order, with what each one compares.
QUOTED = {
    "bench_jobs.py": "many short jobs against GNU parallel -S and xargs + ssh",
    "bench_cli.py": "interactive commands against clush, parallel-ssh and ssh",
    "bench_data.py": "data to machines against scp, rsync and tar over ssh",
}
#: What docs/throughput.md quotes: (script, its label, what the run is).
THROUGHPUT_QUOTED = [
    ("budget.py", "before", "the cost of one job before issue 33"),
    ("budget.py", "after", "the cost of one job after issue 33"),
    ("bench_jobs.py", "before", "jobs/s against GNU parallel -S, before issue 33"),
    ("bench_jobs.py", "", "jobs/s against GNU parallel -S, after issue 33"),
    ("bench_data.py", "before", "data to machines before issue 33; its `shared` lines are the put to one disk"),
    ("bench_data.py", "", "data to machines after issue 33"),
]
START = "<!-- figures: made by `python bench/figures.py --write` from bench/RESULTS.md; not edited by hand -->"
END = "<!-- /figures -->"
HEADING = re.compile(r"^## (?P<script>\S+)(?P<args>[^\n]*?) — (?P<date>\d{4}-\d\d-\d\d \d\d:\d\d)(?P<note>[^\n]*)$",
                     re.MULTILINE)


@dataclass
class Run:
    """One recorded run: its script, date, printed figures and versions line."""

    script: str
    args: str
    date: str
    figures: str
    versions: str


def runs(text: str) -> list[Run]:
    """The recorded runs of RESULTS.md, oldest first (as they were appended)."""
    found = []
    heads = list(HEADING.finditer(text))
    for i, head in enumerate(heads):
        body = text[head.end(): heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        block = re.search(r"```\n(.*?)```\n(versions: [^\n]*)?", body, re.DOTALL)
        if not block:
            continue
        found.append(Run(head["script"], head["args"].strip(), head["date"], block[1].rstrip("\n"),
                         (block[2] or "").strip()))
    return found


def latest(all_runs: list[Run], script: str, args: str = "") -> Run | None:
    """The newest run of ``script`` with ``args`` (by default: none)."""
    mine = [r for r in all_runs if r.script == script and r.args == args]
    return mine[-1] if mine else None


def block(text: str, quoted: list[tuple[str, str, str]] | None = None) -> str:
    """The figures block for the runs recorded in ``text``: those ``quoted`` names
    (script, arguments, what it is), by default README's."""
    all_runs = runs(text)
    parts = [START]
    for script, args, what in quoted if quoted is not None else [(k, "", v) for k, v in QUOTED.items()]:
        run = latest(all_runs, script, args)
        if run is None:
            continue
        name = f"{script} {args}".strip()
        parts += ["", f"`bench/{name}` ({what}), run of {run.date}:", "", "```", run.figures, "```"]
        if run.versions:
            parts += ["", run.versions.replace("versions: ", "Versions: ", 1)]
    parts += ["", END]
    return "\n".join(parts)


def replace(readme: str, new: str, path: Path = README) -> str:
    """``readme`` (the text of ``path``) with its figures block replaced by ``new``."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < 0:
        raise SystemExit(f"{path}: no figures block ({START} ... {END})")
    return readme[:start] + new + readme[end + len(END):]


def main() -> int:
    """Print, write or check README's figures block."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="put the blocks into the files")
    ap.add_argument("--check", action="store_true", help="exit 1 when a file's block differs")
    opts = ap.parse_args()
    text = RESULTS.read_text()
    targets = [(README, block(text)), (THROUGHPUT, block(text, THROUGHPUT_QUOTED))]
    status = 0
    for path, new in targets:
        current = path.read_text()
        if opts.check:
            if replace(current, new, path) != current:
                print(f"{path.name}: the figures block is not what bench/RESULTS.md gives; "
                      "run `python bench/figures.py --write`", file=sys.stderr)
                status = 1
        elif opts.write:
            path.write_text(replace(current, new, path))
        else:
            print(f"{path}:\n{new}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
