"""The README's first command ends in `cmq demo`: it must work as a new user runs it."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import IN_CI, ROOT, need_services

#: A whole demo (sshd's, Redis, workers, jobs) per test.
pytestmark = pytest.mark.timeout(600)


def _cmq(*args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "cmqueue", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _clean_env(tmp_path):
    env = {**os.environ, "CMQ_HOME": str(tmp_path / "home")}
    for key in ("CMQ_CONFIG", "CMQ_BROKER"):
        env.pop(key, None)
    return env


def test_demo_runs_jobs_across_machines_and_cleans_up(tmp_path):
    need_services()
    env = _clean_env(tmp_path)
    r = _cmq("demo", "--jobs=16", env=env)
    assert r.returncode == 0, r.stderr
    assert "16/16 jobs succeeded" in r.stdout
    summary = next(line for line in r.stdout.splitlines() if "jobs succeeded" in line)
    assert all(f"{m}:" in summary for m in ("node01", "node02", "node03", "node04")), summary   # spread out
    root = tmp_path / "home" / "demo"
    ps = _cmq("--config", str(root / "cmq.yaml"), "ps", "--json", env={**env, "CMQ_HOME": str(root)}, timeout=60)
    assert ps.returncode == 0 and ps.stdout.strip() == "[]"     # nothing left running
    # The hint it prints works as written: the history of the demo stays.
    hint = next(line for line in r.stdout.splitlines() if line.startswith("its history stays: "))
    words = shlex.split(hint.removeprefix("its history stays: ").split(" (")[0])
    assignments = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    command = [w for w in words if "=" not in w]
    jobs = subprocess.run([*command, "--json"] if command[0] != "cmq" else
                          [sys.executable, "-m", "cmqueue", *command[1:], "--json"],
                          capture_output=True, text=True, env={**env, **assignments}, timeout=60)
    assert jobs.returncode == 0, jobs.stderr
    assert len(json.loads(jobs.stdout)) == 16


def _exports(stdout: str) -> dict[str, str]:
    line = next(line.strip() for line in stdout.splitlines() if line.strip().startswith("export "))
    return dict(w.split("=", 1) for w in shlex.split(line)[1:])


def _sshd_pids(root) -> list[int]:
    return json.loads((root / "demo.json").read_text())["sshd"]


def test_demo_keep_leaves_a_cluster_that_every_command_can_use_and_stop_stops_it(tmp_path):
    need_services()
    env = _clean_env(tmp_path)
    try:
        _keep_then_stop(env, tmp_path)
    finally:
        _cmq("demo", "--stop", env=env, timeout=120)          # whatever failed, nothing is left running


def _keep_then_stop(env, tmp_path):
    first = _cmq("demo", "--keep", "--jobs=2", "--machines=2", env=env)
    assert first.returncode == 0, first.stderr
    exports = _exports(first.stdout)
    demo_env = {**env, **exports}
    root = tmp_path / "home" / "demo"
    assert exports == {"CMQ_CONFIG": str(root / "cmq.yaml"), "CMQ_HOME": str(root)}
    r = _cmq("submit", "--all", "--wait", "echo on $CMQ_MACHINE", env=demo_env, timeout=120)
    assert r.returncode == 0 and r.stdout == "node01: on node01\nnode02: on node02\n", r.stderr
    old = _sshd_pids(root)
    # A second demo never silently takes the kept one over: it says so and does nothing,
    # from a shell with the exports or without them.
    for shell in (demo_env, env):
        refused = _cmq("demo", "--keep", "--jobs=2", "--machines=2", env=shell)
        assert refused.returncode == 2 and "--reuse" in refused.stderr and "--replace" in refused.stderr, refused
        assert _sshd_pids(root) == old and all(psutil.pid_exists(p) for p in old)
    # first-contact-round2: an example runs on a cluster of its own and leaves the kept one
    # running, its inventory as it was.
    inventory = (root / "cmq.yaml").read_text()
    pi = subprocess.run([sys.executable, str(ROOT / "examples" / "pi" / "run.py"), "--jobs=4", "--samples=20000"],
                        capture_output=True, text=True, env=demo_env, timeout=300)
    assert pi.returncode == 0, pi.stderr
    assert "127.0.0.71" in pi.stderr and str(root) not in pi.stderr
    assert (root / "cmq.yaml").read_text() == inventory
    r = _cmq("submit", "--all", "--wait", "echo still $CMQ_MACHINE", env=demo_env, timeout=120)
    assert r.returncode == 0 and r.stdout == "node01: still node01\nnode02: still node02\n", r.stderr
    # first-contact-round2: README's storage block runs on the kept demo as written, after
    # only creating the files it names.
    _storage_block_runs_on(demo_env, tmp_path / "user")
    # --reuse runs the demo job on it and leaves it running.
    reused = _cmq("demo", "--reuse", "--jobs=4", env=env)
    assert reused.returncode == 0 and "4/4 jobs succeeded" in reused.stdout, reused.stderr
    assert _sshd_pids(root) == old and all(psutil.pid_exists(p) for p in old)
    # --replace stops it and starts a new one in its place.
    second = _cmq("demo", "--keep", "--replace", "--jobs=2", "--machines=2", env=demo_env)
    assert second.returncode == 0, second.stderr
    assert _exports(second.stdout) == exports
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in old)
    running = _sshd_pids(root)
    assert all(psutil.pid_exists(p) for p in running)
    # --stop works from a shell without the exports, and says what it stopped.
    stop = _cmq("demo", "--stop", env=env, timeout=120)
    assert stop.returncode == 0 and "stopped" in stop.stderr and "2 sshd" in stop.stderr, stop.stderr
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in running)
    ps = _cmq("ps", "--json", env=demo_env, timeout=60)
    assert json.loads(ps.stdout) == []
    again = _cmq("demo", "--stop", env=demo_env, timeout=120)
    assert again.returncode == 0 and "nothing was running" in again.stderr


def _storage_block_runs_on(demo_env: dict, work) -> None:
    from tests.integration.docs.test_readme import fenced_blocks

    (block,) = [text for _, info, text, _ in fenced_blocks(ROOT / "README.md")
                if info == "sh" and "cmq storage config list" in text]
    (work / "inputs").mkdir(parents=True)
    (work / "inputs" / "one.txt").write_text("one\n")
    (work / "inputs" / "two.txt").write_text("two\n")
    (work / "data.csv").write_text("x,y\n1,2\n")
    bash_env = {**demo_env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=work, env=bash_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    listed = json.loads(subprocess.run([sys.executable, "-m", "cmqueue", "storage", "config", "list", "--output=json"],
                                       env=demo_env, capture_output=True, text=True, timeout=60).stdout)
    names = {row["name"] for row in listed}
    assert {"box", "node01"} <= names
    if IN_CI:                                    # .ci/setup --tests installs SeaweedFS and Azurite
        assert {"s3", "blob"} <= names
        assert all(r["secret"] == "***" for r in listed if r["name"] in ("s3", "blob"))    # masked
    assert (work / "got.txt").read_text() == "one\n" and (work / "copy.csv").read_text() == "x,y\n1,2\n"
