"""The example programs run end to end with one command each, as README.md says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need_services

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("example", ["wordcount", "pi"])
def test_example_runs_and_prints_its_reduced_result(example, tmp_path):
    need_services()
    env = {**os.environ, "CMQ_HOME": str(tmp_path / "home")}
    env.pop("CMQ_CONFIG", None)
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / example / "run.py")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    if example == "wordcount":
        assert summary["matches"] is True and summary["words"] > 1000
    else:
        assert abs(summary["pi"] - 3.14159) < 0.01
