"""The decision of a step's check from what the machine said (pure)."""

from __future__ import annotations

import subprocess

from cmqueue.workflow.goals import (
    Decision,
    decide_done_if,
    decide_files,
    files_script,
    inputs_key,
    skipped_reason,
    was_skipped,
)


def test_creates_is_done_when_every_file_exists():
    check = {"creates": ["a", "b"], "earlier": [{"job": "j1", "stdout": "7\n"}]}
    d = decide_files(check, "have\nhave\n", "cmd", "any")
    assert d.done and d.reason == "a, b exist" and d.reuse["job"] == "j1"
    d = decide_files(check, "have\nmissing\n", "cmd", "any")
    assert not d.done and d.reason == "b missing"


def test_inputs_are_done_only_with_the_key_of_an_earlier_success():
    digests = {"in.txt": "a" * 64}
    key = inputs_key("cmd", "machine:m1", digests)
    earlier = [{"job": "j2", "inputs_key": "other", "inputs": {"in.txt": "b" * 64}},
               {"job": "j1", "inputs_key": key, "inputs": digests}]
    d = decide_files({"inputs": ["in.txt"], "earlier": earlier}, "a" * 64 + "\n", "cmd", "machine:m1")
    assert d.done and d.reuse["job"] == "j1" and d.data["inputs_key"] == key
    d = decide_files({"inputs": ["in.txt"], "earlier": earlier}, "c" * 64 + "\n", "cmd", "machine:m1")
    assert not d.done and d.reason == "inputs changed since job j2: in.txt"
    d = decide_files({"inputs": ["in.txt"], "earlier": earlier}, "a" * 64 + "\n", "other cmd", "machine:m1")
    assert not d.done                                     # the command is part of the key
    d = decide_files({"inputs": ["in.txt"]}, "missing\n", "cmd", "any")
    assert not d.done and d.reason == "input in.txt missing"


def test_a_short_answer_is_an_error_not_a_verdict():
    assert decide_files({"creates": ["a"]}, "", "cmd", "any").error


def test_done_if_exit_0_is_done_1_is_not_anything_else_is_an_error():
    assert decide_done_if(Decision(done=True), "test -f x", 0, "").done
    assert not decide_done_if(Decision(done=True), "test -f x", 1, "").done
    d = decide_done_if(Decision(done=True), "nosuch", 127, "sh: nosuch: not found\n")
    assert d.error == "done_if `nosuch` exited 127: sh: nosuch: not found"
    assert decide_done_if(Decision(done=True), "sleep 999", None, "").error.endswith("did not finish")


def test_the_skipped_reason_names_the_reused_job():
    d = Decision(done=True, reasons=["a exists"], reuse={"job": "j9"})
    assert skipped_reason(d) == "skipped: done: a exists; output of job j9" and was_skipped(skipped_reason(d))
    assert "no earlier success" in skipped_reason(Decision(done=True, reasons=["a exists"]))
    assert not was_skipped("exit code 1") and not was_skipped(None)


def test_the_file_script_digests_files_and_trees_in_a_shell(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "one").write_text("1")
    script = files_script({"creates": ["f", "gone"], "inputs": ["f", "d", "gone"]})
    out = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30).stdout
    lines = out.splitlines()
    assert lines[:2] == ["have", "missing"]
    assert lines[2] == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"     # sha256("x")
    assert len(lines[3]) == 64 and lines[4] == "missing"
    (tmp_path / "d" / "one").write_text("2")
    again = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30).stdout
    assert again.splitlines()[3] != lines[3]             # a tree's digest follows its files
