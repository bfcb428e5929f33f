"""README's speed figures are the recorded runs of bench/RESULTS.md, copied by a script."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

RUN = """## bench_jobs.py — 2026-12-01 10:00

```
jobs/s: cmq 300
```
versions: python 3.11.7

Reading: typed by hand, stays here.

## bench_jobs.py --jobs=10 — 2026-12-02 10:00

```
jobs/s: cmq 1
```

## bench_jobs.py — 2026-12-03 10:00 (after a change)

```
jobs/s: cmq 400
```
versions: python 3.11.7
"""


def _figures():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import figures
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return figures


def test_the_block_quotes_the_newest_plain_run_of_each_benchmark_with_its_date():
    figures = _figures()
    block = figures.block(RUN)
    assert "run of 2026-12-03 10:00" in block and "jobs/s: cmq 400" in block
    assert "cmq 300" not in block and "cmq 1\n" not in block           # older, or with other arguments
    assert "typed by hand" not in block                                 # readings stay in RESULTS.md
    assert block.startswith(figures.START) and block.endswith(figures.END)


def test_readme_states_exactly_what_the_recorded_runs_give():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "figures.py"), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_the_vagrant_doc_states_the_summary_its_recorded_run_printed():
    """docs/vagrant.md's table is e2e.sh's own summary at the end of the recorded log."""
    doc = (ROOT / "docs" / "vagrant.md").read_text()
    log = (ROOT / "docs" / "vagrant-e2e.log").read_text()

    def table(text: str) -> list[str]:
        lines = text.splitlines()
        start = lines.index("| step | time |")
        rows = []
        for line in lines[start:]:
            if not line.startswith("|"):
                break
            rows.append(line)
        return rows

    assert len(table(log)) > 3 and table(doc) == table(log)


def test_the_throughput_doc_quotes_the_labelled_budget_runs_and_the_newest_jobs_run():
    figures = _figures()
    text = RUN + """
## budget.py before — 2026-12-04 10:00

```
per job: 19 commands
```

## budget.py after — 2026-12-05 10:00

```
per job: 5 commands
```
"""
    block = figures.block(text, figures.THROUGHPUT_QUOTED)
    assert "`bench/budget.py before`" in block and "19 commands" in block
    assert "`bench/budget.py after`" in block and "5 commands" in block
    assert "jobs/s: cmq 400" in block and "cmq 300" not in block
