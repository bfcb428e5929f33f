"""`cmq up` / `cmq ps` / `cmq down` with the embedded Redis and local machines, and a
history that survives restarts of Redis, workers and the CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import psutil
import pytest
import redis

from tests.conftest import make_env, need_services, teardown, wait_for


def cmq(env, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "cmqueue", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture
def local_setup(tmp_path):
    need_services()
    config = tmp_path / "cmq.yaml"
    config.write_text(f"""
settings: {{flower_port: 0, worker_processes: 2}}
machines:
  here1: {{mode: local, slots: 2, workdir: {tmp_path / 'w1'}}}
  here2: {{mode: local, slots: 1, workdir: {tmp_path / 'w2'}, labels: [small]}}
""")
    env = {**os.environ, "CMQ_CONFIG": str(config), "CMQ_HOME": str(tmp_path / "home")}
    env.pop("CMQ_BROKER", None)
    yield env, tmp_path
    cmq(env, "down", "--grace=2")


def test_up_starts_a_password_protected_embedded_redis_and_down_stops_exactly_it(local_setup):
    env, tmp = local_setup
    up = cmq(env, "up")
    assert up.returncode == 0, up.stderr
    state_file = tmp / "home" / "services.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    state = json.loads(state_file.read_text())
    url = state["redis"]["url"]
    assert state["redis"]["password"] not in up.stderr + up.stdout    # the password is never printed
    assert "***" in up.stderr
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=state["redis"]["port"]).ping()
    assert redis.Redis.from_url(url).ping()
    assert redis.Redis.from_url(url).config_get("appendonly")["appendonly"] == "yes"
    assert stat.S_IMODE((tmp / "home" / "redis" / "redis.conf").stat().st_mode) == 0o600

    ps = json.loads(cmq(env, "ps", "--json").stdout)
    assert {r["service"] for r in ps} == {"redis", "recorder", "launcher", "worker w1", "worker w2"}
    assert all(r["running"] for r in ps)
    pids = {r["pid"] for r in ps}

    r = cmq(env, "submit", "--wait", "--json", "--label=small", "echo $CMQ_MACHINE; pwd")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["stdout"] == f"here2\n{tmp / 'w2'}\n"

    # Loopback only, and the password is nowhere to be read: not in logs, `cmq ps` or any
    # process's arguments (the workers get the broker URL through their environment).
    listening = {c.laddr.ip for c in psutil.Process(state["redis"]["pid"]).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {"127.0.0.1"}
    password = state["redis"]["password"]
    seen = cmq(env, "ps").stdout + cmq(env, "ps", "--json").stdout
    for log in (tmp / "home" / "logs").rglob("*"):
        if log.is_file():
            seen += log.read_text(errors="replace")
    for p in psutil.process_iter():
        try:
            seen += " ".join(p.cmdline())
        except psutil.Error:
            pass
    assert password not in seen

    bystander = subprocess.Popen(["sleep", "60"])
    try:
        assert cmq(env, "down").returncode == 0
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
        assert bystander.poll() is None                  # nothing else was touched
    finally:
        bystander.kill()
    ps = json.loads(cmq(env, "ps", "--json").stdout)
    assert ps == []

    # A second `up` finds the same Redis (port, password, AOF data) again.
    assert cmq(env, "up").returncode == 0
    state2 = json.loads(state_file.read_text())
    assert state2["redis"]["url"] == url


def _ssh_masters_of(home) -> list[int]:
    """Pids of ssh masters whose sockets live in the control directory of cmq home ``home``."""
    from cmqueue.machine.runner import control_dir

    before = os.environ.get("CMQ_HOME")
    os.environ["CMQ_HOME"] = str(home)
    try:
        directory = str(control_dir())
    finally:
        os.environ.pop("CMQ_HOME") if before is None else os.environ.update(CMQ_HOME=before)
    found = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if p.info["name"] == "ssh" and "ControlMaster=yes" in cmdline and directory in cmdline:
            found.append(p.info["pid"])
    return found


def test_history_survives_restarts_of_redis_workers_and_cli(tmp_path):
    cenv = make_env(tmp_path, machines=3, slots=1, first=41)
    try:
        r = cenv.run("submit", "--wait", "--json", "echo before-restart", check=True)
        job = r.json()[0]["id"]
        masters = _ssh_masters_of(cenv.home)
        assert masters                                   # the workers' ssh masters are up
        assert cenv.run("down").code == 0
        wait_for(lambda: not _ssh_masters_of(cenv.home), timeout=15, what="`cmq down` to close the ssh masters")
        # Submitted while no worker runs: it must wait in Redis, across a Redis restart.
        queued = cenv.run("submit", "--json", "--on=m1", "echo queued-across-restart", check=True)
        queued_id = queued.json()["jobs"][0]["id"]
        cenv.redis.stop()
        cenv.redis.start()                               # same port, password, AOF directory
        assert cenv.run("up").code == 0
        st = cenv.run("status", "--json", job, check=True).json()
        assert st[0]["state"] == "succeeded" and st[0]["stdout"] == "before-restart\n"
        w = cenv.run("wait", "--json", "--timeout=60", queued_id)
        assert w.code == 0, w.err
        assert w.json()[0]["stdout"] == "queued-across-restart\n"
    finally:
        teardown(cenv)


def test_local_machines_put_get_and_stage_data(local_setup):
    env, tmp = local_setup
    assert cmq(env, "up").returncode == 0
    src = tmp / "in.txt"
    src.write_text("local data\n")
    r = cmq(env, "put", str(src), "here1:inbox/")
    assert r.returncode == 0, r.stderr
    assert (tmp / "w1" / "inbox" / "in.txt").read_text() == "local data\n"
    r = cmq(env, "get", "here1:inbox/in.txt", str(tmp / "back.txt"))
    assert r.returncode == 0 and (tmp / "back.txt").read_text() == "local data\n"
    r = cmq(env, "submit", "--wait", "--on=here2", f"--put={src}", "--get=n.txt", f"--results={tmp / 'res'}",
            "--json", "wc -l < in.txt > n.txt")
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)[0]["id"]
    assert (tmp / "res" / job / "n.txt").read_text().strip() == "1"


def test_procfile_runs_the_whole_stack_under_honcho(local_setup):
    import shutil
    import signal
    import time

    env, tmp = local_setup
    honcho = shutil.which("honcho", path=os.path.dirname(sys.executable))
    from tests.conftest import need

    need("honcho (pip)", honcho is not None)
    r = cmq(env, "procfile")
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(": ", 1) for line in r.stdout.splitlines() if not line.startswith("#"))
    assert set(lines) == {"redis", "recorder", "launcher", "worker-w1", "worker-w2"}
    assert json.loads((tmp / "home" / "services.json").read_text())["redis"]["password"] not in r.stdout
    (tmp / "Procfile").write_text(r.stdout)
    path_env = {**env, "PATH": os.path.dirname(sys.executable) + os.pathsep + env["PATH"]}
    proc = subprocess.Popen([honcho, "start", "-f", str(tmp / "Procfile")], cwd=tmp, env=path_env,
                            stdout=open(tmp / "honcho.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            rows = cmq(env, "machines", "--json")
            states = {m["name"]: m["worker"] for m in json.loads(rows.stdout or "[]")} if rows.returncode == 0 else {}
            if states and all(s == "consuming" for s in states.values()):
                break
            assert time.monotonic() < deadline, (tmp / "honcho.log").read_text()[-3000:]
            time.sleep(0.2)
        r = cmq(env, "submit", "--wait", "--on=here2", "echo from honcho on $CMQ_MACHINE")
        assert (r.returncode, r.stdout) == (0, "from honcho on here2\n"), r.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


@pytest.mark.parametrize("given", ["environment", "option"])
def test_up_uses_the_broker_given_by_environment_or_option_and_starts_no_redis(local_setup, redis_server, given):
    """config-broker-precedence: an inventory without ``broker:``, the broker named only by
    CMQ_BROKER (or only by --broker): `cmq up` starts no Redis of its own, jobs go through
    the one named, and later commands find it without being told again."""
    env, tmp = local_setup
    url = redis_server.url
    given_env = {**env, "CMQ_BROKER": url} if given == "environment" else env
    flag = [f"--broker={url}"] if given == "option" else []
    up = cmq(given_env, *flag, "up")
    assert up.returncode == 0, up.stderr
    assert "already running" in up.stderr and "started" not in up.stderr.split("\n")[0]
    state = json.loads((tmp / "home" / "services.json").read_text())
    assert "redis" not in state                                     # none of its own
    assert not (tmp / "home" / "redis").exists()
    ps = json.loads(cmq(given_env, *flag, "ps", "--json").stdout)
    assert "redis" not in {r["service"] for r in ps}
    client = redis.Redis.from_url(url)
    client.delete("cmq:events")
    # Told once is enough: a plain `cmq submit` uses the broker `cmq up` was given.
    run = cmq(env, "submit", "--wait", "--json", "echo through-{}", ":::", given)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)[0]["stdout"] == f"through-{given}\n"
    assert client.xlen("cmq:events") > 0                             # the jobs' events went there
    assert cmq(env, "down", "--grace=2").returncode == 0
    assert redis_server.proc.poll() is None                          # not ours: left running
    assert "broker" not in json.loads((tmp / "home" / "services.json").read_text())
