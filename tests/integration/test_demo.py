"""The README's first command ends in `cmq demo`: it must work as a new user runs it."""

import os
import subprocess
import sys

from ..conftest import need_services


def test_demo_runs_jobs_across_machines_and_cleans_up(tmp_path):
    need_services()
    env = {**os.environ, "CMQ_HOME": str(tmp_path / "home")}
    for key in ("CMQ_CONFIG", "CMQ_BROKER"):
        env.pop(key, None)
    r = subprocess.run([sys.executable, "-m", "cmqueue", "demo", "--jobs=9", "--machines=3"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "9/9 jobs succeeded" in r.stdout
    summary = next(line for line in r.stdout.splitlines() if "jobs succeeded" in line)
    assert all(f"{m}:" in summary for m in ("m1", "m2", "m3")), summary   # spread across machines
    demo_env = {**env, "CMQ_HOME": str(tmp_path / "home/demo/home")}
    ps = subprocess.run([sys.executable, "-m", "cmqueue", "--config", str(tmp_path / "home/demo/cmq.yaml"), "ps",
                         "--json"], capture_output=True, text=True, env=demo_env, timeout=60)
    assert ps.returncode == 0 and ps.stdout.strip() == "[]"     # nothing left running
