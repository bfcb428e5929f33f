"""Flower started by `cmq up`: behind a login, showing our workers and tasks in a real
(headless) Chromium, and its REST API answering curl with the login."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cmqueue.cli.demo_machines import random_free_port
from tests.conftest import make_env, need, teardown, wait_for

CHROMIUM = shutil.which("chromium")


def _curl(port: int, path: str, auth: str | None) -> tuple[int, str]:
    argv = ["curl", "-s", "-w", "\n%{http_code}", *(["-u", auth] if auth else []), f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    body, _, code = out.rpartition("\n")
    return int(code), body


@pytest.fixture(scope="module")
def flower_env(tmp_path_factory):
    port = random_free_port()
    env = make_env(tmp_path_factory.mktemp("flower"), machines=2, slots=2, first=101,
                   settings={"flower_port": port})
    env.port = port
    yield env
    teardown(env)


def test_login_is_private_and_required(flower_env):
    env = flower_env
    login = env.home / "flower" / "login"
    assert oct(login.stat().st_mode & 0o777) == "0o600"
    user, password = env.run("flower", "--show-login", check=True).out.strip().split(":", 1)
    assert password not in _all_command_lines()            # not on any process's command line
    assert _curl(env.port, "/api/workers", None)[0] == 401
    assert _curl(env.port, "/api/workers", f"{user}:wrong")[0] == 401
    assert _curl(env.port, "/api/workers", f"{user}:{password}")[0] == 200
    # `cmq up` showed the login once, when it made it; a second `cmq up` does not.
    assert f"login {user}:{password} (shown once" in env.up.err
    again = env.run("up", check=True)
    assert password not in again.err and "cmq flower --show-login" in again.err


def test_up_without_flower_port_still_brings_the_queue_up(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = make_env(tmp_path, machines=1, slots=1, first=106, settings={"flower_port": port})
        try:
            assert env.up.code == 0
            assert f"port {port} on 127.0.0.1 is in use" in env.up.err and "the queue is up without it" in env.up.err
            r = env.run("submit", "--wait", "echo still works", check=True)
            assert r.out == "still works\n"
        finally:
            teardown(env)


def _all_command_lines() -> str:
    import psutil

    lines = []
    for p in psutil.process_iter():
        try:
            lines.append(" ".join(p.cmdline()))
        except psutil.Error:
            pass
    return "\n".join(lines)


def test_flower_shows_our_workers_and_tasks_in_a_browser(flower_env):
    need("chromium", CHROMIUM is not None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    need("playwright (pip)", sync_playwright is not None)

    env = flower_env
    user, password = env.run("flower", "--show-login", check=True).out.strip().split(":", 1)
    auth = f"{user}:{password}"
    # A worker process per share of the machines (two here): w1 drives m1, w2 drives m2.
    wait_for(lambda: {"cmq-w1", "cmq-w2"} <= {w.split("@")[0] for w in json.loads(
        _curl(env.port, "/api/workers?refresh=1", auth)[1] or "{}")}, timeout=60, what="Flower to see both workers")
    tag = uuid.uuid4().hex[:10]
    r = env.run("submit", "--wait", "--json", f"echo flower-{tag}-{{}}", ":::", "1", "2")
    assert r.code == 0, r.err
    ids = [j["id"] for j in r.json()]
    wait_for(lambda: all(i in json.loads(_curl(env.port, "/api/tasks", auth)[1] or "{}") for i in ids),
             timeout=60, what="Flower to record the tasks")
    tasks = json.loads(_curl(env.port, "/api/tasks", auth)[1])
    assert f"flower-{tag}" in tasks[ids[0]]["kwargs"] and tasks[ids[0]]["state"] == "SUCCESS"
    shots = Path(os.environ.get("CMQ_SCREENSHOT_DIR") or env.root)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            from playwright.sync_api import Error

            with pytest.raises(Error, match="ERR_INVALID_AUTH_CREDENTIALS"):   # the browser got a 401
                browser.new_page().goto(f"http://127.0.0.1:{env.port}/workers")
            page = browser.new_context(http_credentials={"username": user, "password": password}).new_page()
            assert page.goto(f"http://127.0.0.1:{env.port}/workers").status == 200
            page.wait_for_selector("text=cmq-w1@", timeout=30_000)
            assert "cmq-w2@" in page.content()
            page.screenshot(path=str(shots / "flower-workers.png"))
            assert page.goto(f"http://127.0.0.1:{env.port}/tasks").status == 200
            page.wait_for_selector(f"text=flower-{tag}-1", timeout=30_000)
            assert ids[0] in page.content() and "cmq.run" in page.content()
            page.screenshot(path=str(shots / "flower-tasks.png"), full_page=True)
        finally:
            browser.close()


def test_rest_api_with_curl(flower_env):
    env = flower_env
    user, password = env.run("flower", "--show-login", check=True).out.strip().split(":", 1)
    r = env.run("submit", "--wait", "--json", "--on=m2", "echo via-rest")
    job = r.json()[0]["id"]
    assert r.json()[0]["machine"] == "m2"
    auth = f"{user}:{password}"
    wait_for(lambda: _curl(env.port, f"/api/task/info/{job}", auth)[0] == 200, timeout=60, what="the task in Flower")
    info = json.loads(_curl(env.port, f"/api/task/info/{job}", auth)[1])
    assert info["state"] == "SUCCESS" and info["worker"].startswith("cmq-w2@") and "via-rest" in info["kwargs"]


def test_task_history_survives_a_flower_restart(flower_env):
    import signal

    env = flower_env
    user, password = env.run("flower", "--show-login", check=True).out.strip().split(":", 1)
    auth = f"{user}:{password}"
    job = env.run("submit", "--wait", "--json", "echo before-restart").json()[0]["id"]
    wait_for(lambda: job in json.loads(_curl(env.port, "/api/tasks", auth)[1] or "{}"), timeout=60,
             what="Flower to record the task")
    pid = json.loads((env.home / "services.json").read_text())["flower"]["pid"]
    os.kill(pid, signal.SIGTERM)                   # Flower writes its state to flower.db and exits
    wait_for(lambda: _curl(env.port, "/api/tasks", auth)[0] == 0, timeout=30, what="Flower to stop")
    assert env.run("up").code == 0                 # starts Flower again (and nothing else)
    assert _curl(env.port, "/api/workers", None)[0] == 401
    tasks = json.loads(_curl(env.port, "/api/tasks", auth)[1])
    assert job in tasks and "before-restart" in tasks[job]["kwargs"]


def test_submit_through_flowers_rest_api_with_curl(flower_env):
    """The README's curl example: another language submits a cmq job through Flower."""
    env = flower_env
    user, password = env.run("flower", "--show-login", check=True).out.strip().split(":", 1)
    job = f"rest-{uuid.uuid4().hex[:10]}"
    body = json.dumps({"kwargs": {"spec": {"id": job, "command": "echo from curl on $CMQ_MACHINE",
                                           "target": "machine:m1", "queue": "cmq.m.m1"}},
                       "queue": "cmq.m.m1", "task_id": job})
    out = subprocess.run(["curl", "-s", "-u", f"{user}:{password}", "-X", "POST", "-H",
                          "Content-Type: application/json", "-d", body,
                          f"http://127.0.0.1:{env.port}/api/task/async-apply/cmq.run"],
                         capture_output=True, text=True, timeout=30).stdout
    assert json.loads(out)["task-id"] == job
    # cmq learns of the job from its first event (it was not submitted by a cmq client).
    wait_for(lambda: env.run("status", job).code == 0, timeout=60, what="the job in cmq's history")
    r = env.run("wait", "--json", "--timeout=60", job)
    assert r.code == 0, r.err
    (rec,) = r.json()
    assert (rec["state"], rec["machine"], rec["stdout"]) == ("succeeded", "m1", "from curl on m1\n")
    assert _curl(env.port, f"/api/task/info/{job}", f"{user}:{password}")[0] == 200


def test_flower_without_redis_says_so(tmp_path):
    port = random_free_port()
    config = tmp_path / "cmq.yaml"
    config.write_text(f"broker: redis://:secret@127.0.0.1:{port}/0\nmachines:\n  here: {{mode: local}}\n")
    config.chmod(0o600)
    env = {**os.environ, "CMQ_HOME": str(tmp_path / "home")}
    env.pop("CMQ_BROKER", None)
    for argv, message in ((["flower", f"--port={random_free_port()}"], "cmq: flower: broker redis://:***@"),
                          (["flower", "--show-login"], "no Flower login yet")):
        r = subprocess.run([sys.executable, "-m", "cmqueue", "--config", str(config), *argv], capture_output=True,
                           text=True, env=env, timeout=60)
        assert r.returncode == 3, r.stderr
        assert message in r.stderr and r.stderr.count("\n") == 1
        assert "Traceback" not in r.stderr and "secret" not in r.stderr


def test_flower_in_the_foreground_says_where_and_who_logs_in_first(flower_env):
    """first-contact-round2: `cmq flower` prints its URL and user before it blocks, never
    the password, and answers there with that login."""
    from tests.support.streams import read_until

    port = random_free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cmqueue", "flower", f"--port={port}"], env=flower_env.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        said = read_until(proc.stderr, "Ctrl-C stops it", timeout=60)
        assert f"flower on http://127.0.0.1:{port}/ (user cmq;" in said and "--show-login" in said
        login = flower_env.run("flower", "--show-login", check=True).out.strip()
        assert login.split(":", 1)[1] not in said                          # never the password
        wait_for(lambda: _curl(port, "/api/workers", login)[0] == 200, timeout=60, what="flower to answer")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stderr.close()


def test_flower_started_later_sees_new_jobs_and_its_queue_views_work(tmp_path):
    """No Flower at `cmq up` (task events off): a `cmq flower` started later turns them on
    (remote control) and records the jobs sent from then on; the fleet worker answers
    `active_queues` as Celery's own consumer does, so Flower's queue views and
    `celery inspect` work."""
    env = make_env(tmp_path, machines=2, slots=1, first=108)
    port = random_free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cmqueue", "flower", f"--port={port}"], env=env.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (env.home / "flower" / "login").exists(), timeout=60, what="`cmq flower` to make its login")
        user, password = env.run("flower", "--show-login", check=True).out.strip().split(":", 1)
        auth = f"{user}:{password}"
        wait_for(lambda: _curl(port, "/api/workers?refresh=1", auth)[0] == 200, timeout=60, what="Flower")
        workers = json.loads(_curl(port, "/api/workers?refresh=1", auth)[1])
        assert {w.split("@")[0] for w in workers} == {"cmq-w1", "cmq-w2"}
        for name, info in workers.items():
            queues = info["active_queues"]
            assert isinstance(queues, list), (name, queues)          # not {"error": ...}
            assert {"cmq.any", "cmq.host"} <= {q["name"] for q in queues}
        assert {"cmq.m.m1", "cmq.m.m2"} <= {q["name"] for w in workers.values() for q in w["active_queues"]}
        code, body = _curl(port, "/api/queues/length", auth)
        assert code == 200, body
        assert {"cmq.m.m1", "cmq.m.m2", "cmq.any"} <= {q["name"] for q in json.loads(body)["active_queues"]}

        celery = shutil.which("celery", path=str(Path(sys.executable).parent))
        inspect = subprocess.run([celery, "inspect", "active_queues", "--json", "--timeout=10"], capture_output=True,
                                 text=True, timeout=60, env={**env.env, "CELERY_BROKER_URL": env.redis.url})
        assert inspect.returncode == 0, inspect.stderr
        answered = json.loads(inspect.stdout)
        assert {w.split("@")[0] for w in answered} == {"cmq-w1", "cmq-w2"}
        assert all(isinstance(q, list) and q for q in answered.values()), answered

        # Flower turns events on every few seconds: a job sent once they are on is recorded
        # (one sent before that is not: events are not kept for a later listener).
        jobs: list[str] = []

        def a_job_sent_after_it_started_is_recorded() -> bool:
            jobs.append(env.run("submit", "--wait", "--json", "--on=m1", "echo seen-by-flower").json()[0]["id"])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if _curl(port, f"/api/task/info/{jobs[-1]}", auth)[0] == 200:
                    return True
                time.sleep(0.5)
            return False

        wait_for(a_job_sent_after_it_started_is_recorded, timeout=120, what="Flower to record a new job")
        info = json.loads(_curl(port, f"/api/task/info/{jobs[-1]}", auth)[1])
        assert info["state"] == "SUCCESS" and "seen-by-flower" in info["kwargs"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        teardown(env)
