"""`cmq serve` against a live cluster (Redis, two sshd machines, workers): the API started
as a user starts it, called over HTTP with a token made by `cmq serve token create`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import httpx
import pytest

from tests.conftest import wait_for
from tests.support import threads
from tests.support.served import serving
from tests.support.streams import read_until


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("serve"), first=221) as it:
        yield it


def test_every_route_but_health_needs_a_live_token(served):
    assert httpx.get(f"{served.url}/api/health").json()["ok"] is True
    for token in (None, "cmq_not-a-token", "Basic abc"):
        with served.client(token=token) as anon:
            r = anon.get("/api/jobs")
            assert r.status_code == 401, token
            assert r.json()["status"] == 401 and "token" in r.json()["error"]
    extra = served.env.run("serve", "token", "create", "temp", check=True).out.strip()
    with served.client(token=extra) as c:
        assert c.get("/api/jobs").status_code == 200
        served.env.run("serve", "token", "revoke", "temp", check=True)
        assert c.get("/api/jobs").status_code == 401        # revoked: refused at once, no restart
    listed = served.env.run("serve", "token", "list", "--output=json", check=True)
    assert [t["name"] for t in json.loads(listed.out)] == ["ci"]
    tokens = served.env.home / "serve" / "tokens.json"
    assert oct(tokens.stat().st_mode & 0o777) == "0o600" and served.token not in tokens.read_text()


def test_jobs_submitted_through_the_api_run_and_their_output_is_read_back(served):
    with served.client() as c:
        r = c.post("/api/jobs", json={"command": "echo hello from $CMQ_TEST_WORD", "all": True,
                                      "env": {"CMQ_TEST_WORD": "rest"}, "wait": 60})
        assert r.status_code == 201, r.text
        batch = r.json()
        assert [(j["state"], j["stdout"]) for j in batch["jobs"]] == [("succeeded", "hello from rest\n")] * 2
        assert sorted(j["machine"] for j in batch["jobs"]) == ["m1", "m2"]
        one = batch["jobs"][0]["id"]
        assert c.get(f"/api/jobs/{one}").json()["exit_code"] == 0
        assert c.get(f"/api/jobs/{one[:-2]}").json()["id"] == one               # a unique prefix will do
        log = c.get(f"/api/jobs/{one}/log")
        assert log.status_code == 200 and log.text == "hello from rest\n"
        listed = c.get("/api/jobs", params={"batch": batch["batch"]}).json()
        assert {j["id"] for j in listed} == {j["id"] for j in batch["jobs"]}
        assert one in [j["id"] for j in c.get("/api/jobs", params={"q": "hello from", "last": 100}).json()]
    # the same history the command line reads
    status = json.loads(served.env.run("status", "--json", batch["batch"], check=True).out)
    assert {s["id"] for s in status} == {j["id"] for j in batch["jobs"]}


def test_a_map_with_a_reduce_answers_with_the_value(served):
    with served.client() as c:
        r = c.post("/api/maps", json={"template": "expr {} \\* 10", "args": ["1", "2", "3"], "reduce": "sum",
                                      "label": "cpu", "wait": 60})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["reduce"]["state"] == "succeeded" and body["reduce"]["value"] == 60
        assert len(body["jobs"]) == 3 and {j["machine"] for j in body["jobs"]} == {"m1"}


def test_a_workflow_runs_shows_its_tree_and_resumes_after_a_failure(served, tmp_path):
    flag = tmp_path / "ready"
    tasks = {"a": "echo 1", "b": {"command": "echo 2", "on": "m2"}, "gate": f"test -e {flag} && echo 4"}
    with served.client() as c:
        planned = c.post("/api/workflows/plan", json={"expr": "(a | b); a + b", "tasks": tasks})
        assert planned.status_code == 200, planned.text
        assert planned.json()["order"] == [["a", "b"], ["a + b"]]
        done = c.post("/api/workflows", json={"expr": "(a | b); a + b", "tasks": tasks, "wait": 60}).json()
        assert (done["state"], done["value"]) == ("succeeded", 3)
        assert done["tree"] == {"kind": "seq", "items": [
            {"kind": "par", "items": [{"kind": "task", "step": "a"}, {"kind": "task", "step": "b"}]},
            {"kind": "sum", "step": "a + b", "items": [{"kind": "task", "step": "a"}, {"kind": "task", "step": "b"}]}]}
        assert {s["name"]: s["machine"] for s in done["steps"]}["b"] == "m2"
        assert c.get(f"/api/workflows/{done['workflow']}").json()["value"] == 3
        assert done["workflow"] in [w["workflow"] for w in c.get("/api/workflows").json()]

        stuck = c.post("/api/workflows", json={"expr": "a; gate; a + gate", "tasks": tasks, "wait": 60}).json()
        assert stuck["state"] == "suspended"
        assert {s["name"]: s["state"] for s in stuck["steps"]}["gate"] == "failed"
        flag.write_text("")
        again = c.post(f"/api/workflows/{stuck['workflow']}/resume", json={"wait": 60}).json()
        assert (again["state"], again["value"]) == ("succeeded", 5)
        first_a = {s["name"]: s["job"] for s in stuck["steps"]}["a"]
        assert {s["name"]: s["job"] for s in again["steps"]}["a"] == first_a     # what succeeded is reused
        assert c.post("/api/workflows", json={"expr": "a; nosuch", "tasks": tasks}).status_code == 400


def test_a_suspended_step_is_edited_then_resumed_and_a_done_step_is_skipped(served, tmp_path):
    mark = f"rest-edit-{tmp_path.name}"
    tasks = {"make": {"command": f"touch {mark} && echo 5", "on": "m1", "creates": [mark]},
             "bad": {"command": "exit 7", "on": "m1", "needs": ["make"]}}
    with served.client() as c:
        planned = c.post("/api/workflows/plan", json={"expr": "bad", "tasks": tasks}).json()
        assert planned["expr"] == "make; bad" and planned["asked"] == "bad"
        assert {s["name"]: s["check"] for s in planned["steps"]}["make"] == {"creates": [mark]}
        stuck = c.post("/api/workflows", json={"expr": "make + bad", "tasks": tasks, "wait": 60})
        assert stuck.status_code == 400 and "bad needs make" in stuck.json()["error"]
        stuck = c.post("/api/workflows", json={"expr": "bad", "tasks": tasks, "wait": 60}).json()
        assert stuck["state"] == "suspended"
        wf = stuck["workflow"]
        edited = c.patch(f"/api/workflows/{wf}/steps/bad", json={"command": "echo 37", "timeout": 30})
        assert edited.status_code == 200, edited.text
        step = {s["name"]: s for s in edited.json()["steps"]}["bad"]
        assert step["command"] == "echo 37"
        assert step["edits"][0]["changed"]["command"] == ["exit 7", "echo 37"]
        assert c.patch(f"/api/workflows/{wf}/steps/nosuch", json={"command": "x"}).status_code == 400
        assert c.patch(f"/api/workflows/{wf}/steps/bad", json={"command": ""}).status_code == 400
        again = c.post(f"/api/workflows/{wf}/resume", json={"wait": 60}).json()
        assert (again["state"], again["value"]) == ("succeeded", "37\n")
        old_job = {s["name"]: s["job"] for s in stuck["steps"]}["bad"]
        assert c.get(f"/api/jobs/{old_job}").json()["command"] == "exit 7"     # the history keeps both versions
        twice = c.post("/api/workflows", json={"expr": "make", "tasks": tasks, "wait": 60}).json()
        (make,) = twice["steps"]
        assert make["skipped"] and make["reason"].startswith("skipped: done") and twice["value"] == "5\n"


def test_the_virtual_directory_uploads_lists_replicates_and_downloads_verified(served):
    data = b"a,b\n1,2\n" * 1000
    with served.client() as c:
        assert [s["name"] for s in c.get("/api/storage").json()] == ["box", "shelf"]
        assert c.post("/api/vdir/dirs", json={"path": "/proj/raw"}).status_code == 201
        up = c.put("/api/vdir/files/proj/raw/a.csv", params={"service": "box"}, content=data)
        assert up.status_code == 201, up.text
        import hashlib

        assert up.json()["sha256"] == hashlib.sha256(data).hexdigest() and up.json()["preferred"] == "box"
        assert (served.env.root / "box" / "proj" / "raw" / "a.csv").read_bytes() == data
        listing = c.get("/api/vdir/ls", params={"path": "/proj"}).json()
        assert listing["dirs"] == ["/proj/raw"] and listing["files"] == []
        assert [f["path"] for f in c.get("/api/vdir/ls", params={"path": "/proj/raw"}).json()["files"]] == [
            "/proj/raw/a.csv"]
        replicated = c.post("/api/vdir/replicate/proj/raw/a.csv", json={"services": ["shelf"]}).json()
        assert sorted(r["service"] for r in replicated["replicas"]) == ["box", "shelf"]
        assert c.post("/api/vdir/prefer/proj/raw/a.csv", json={"service": "shelf"}).json()["preferred"] == "shelf"
        got = c.get("/api/vdir/files/proj/raw/a.csv")                   # {dirname}/{basename}: the preferred
        assert got.content == data and got.headers["x-cmq-service"] == "shelf"
        one = c.get("/api/vdir/files/box/proj/raw/a.csv")               # {service}/{dirname}/{basename}
        assert one.content == data and one.headers["x-cmq-service"] == "box"
        status = c.get("/api/vdir/status", params={"path": "/proj/raw/a.csv"}).json()
        assert {r["service"]: r["state"] for r in status["replicas"]} == {"box": "ok (size)", "shelf": "ok (size)"}
        assert [e["name"] for e in c.get("/api/storage/box/list", params={"path": "proj/raw"}).json()] == [
            "proj/raw/a.csv"]
        nowhere = c.put("/api/vdir/files/proj/raw/b.csv", params={"service": "attic"}, content=data)
        assert nowhere.status_code == 400 and "unknown storage service 'attic'" in nowhere.json()["error"]
        missing = c.get("/api/vdir/files/proj/raw/nope.csv")
        assert missing.status_code == 404 and "no such file" in missing.json()["error"]
        assert c.delete("/api/vdir/files/proj/raw/a.csv").json() == {"forgotten": 1}
        assert c.get("/api/vdir/files/proj/raw/a.csv").status_code == 404
        assert (served.env.root / "shelf" / "proj" / "raw" / "a.csv").exists()     # forgotten, not deleted


def test_cloud_actions_go_to_the_queue_one_job_per_vm(served):
    with served.client() as c:
        clouds = c.get("/api/clouds").json()
        assert [(x["name"], x["type"]) for x in clouds] == [("d", "dummy"), ("aws", "ec2")]
        assert clouds[1]["credentials"] == {"key": "***", "secret": "(asked on the terminal)"}
        assert [v["name"] for v in c.get("/api/clouds/d/vms").json()] == ["dummy-1", "dummy-2"]
        acted = c.post("/api/clouds/d/actions", json={"action": "reboot", "names": "dummy-[1-2]", "wait": 60})
        assert acted.status_code == 201, acted.text
        jobs = acted.json()["jobs"]
        assert [(j["kind"], j["state"]) for j in jobs] == [("cloud", "succeeded")] * 2
        assert json.loads(jobs[0]["stdout"])["name"] == "dummy-1"           # the VM's record, as the CLI prints
        assert [j["command"] for j in jobs] == ["cloud d: reboot dummy-1", "cloud d: reboot dummy-2"]
        refused = c.post("/api/clouds/aws/actions", json={"action": "stop", "names": "web1"})
        assert refused.status_code == 400 and "TBD (secret)" in refused.json()["error"]
        assert c.post("/api/clouds/nope/actions", json={"action": "stop", "names": "x"}).status_code == 404


def test_bad_requests_are_one_line_json_with_the_clis_codes(served):
    with served.client() as c:
        cases = [
            (c.post("/api/jobs", json={"command": "true", "on": "nosuch"}), 404, "nosuch"),
            (c.post("/api/jobs", json={"command": ""}), 400, "command"),
            (c.post("/api/jobs", json={"command": "true", "on": "m1", "label": "cpu"}), 400, "choose one of"),
            (c.post("/api/jobs", json={"command": "true", "colour": "red"}), 400, "colour"),
            (c.post("/api/jobs", json={"command": "true", "env": {"A B": "1"}}), 400, "env"),
            (c.post("/api/maps", json={"template": "echo {}", "args": ["1"], "reduce": "no.such:fn"}), 400, "no.such"),
            (c.get("/api/jobs/jnosuchjob"), 404, "jnosuchjob"),
            (c.get("/api/jobs", params={"state": "sleeping"}), 400, "state"),
        ]
        for r, status, word in cases:
            body = r.json()
            assert (r.status_code, body["status"]) == (status, status), (r.request.url, r.text)
            assert word in body["error"] and "\n" not in body["error"] and "Traceback" not in r.text


def test_a_running_job_is_cancelled_and_its_events_stream_live(served):
    seen: list[dict] = []
    ready = threading.Event()

    def listen():
        with served.client() as c, c.stream("GET", "/api/events") as stream:
            event = {}
            for line in stream.iter_lines():
                ready.set()
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    seen.append(event)
                    if event["state"] == "cancelled":
                        return

    listener = threads.start(listen, on_error=ready.set)
    assert ready.wait(30)
    with served.client() as c:
        job = c.post("/api/jobs", json={"command": "sleep 60", "on": "m2"}).json()["jobs"][0]["id"]
        wait_for(lambda: c.get(f"/api/jobs/{job}").json()["state"] == "running", what="the job to start")
        cancelled = c.post(f"/api/jobs/{job}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()[0]["state"] == "cancelled"
        waited = c.get(f"/api/jobs/{job}/wait", params={"timeout": 5}).json()
        assert waited[0]["state"] == "cancelled"
    listener.result(timeout=30)
    mine = [e["state"] for e in seen if e["job"] == job]
    assert mine[0] == "running" and mine[-1] == "cancelled"
    assert all(e["machine"] in (None, "m2") for e in seen if e["job"] == job)


def test_the_console_login_sets_an_httponly_strict_cookie_that_opens_the_api(served):
    with httpx.Client(base_url=served.url, timeout=30) as browser:
        assert browser.post("/api/login", json={"token": "cmq_wrong"}).status_code == 401
        r = browser.post("/api/login", json={"token": served.token})
        assert r.status_code == 204
        cookie = r.headers["set-cookie"].lower()
        assert "cmq_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert served.token.lower() not in cookie                  # a session id, not the token
        assert browser.get("/api/machines").status_code == 200
        assert [m["name"] for m in browser.get("/api/machines").json()] == ["m1", "m2"]
        assert browser.post("/api/logout").status_code == 204
        assert browser.get("/api/machines").status_code == 401



@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    """The API's own OpenAPI spec, its operations called in process (ASGI) on a cluster of
    its own: a private Redis with no worker at all, so a generated command is queued and
    recorded but never runs anywhere. The live event stream is left out (it never ends)."""
    import os

    import schemathesis
    import yaml

    from cmqueue.config.settings import resolve
    from cmqueue.core.files import write_private
    from cmqueue.serve.app import create_api
    from cmqueue.serve.tokens import TokenStore
    from tests.conftest import need_services
    from tests.support.redis_server import RedisServer

    need_services()
    root = tmp_path_factory.mktemp("schema")
    redis = RedisServer(root / "redis", aof=False)
    redis.start()
    home = root / "home"
    inventory = write_private(root / "cmq.yaml", yaml.safe_dump({
        "broker": redis.url, "history": f"sqlite:///{root / 'history.db'}",
        "machines": {"m1": {"mode": "local", "labels": ["cpu"]}, "m2": {"mode": "local"}}}))
    old_home = os.environ.get("CMQ_HOME")
    os.environ["CMQ_HOME"] = str(home)
    try:
        tokens = TokenStore(home / "serve" / "tokens.json")
        token = tokens.create("schemathesis")
        api = create_api(resolve(str(inventory), check_keys=False), tokens)
        from fastapi.testclient import TestClient

        with TestClient(api) as seed:                  # a few queued jobs, for the listings to show
            made = seed.post("/api/jobs", json={"command": "true", "all": True},
                             headers={"Authorization": f"Bearer {token}"})
            assert made.status_code == 201, made.text
        schema = schemathesis.openapi.from_asgi("/openapi.json", api).exclude(path="/api/events")
        yield schema, token
    finally:
        if old_home is None:
            os.environ.pop("CMQ_HOME", None)
        else:
            os.environ["CMQ_HOME"] = old_home
        redis.stop()


def _bounded(case) -> None:
    """Waits in a generated request cut to half a second: no worker ends anything here."""
    if isinstance(case.body, dict) and isinstance(case.body.get("wait"), (int, float)):
        case.body["wait"] = min(case.body["wait"], 0.5)
    if case.operation.path.endswith("/wait"):
        given = (case.query or {}).get("timeout")
        case.query = {**(case.query or {}), "timeout": min(given, 0.5) if isinstance(given, (int, float)) else 0.5}


def test_every_route_answers_by_its_schema_and_never_with_a_500(api_schema):
    """schemathesis: for every operation of the spec, generated requests (with the token)
    get answers that match the spec, and none is a 500."""
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema, token = api_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /api/jobs", "POST /api/maps", "GET /api/jobs",
                                              "GET /api/jobs/{ref}", "GET /api/jobs/{ref}/log",
                                              "GET /api/jobs/{ref}/wait", "POST /api/jobs/{ref}/cancel",
                                              "GET /api/machines", "POST /api/login", "GET /api/health"}
    for operation in operations:
        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            _bounded(case)
            # A request the schema allows may still name a machine the inventory lacks or mix
            # on/label/all: that is a 400 or 404 with a message, as in the CLI, not a broken
            # contract; every other check (no 500, statuses, content types, response bodies
            # by the spec, invalid requests refused) stays.
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                                   excluded_checks=[positive_data_acceptance])

        check()


def test_the_api_over_tls_with_secure_cookies_and_a_private_key_only(served, tmp_path):
    import shutil

    from cmqueue.cli.demo_machines import random_free_port
    from tests.conftest import need

    need("openssl", shutil.which("openssl") is not None)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    key.chmod(0o644)
    port = random_free_port()
    loose = served.env.run("serve", f"--port={port}", f"--cert={cert}", f"--key={key}")
    assert loose.code == 2 and "the TLS key holds secrets" in loose.err and "chmod 600" in loose.err
    key.chmod(0o600)
    proc = subprocess.Popen([sys.executable, "-m", "cmqueue", "serve", f"--port={port}", f"--cert={cert}",
                             f"--key={key}"], env=served.env.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert read_until(proc.stdout, "\n", timeout=60).startswith(f"cmq serve: https://127.0.0.1:{port}/")
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=str(cert), timeout=30) as tls:
            wait_for(lambda: _answers(tls), timeout=30, what="cmq serve over TLS")
            r = tls.post("/api/login", json={"token": served.token})
            assert r.status_code == 204 and "secure" in r.headers["set-cookie"].lower()
            assert tls.get("/api/machines").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _answers(client) -> bool:
    try:
        return client.get("/api/health").status_code == 200
    except httpx.TransportError:
        return False


def test_the_api_follows_the_inventory_when_it_changes(served):
    import yaml

    from cmqueue.core.files import write_private

    with served.client() as c:
        before = c.post("/api/jobs", json={"command": "echo on gpu", "label": "gpu"})
        assert before.status_code == 404 and "gpu" in before.json()["error"]
        data = yaml.safe_load(served.env.config.read_text())
        data["machines"]["m2"]["labels"] = ["gpu"]
        write_private(served.env.config, yaml.safe_dump(data, sort_keys=False))
        after = c.post("/api/jobs", json={"command": "echo on gpu", "label": "gpu", "wait": 60})
        assert after.status_code == 201, after.text
        assert [(j["state"], j["machine"], j["stdout"]) for j in after.json()["jobs"]] == [
            ("succeeded", "m2", "on gpu\n")]
        assert [m["labels"] for m in c.get("/api/machines").json()] == [["cpu"], ["gpu"]]


def test_the_server_log_never_holds_a_token(served):
    """Last of the module: it stops the server."""
    with served.client() as c:
        c.get("/api/jobs")
    with served.client(token="cmq_leaked-guess") as c:
        c.get("/api/jobs")
    served.proc.terminate()
    out, err = served.proc.communicate(timeout=30)
    assert served.proc.returncode in (0, -15), err              # uvicorn ends by the signal it was stopped with
    assert served.token not in out + err and "cmq_leaked-guess" not in out + err
