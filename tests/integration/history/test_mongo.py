"""The whole stack with its history in MongoDB (a `mongodb://` URL in the inventory)."""

from __future__ import annotations

import uuid

from tests.conftest import make_env, teardown


def test_jobs_maps_and_workflows_with_a_mongodb_history(tmp_path, mongo_url):
    db = f"{mongo_url}/cmq_stack_{uuid.uuid4().hex[:8]}"
    env = make_env(tmp_path, machines=2, slots=2, first=105, history=db)
    try:
        r = env.run("submit", "--wait", "--json", "echo {}", ":::", "x", "y")
        assert r.code == 0, r.err
        assert sorted(j["stdout"] for j in r.json()) == ["x\n", "y\n"]
        r = env.run("map", "--reduce=sum", "echo {}", ":::", "1", "2", "3")
        assert (r.code, r.out) == (0, "6\n"), r.err
        tasks = tmp_path / "t.py"
        tasks.write_text("def a():\n    return 'echo 2'\ndef b():\n    return 'echo 3'\n")
        r = env.run("run", f"--tasks={tasks}", "--wait", "a; a + b")
        assert (r.code, r.out.strip()) == (0, "5"), r.err
        jobs = env.run("jobs", "--json", "--last=100").json()
        assert len(jobs) == 2 + 4 + 3 and {j["state"] for j in jobs} == {"succeeded"}
        assert env.run("workflows", "--json").json()[0]["state"] == "succeeded"
        from cmqueue.history import open_store

        store = open_store(db)                      # the rows really are in MongoDB
        assert len(store.jobs()) == 9
        store.close()
    finally:
        teardown(env)
