"""Map with a reduce (a Celery chord) on the loopback cluster."""

from __future__ import annotations

import pytest


def test_sum_reduce_through_the_api(cmq):
    with cmq.cluster_api() as c:
        job = c.mapreduce("echo {}", range(1, 21), reduce="sum")
        res = job.wait(timeout=120)
    assert res.exit_code == 0, res.reason
    assert res.data["value"] == 210
    assert len(res.data["members"]) == 20
    assert {m["state"] for m in res.data["members"]} == {"succeeded"}
    assert res.stdout == "210\n"


def test_map_command_reduces_json_word_counts_in_order(cmq):
    r = cmq.run("map", "--reduce=json", "--json", "printf '{\"%s\": 1, \"n\": %s}' {} {#}", ":::", "a", "b", "a")
    assert r.code == 0, r.err
    out = r.json()
    assert out["value"] == {"a": 2, "b": 1, "n": 6}
    assert out["state"] == "succeeded"
    assert [m["state"] for m in out["members"]] == ["succeeded"] * 3
    assert all(m["machine"] and m["exit_code"] == 0 and m["duration"] is not None for m in out["members"])
    r = cmq.run("map", "--reduce=concat", "echo {}", ":::", "x", "y", "z")
    assert (r.code, r.out) == (0, "x\ny\nz\n")


def test_status_of_a_reduce_shows_its_value(cmq):
    out = cmq.run("map", "--reduce=sum", "--json", "echo {}", ":::", "4", "5", check=True).json()
    r = cmq.run("status", out["reduce"], check=True)
    assert f"{out['reduce']} value: 9\n" in r.out


def test_failed_member_fails_the_reduce_and_is_named(cmq):
    r = cmq.run("map", "--reduce=sum", "--json", "test {} -lt 3 && echo {}", ":::", "1", "2", "3", "4")
    assert r.code == 1
    out = r.json()
    failed = [m["job"] for m in out["members"] if m["state"] == "failed"]
    assert len(failed) == 2
    assert out["state"] == "failed"
    assert all(job in out["reason"] for job in failed)
    r = cmq.run("map", "--reduce=sum", "--allow-failures", "--json", "test {} -lt 3 && echo {}",
                ":::", "1", "2", "3", "4")
    assert r.code == 0, r.err
    out = r.json()
    assert out["value"] == 3
    assert sorted(s["job"] for s in out["skipped"]) == sorted(
        m["job"] for m in out["members"] if m["state"] == "failed")
    # With every member failed there is nothing to reduce: the reduce fails, it is no empty success.
    r = cmq.run("map", "--reduce=concat", "--allow-failures", "--json", "exit 3", ":::", "1", "2")
    assert r.code == 1
    out = r.json()
    assert out["state"] == "failed" and "nothing to reduce" in out["reason"]


def test_reducer_errors(cmq, tmp_path):
    r = cmq.run("map", "--reduce=sum", "echo {}", ":::", "1", "two")
    assert r.code == 1
    assert "is not a number" in r.err and "'two'" in r.err and "Traceback" not in r.err
    bad = tmp_path / "bad_reducer.py"
    bad.write_text("def explode(values):\n    raise RuntimeError('boom on ' + str(len(values)))\n")
    r = cmq.run("map", f"--reduce={bad}:explode", "echo {}", ":::", "1", "2")
    assert r.code == 1
    assert f"reducer {bad}:explode raised RuntimeError: boom on 2" in r.err
    r = cmq.run("map", "--reduce=nosuchmodule_xyz:f", "echo {}", ":::", "1")
    assert r.code == 2 and "cannot import nosuchmodule_xyz" in r.err
    r = cmq.run("map", f"--reduce={bad}:missing", "echo {}", ":::", "1")
    assert r.code == 2 and "has no function missing" in r.err


def test_user_reducer_from_a_file(cmq, tmp_path):
    mod = tmp_path / "longest.py"
    mod.write_text("def pick(values):\n    return max(values, key=len).strip()\n")
    r = cmq.run("map", f"--reduce={mod}:pick", "echo {}", ":::", "a", "ccc", "bb")
    assert (r.code, r.out) == (0, "ccc\n"), r.err


@pytest.mark.timeout(900)
def test_a_ten_thousand_argument_map_reduces_every_member_once(tmp_path):
    from tests.conftest import make_env, teardown

    cenv = make_env(tmp_path, machines=2, slots=4, first=151)
    try:
        args = tmp_path / "args.txt"
        args.write_text("".join(f"{i}\n" for i in range(1, 10001)))
        r = cenv.run("map", "--reduce=sum", "--json", f"--each={args}", "echo {}", timeout=600)
        assert r.code == 0, r.err[-2000:]
        out = r.json()
        assert out["value"] == 50005000
        assert len(out["members"]) == 10000 and {m["state"] for m in out["members"]} == {"succeeded"}
        assert len({m["job"] for m in out["members"]}) == 10000
        (reduce,) = cenv.run("status", "--json", out["reduce"]).json()
        assert reduce["state"] == "succeeded" and reduce["stdout"] == "50005000\n"
        batch = cenv.run("status", "--json", out["map"]).json()
        assert len(batch) == 10001 and {r["state"] for r in batch} == {"succeeded"}   # and the reduce
    finally:
        teardown(cenv)


def test_a_ctrl_c_during_a_map_stops_waiting_and_names_the_map(cmq):
    import uuid

    from tests.support.interrupt import interrupted

    tag = uuid.uuid4().hex[:8]
    code, err, rows = interrupted(cmq, ["map", "--reduce=sum", f"sleep 30; echo {{}} # {tag}", ":::", "1", "2"], tag,
                                  jobs=2)
    assert code == 130, err
    batch = rows[0]["batch"]
    assert f"`cmq wait {batch}`" in err and f"`cmq cancel {batch}`" in err
    status = cmq.run("status", "--json", batch, check=True).json()     # the members, and the reduce queued
    assert {r["state"] for r in status if tag in r["command"]} == {"running"}
    cancelled = cmq.run("cancel", "--json", batch, check=True).json()
    assert {r["state"] for r in cancelled if tag in r["command"]} == {"cancelled"}
