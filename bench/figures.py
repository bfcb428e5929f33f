"""README's performance figures, made from the runs recorded in bench/RESULTS.md.

Every figure README states about speed is a recorded run's own output, copied with its
date and versions by this script: nothing is typed by hand. Readings written by hand stay
in RESULTS.md, under the run they read.

    .venv/bin/python bench/figures.py            # print the block README would get
    .venv/bin/python bench/figures.py --write    # put it into README.md
    .venv/bin/python bench/figures.py --check    # exit 1 when README's block differs
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
#: The benchmarks README quotes, in its order, with what each one compares.
QUOTED = {
    "bench_jobs.py": "many short jobs against GNU parallel -S and xargs + ssh",
    "bench_cli.py": "interactive commands against clush, parallel-ssh and ssh",
    "bench_data.py": "data to machines against scp, rsync and tar over ssh",
}
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


def latest(all_runs: list[Run], script: str) -> Run | None:
    """The newest run of ``script`` with no extra arguments."""
    mine = [r for r in all_runs if r.script == script and not r.args]
    return mine[-1] if mine else None


def block(text: str) -> str:
    """README's figures block for the runs recorded in ``text``."""
    all_runs = runs(text)
    parts = [START]
    for script, what in QUOTED.items():
        run = latest(all_runs, script)
        if run is None:
            continue
        parts += ["", f"`bench/{script}` ({what}), run of {run.date}:", "", "```", run.figures, "```"]
        if run.versions:
            parts += ["", run.versions.replace("versions: ", "Versions: ", 1)]
    parts += ["", END]
    return "\n".join(parts)


def replace(readme: str, new: str) -> str:
    """``readme`` with its figures block replaced by ``new``."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < 0:
        raise SystemExit(f"{README}: no figures block ({START} ... {END})")
    return readme[:start] + new + readme[end + len(END):]


def main() -> int:
    """Print, write or check README's figures block."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="put the block into README.md")
    ap.add_argument("--check", action="store_true", help="exit 1 when README.md's block differs")
    opts = ap.parse_args()
    new = block(RESULTS.read_text())
    readme = README.read_text()
    if opts.check:
        if replace(readme, new) != readme:
            print("README.md: the figures block is not what bench/RESULTS.md gives; "
                  "run `python bench/figures.py --write`", file=sys.stderr)
            return 1
        return 0
    if opts.write:
        README.write_text(replace(readme, new))
    else:
        print(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
