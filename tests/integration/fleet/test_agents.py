"""Agent mode for real on a loopback sshd machine: `cmq machines join` installs cmqueue
there from a wheelhouse built here, its worker runs jobs as that machine and reaches the
broker through the controller's tunnel; a killed worker is restarted; `leave` undoes it."""

from __future__ import annotations

import json
import os
import signal
import stat

import psutil
import pytest

from tests.conftest import make_env, teardown, wait_for


def agent_workers(agent_dir) -> list[psutil.Process]:
    """Live `cmq worker` processes started from ``agent_dir``'s config."""
    config = str(agent_dir / "cmq.yaml")
    found = []
    for p in psutil.process_iter(["cmdline"]):
        argv = p.info["cmdline"] or []
        if config in argv and "worker" in argv:
            found.append(p)
    return found


@pytest.mark.timeout(600)
def test_join_runs_jobs_on_the_machine_through_a_tunnel_then_leave(tmp_path):
    cenv = make_env(tmp_path, machines=2, slots=2, first=161,
                    machine_fields={"m2": {"mode": "agent", "labels": ["edge"]}})
    agent_dir = cenv.workdir("m2") / ".cmq" / "agent"
    try:
        r = cenv.run("machines", "join", "m2", timeout=900)
        assert r.code == 0, r.err
        assert "machine m2: joined" in r.err and "pidfile" in r.err
        port = int(r.err.rsplit("127.0.0.1:", 1)[1].split()[0])
        rows = {row["name"]: row for row in cenv.run("machines", "--json", check=True).json()}
        assert rows["m2"]["joined"] is True and rows["m2"]["worker"] == "consuming"
        assert stat.S_IMODE((agent_dir / "cmq.yaml").stat().st_mode) == 0o600
        (worker,) = wait_for(lambda: agent_workers(agent_dir), timeout=30, what="the agent's worker")
        # It runs from the venv made on the machine, and its broker is the tunnel's port
        # on the machine's loopback; the password is on no command line.
        assert worker.cmdline()[0] == str(agent_dir / "venv" / "bin" / "python")
        assert cenv.redis.password not in " ".join(worker.cmdline())
        assert any(c.raddr and c.raddr.ip == "127.0.0.1" and c.raddr.port == port
                   for c in getattr(worker, "net_connections", worker.connections)(kind="tcp"))

        # Jobs run there, as that machine, in its directory; its label's queue is consumed.
        r = cenv.run("submit", "--wait", "--on=m2", "echo $CMQ_MACHINE; pwd", timeout=120)
        assert r.code == 0 and r.out.split() == ["m2", str(cenv.workdir("m2"))], r.err
        r = cenv.run("submit", "--wait", "--label=edge", "echo $CMQ_MACHINE", timeout=120)
        assert r.code == 0 and r.out == "m2\n", r.err

        # Its supervisor restarts a worker that dies.
        os.kill(worker.pid, signal.SIGKILL)
        (again,) = wait_for(lambda: [p for p in agent_workers(agent_dir) if p.pid != worker.pid],
                            timeout=60, what="the supervisor to restart the worker")
        r = cenv.run("submit", "--wait", "--on=m2", "echo again on $CMQ_MACHINE", timeout=180)
        assert r.code == 0 and r.out == "again on m2\n", r.err

        # `cmq down` closes the tunnel; `cmq up` opens it again and the agent reconnects.
        assert cenv.run("down", "--grace=2").code == 0
        up = cenv.run("up")
        assert up.code == 0 and f"agent m2: tunnel on its 127.0.0.1:{port}" in up.err, up.err
        r = cenv.run("submit", "--wait", "--on=m2", "echo back on $CMQ_MACHINE", timeout=180)
        assert r.code == 0 and r.out == "back on m2\n", r.err

        r = cenv.run("machines", "leave", "m2", timeout=120)
        assert r.code == 0, r.err
        wait_for(lambda: not agent_workers(agent_dir), timeout=30, what="the worker to stop")
        assert not (agent_dir / "cmq.yaml").exists()
        listing = cenv.run("machines", check=True).out
        assert "not joined" in listing
    finally:
        cenv.run("machines", "leave", "m2", timeout=120)
        teardown(cenv)


def test_join_refuses_a_non_agent_and_a_failed_join_leaves_no_tunnel(tmp_path):
    cenv = make_env(tmp_path, machines=2, slots=1, first=164,
                    machine_fields={"m2": {"mode": "agent", "workdir": "/proc/cmq-cannot-be-here"}})
    try:
        r = cenv.run("machines", "join", "m1")
        assert r.code == 2 and "machine m1: join needs `mode: agent`" in r.err, r.err
        assert len(r.err.strip().splitlines()) == 1
        # m2's files cannot be written: the join fails with one line, and cleans up.
        r = cenv.run("machines", "join", "m2", timeout=900)
        assert r.code != 0 and r.err.startswith("cmq: ") and "Traceback" not in r.err, r.err
        assert "cannot create /proc/cmq-cannot-be-here/.cmq/agent" in r.err, r.err
        services = json.loads((cenv.home / "services.json").read_text())
        assert "m2" not in (services.get("tunnels") or {}) and "m2" not in (services.get("agents") or {})
        assert not [p for p in psutil.process_iter(["cmdline"]) if "-R" in (p.info["cmdline"] or [])
                    and any(a.endswith(cenv.cluster.machine("m2").address) for a in p.info["cmdline"])]
    finally:
        teardown(cenv)
