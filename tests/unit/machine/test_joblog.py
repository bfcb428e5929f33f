"""OutputLog: the tail a job's record shows does not depend on its log file."""

from __future__ import annotations

from cmqueue.machine.joblog import OutputLog


def test_the_tail_is_kept_and_the_log_holds_everything(tmp_path):
    log = OutputLog(tmp_path / "j.out", cap=4)
    log.write(b"hello ")
    log.write(b"world")
    log.close()
    assert log.text() == ("orld", True) and log.kept
    assert (tmp_path / "j.out").read_bytes() == b"hello world"


def test_an_unwritable_log_loses_no_output_and_says_why(tmp_path):
    log = OutputLog(tmp_path / "missing" / "j.out", cap=100)
    log.write(b"result\n")
    log.close()
    assert log.text() == ("result\n", False) and not log.kept
    assert log.error.startswith(f"cannot write its log {tmp_path}/missing/j.out: No such file")


def test_an_empty_log_file_is_removed(tmp_path):
    log = OutputLog(tmp_path / "j.err", cap=100)
    log.close()
    assert not (tmp_path / "j.err").exists() and not log.kept
