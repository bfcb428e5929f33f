"""The suite's own guarantees: every test has a time limit, and a stuck test fails with the
stacks of its threads while the run goes on."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.conftest import ROOT

STUCK = '''
import threading

def test_stuck_on_an_event_nobody_sets():
    helper = threading.Thread(target=threading.Event().wait, name="helper-that-waits", daemon=True)
    helper.start()
    threading.Event().wait()

def test_after_it():
    assert True
'''


def test_the_suite_has_a_default_time_limit_per_test():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < float(options["timeout"]) <= 600 and options["timeout_method"] == "signal"


def test_a_stuck_test_fails_with_every_threads_stack_and_the_run_goes_on(tmp_path):
    (tmp_path / "test_stuck.py").write_text(STUCK)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
                           "--timeout=2", "--rootdir", str(tmp_path), str(tmp_path / "test_stuck.py")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "1 failed, 1 passed" in out
    assert "Timeout" in out and "test_stuck_on_an_event_nobody_sets" in out
    assert "helper-that-waits" in out                    # the other thread's stack is dumped too
