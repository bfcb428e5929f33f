"""The reducers: pure functions over job outcomes."""

from __future__ import annotations

import pytest

from cmqueue.core.errors import UsageError
from cmqueue.submit import reducers
from cmqueue.submit.reducers import ReduceError


def ok(job: str, stdout: str) -> dict:
    return {"job": job, "state": "succeeded", "machine": "m1", "exit_code": 0, "stdout": stdout}


def test_numbers():
    outs = [ok("a", "1\n"), ok("b", " 2.5 "), ok("c", "-3")]
    assert reducers.reduce("sum", outs).value == 0.5
    assert reducers.reduce("min", outs).value == -3
    assert reducers.reduce("max", outs).value == 2.5
    assert reducers.reduce("sum", [ok("a", "4"), ok("b", "5")]).value == 9
    with pytest.raises(ReduceError, match="job b on m1: output 'x' is not a number"):
        reducers.reduce("sum", [ok("a", "1"), ok("b", "x")])


def test_text_in_job_order():
    outs = [ok("a", "x\n\n"), ok("b", "y\nz\n")]
    assert reducers.reduce("concat", outs).value == "x\n\ny\nz\n"
    assert reducers.reduce("lines", outs).value == ["x", "y", "z"]
    assert reducers.render(["x", "y"]) == "x\ny"


def test_json_merges_counts_and_extends_lists():
    outs = [ok("a", '{"w": {"the": 2}, "l": [1]}'), ok("b", '{"w": {"the": 1, "a": 1}, "l": [2]}')]
    assert reducers.reduce("json", outs).value == {"w": {"the": 3, "a": 1}, "l": [1, 2]}
    with pytest.raises(ReduceError, match="job b on m1: cannot combine dict with list"):
        reducers.reduce("json", [ok("a", "{}"), ok("b", "[]")])
    with pytest.raises(ReduceError, match="job a on m1: output is not JSON"):
        reducers.reduce("json", [ok("a", "{")])


def test_failed_members_fail_the_reduce_unless_allowed():
    bad = {"job": "b", "state": "failed", "machine": "m2", "exit_code": 3, "stdout": "", "reason": "exit code 3"}
    with pytest.raises(ReduceError, match=r"1 of 2 job\(s\) did not succeed: b \(failed, exit 3\)"):
        reducers.reduce("sum", [ok("a", "1"), bad])
    done = reducers.reduce("sum", [ok("a", "1"), bad], allow_failures=True)
    assert (done.value, done.used, [s["job"] for s in done.skipped]) == (1, ["a"], ["b"])


def test_allow_failures_with_every_member_failed_is_a_failed_reduce():
    bad = [{"job": j, "state": "failed", "machine": "m2", "exit_code": 1, "stdout": ""} for j in "xy"]
    with pytest.raises(ReduceError, match=r"nothing to reduce: none of the 2 job\(s\) succeeded: x \(failed"):
        reducers.reduce("concat", bad, allow_failures=True)


def test_truncated_output_is_refused():
    cut = {**ok("a", "123"), "stdout_truncated": True}
    with pytest.raises(ReduceError, match="job a on m1: output longer than output_cap"):
        reducers.reduce("sum", [cut])


def test_user_function_from_a_file(tmp_path):
    (tmp_path / "mine.py").write_text("def total(values):\n    return sum(len(v) for v in values)\n"
                                      "def boom(values):\n    raise KeyError('k')\n"
                                      "def opaque(values):\n    return object()\n")
    assert reducers.reduce("mine.py:total", [ok("a", "ab"), ok("b", "c")], cwd=str(tmp_path)).value == 3
    with pytest.raises(ReduceError, match="reducer mine.py:boom raised KeyError"):
        reducers.reduce("mine.py:boom", [ok("a", "")], cwd=str(tmp_path))
    with pytest.raises(ReduceError, match="reducer mine.py:opaque: TypeError"):
        reducers.reduce("mine.py:opaque", [ok("a", "")], cwd=str(tmp_path))
    with pytest.raises(UsageError, match="has no function nope"):
        reducers.check("mine.py:nope", cwd=str(tmp_path))
    with pytest.raises(UsageError, match="not one of sum"):
        reducers.check("average")
