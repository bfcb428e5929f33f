"""Every shell example of README.md and docs/ runs as written, so they cannot drift.

Each ```sh block is run by bash (errexit, pipefail) in a directory holding the files the
examples use, with `cmq` on PATH and CMQ_CONFIG pointing at a loopback cluster whose
machines are those of `cmq demo --keep` (node01-04, label cpu; node04 also gpu), and
whose storage services are box (a folder) and node01 (a directory on node01). The
only change made to a block is the ports of Flower and `cmq serve` (5555 and 8765 in the
README, free ones here).
Files shown in the docs as ```python blocks whose first line is ``# NAME`` are written as
NAME; the other small files the examples read are made below.

A block preceded by ``<!-- not run by tests: REASON -->`` is left out; REASON says which
test runs it instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cmqueue.cli.demo import demo_storage, machine_labels, machine_names
from cmqueue.cli.demo_machines import random_free_port
from tests.conftest import make_env, teardown

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MACHINES = machine_names(4)
SKIP = re.compile(r"<!-- not run by tests: (.+?) -->")

#: The files the examples read, besides those shown in the docs.
FILES = {
    "train.sh": 'echo "training on $CMQ_MACHINE"\n',
    "a.txt": "alpha\n" * 100,
    "b.txt": "beta\n" * 100,
    "names.txt": "localhost\n",
    "data.csv": "x,y\n1,2\n3,4\n",
    "report.py": "import sys\nrows = open(sys.argv[1]).read().splitlines()[1:]\n"
                 "open('report.txt', 'w').write(f'{len(rows)} rows\\n')\n",
    "inputs/one.txt": "one\n",
    "inputs/two.txt": "two\n",
    "shards/s1.txt": "the quick brown fox\n",
    "shards/s2.txt": "jumps over\n",
    "shards/s3.txt": "the lazy dog\n",
    "count.py": "import json, sys\nprint(json.dumps({'words': len(open(sys.argv[1]).read().split())}))\n",
    "mymod.py": "def merge(outputs):\n    return sum(int(o) for o in outputs)\n",
    "score.sh": '[ "$1" != 2 ] || exit 1\necho $(( $1 * 10 ))\n',
    "image.qcow2": "image\n" * (1 << 20),          # 6 MiB: large enough to be relayed
    "model.bin": "model\n" * (1 << 20),
}


def fenced_blocks(path: Path) -> list[tuple[int, str, str, str | None]]:
    """(line, info string, text, skip reason) of every fenced block of ``path``."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\S*)", lines[i])
        if not m:
            i += 1
            continue
        indent, info, start = m.group(1), m.group(2), i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        before = "\n".join(lines[max(0, start - 2):start])
        skip = SKIP.search(before)
        blocks.append((start + 1, info, "\n".join(body) + "\n", skip.group(1) if skip else None))
    return blocks


def shell_examples() -> list:
    params = []
    for path in DOCS:
        for line, info, text, skip in fenced_blocks(path):
            if info != "sh":
                continue
            marks = [pytest.mark.skip(reason=skip)] if skip else []
            params.append(pytest.param(text, id=f"{path.name}:{line}", marks=marks))
    return params


def shown_files() -> dict[str, str]:
    """Files shown in the docs (```python blocks starting with ``# NAME``)."""
    found = {}
    for path in DOCS:
        for _, info, text, _ in fenced_blocks(path):
            first = text.splitlines()[0] if text.strip() else ""
            if info == "python" and re.fullmatch(r"# [\w.-]+\.py", first):
                found[first[2:]] = text
    return found


@pytest.fixture(scope="module")
def readme_cluster(tmp_path_factory):
    def rename(cluster):
        for machine, name in zip(cluster.machines, MACHINES, strict=True):
            machine.name = name

    port = random_free_port()
    labels = machine_labels(MACHINES)
    root = tmp_path_factory.mktemp("readme")
    storage = demo_storage(root)                 # the services every `cmq demo` has
    env = make_env(root, machines=len(MACHINES), slots=2, first=181, labels=labels,
                   settings={"flower_port": port}, prepare=rename, sections={"storage": storage})
    work = env.root / "work"
    for name, text in {**FILES, **shown_files()}.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    env.flower_port = port
    env.work = work
    yield env
    teardown(env)


def test_the_docs_have_examples_and_every_left_out_one_says_why():
    examples = shell_examples()
    assert len(examples) >= 8
    for p in examples:
        for mark in p.marks:
            assert "test_" in mark.kwargs["reason"], mark.kwargs["reason"]   # names the test that runs it
    assert "tasks.py" in shown_files()


@pytest.mark.timeout(900)
@pytest.mark.slow
@pytest.mark.parametrize("block", shell_examples())
def test_shell_example_runs_as_written(readme_cluster, block):
    env = readme_cluster
    up = env.run("up")
    assert up.code == 0, up.err
    script = block.replace("127.0.0.1:5555", f"127.0.0.1:{env.flower_port}")
    serve_port = random_free_port()
    script = script.replace("127.0.0.1:8765", f"127.0.0.1:{serve_port}").replace("--port=8765", f"--port={serve_port}")
    bash_env = {**env.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-x", "-c", script], cwd=env.work, env=bash_env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr[-5000:]
