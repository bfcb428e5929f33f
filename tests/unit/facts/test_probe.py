"""The gather script (run here by a real sh) and the parse of its output."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from cmqueue.facts.probe import BUILTIN, parse, script


def run(text: str, cwd) -> str:
    proc = subprocess.run(["sh", "-c", text], capture_output=True, text=True, timeout=30, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_script_gives_this_hosts_facts(tmp_path):
    facts = parse(run(script(), tmp_path))
    assert set(facts) == set(BUILTIN)
    assert facts["cpus"] == os.cpu_count()
    assert facts["mem_gb"] > 0.1
    assert facts["disk_free_gb"] == pytest.approx(shutil.disk_usage(tmp_path).free / 1e9, abs=1.0)
    assert facts["kernel"] == os.uname().release
    assert isinstance(facts["load"], float)
    if os.path.exists("/etc/os-release"):
        assert facts["os"] and facts["os"] == facts["os"].lower()


def test_user_probes_give_numbers_or_text_and_a_failing_or_slow_probe_gives_null(tmp_path):
    probes = {"gpu": "echo 3", "site": "echo 'lab a'; echo second line", "broken": "exit 3",
              "missing": "no-such-command-here", "slow": "sleep 30; echo late", "ratio": "echo 0.5",
              "quote": "printf \"%s\\n\" \"it's\""}
    out = run(script(probes, limit=1), tmp_path)
    facts = parse(out, probes)
    assert {k: facts[k] for k in probes} == {"gpu": 3, "site": "lab a", "broken": None, "missing": None,
                                             "slow": None, "ratio": 0.5, "quote": "it's"}
    assert facts["cpus"] == os.cpu_count()


def test_parse_ignores_other_lines_and_a_failed_builtin_gives_null():
    out = "motd text\ncmqfact cpus \ncmqfact mem_kb 8000000\ncmqfact os debian\ncmqfact load x\n"
    facts = parse(out)
    assert facts == {"cpus": None, "mem_gb": 8.19, "disk_free_gb": None, "os": "debian", "kernel": None,
                     "python": None, "load": None}
