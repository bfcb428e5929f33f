"""Job lists: a table for short ones, the same columns as plain lines for long ones."""

import io
import time

from cmqueue.cli import output
from cmqueue.core.models import JobRecord, JobSpec, JobStatus, new_id, short_id


def _records(n):
    now = time.time()
    return [JobRecord(spec=JobSpec(id=new_id(), command=f"echo {i}", batch="b"), state=JobStatus.FAILED,
                      machine="m1", exit_code=1, started=now, ended=now + 2, reason="exit code 1")
            for i in range(n)]


def test_a_long_job_list_is_printed_fast_as_plain_aligned_lines(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(output.out, "file", buf)
    recs = _records(5000)
    output.print_jobs(recs)                     # not a rich table: 5,000 rows of one take ~6 s
    lines = buf.getvalue().splitlines()
    assert not any(ch in buf.getvalue() for ch in "│┃━─")
    assert lines[0].split() == ["job", "state", "machine", "exit", "started", "took", "command", "reason"]
    assert len(lines) == 5001
    first = lines[1].split()
    assert first[:4] == [short_id(recs[0].id), "failed", "m1", "1"]
    assert "echo 0" in lines[1] and "exit code 1" in lines[1]
    assert len({line.index("failed") for line in lines[1:]}) == 1       # columns line up


def test_a_short_job_list_is_a_table(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(output.out, "file", buf)
    recs = _records(3)
    output.print_jobs(recs)
    text = buf.getvalue()
    assert all(short_id(r.id) in text for r in recs) and "command" in text


def test_a_table_never_folds_ids_or_times_but_cuts_long_commands(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(output.out, "file", buf)
    monkeypatch.setattr(output.out, "_width", 80)
    monkeypatch.setattr(output.out, "_force_terminal", True)
    recs = _records(2)
    recs[0].spec.command = "python3 train.py " + "--flag " * 30
    recs[0].reason = "waiting for m2: m2 unreachable: ssh: connect to host 127.0.0.42 port 2222: refused"
    output.print_jobs(recs)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4                       # header, rule, one line per job: nothing wrapped
    assert all(len(line) <= 80 for line in lines)
    assert short_id(recs[0].id) in lines[2] and output.when(recs[0].started) in lines[2] and "…" in lines[2]


def test_a_job_list_into_a_pipe_keeps_every_word(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(output.out, "file", buf)
    recs = _records(2)
    recs[1].reason = "waiting for m2: m2 unreachable: ssh: connect to host 127.0.0.42 port 2222: Connection refused"
    output.print_jobs(recs)
    lines = buf.getvalue().splitlines()
    assert lines[2].endswith(recs[1].reason) and short_id(recs[1].id) in lines[2]


def _done(machine, stdout, stderr="", state=JobStatus.SUCCEEDED):
    from cmqueue.core.models import JobResult

    jid = new_id()
    return JobRecord(spec=JobSpec(id=jid, command="x"), state=state, machine=machine, exit_code=0,
                     result=JobResult(job=jid, machine=machine, exit_code=0, stdout=stdout, stderr=stderr))


def test_outputs_are_tagged_by_machine_in_the_order_given(capsys):
    output.print_outputs([_done("n2", "b\n", "warn\n"), _done("n1", "a1\na2\n")])
    out, err = capsys.readouterr()
    assert out == "n2: b\nn1: a1\nn1: a2\n" and err == "n2 (stderr): warn\n"


def test_one_jobs_output_is_printed_as_it_is(capsys):
    output.print_outputs([_done("n1", "raw\n", "e\n")])
    assert capsys.readouterr() == ("raw\n", "e\n")


def test_gathered_outputs_fold_their_machines(capsys):
    recs = [_done(f"node{i:02d}", "same\n") for i in (1, 2, 3, 5)] + [_done("gpu1", "other")]
    output.print_outputs(recs, gather=True)
    out, _ = capsys.readouterr()
    assert out == ("---------------\nnode[01-03,05] (4)\n---------------\nsame\n"
                   "---------------\ngpu1 (1)\n---------------\nother\n")


def test_the_live_view_counts_a_step_that_never_started_as_cancelled(monkeypatch):
    from rich.console import Console

    monkeypatch.setattr(output, "err", Console(file=io.StringIO(), force_terminal=True, width=120))
    view = output.ProgressView(3)
    recs = [_done("m1", "1"), _done("m1", "", state=JobStatus.FAILED), _done("m1", "", state=JobStatus.CANCELLED)]
    with view:
        view.update(recs)
    counts = view.progress.tasks[0].fields["counts"]
    assert "1 done" in counts and "1 failed" in counts and "1 cancelled" in counts
    assert view.progress.tasks[0].completed == 3


def test_the_live_view_without_a_terminal_ends_in_one_summary_line(monkeypatch):
    from rich.console import Console

    buf = io.StringIO()
    monkeypatch.setattr(output, "err", Console(file=buf, force_terminal=False))
    view = output.ProgressView(2)
    with view:
        view.update([_done("m1", "1"), _done("m2", "", state=JobStatus.FAILED)])
    text = buf.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.startswith("2 jobs in ") and "1 failed, 1 succeeded" in text


def _machine(i, state="consuming", used=0):
    return {"machine": f"m{i}", "state": state, "reason": "", "slots": 2, "used": used, "free": 2 - used,
            "queued": 0, "labels": ["cpu"]}


def test_alike_rows_fold_under_the_hostlist_of_their_names():
    rows = [_machine(i) for i in range(1, 6)] + [_machine(6, "unreachable"), _machine(7)]
    folded = output.fold_rows(rows, "machine", ("state", "slots", "labels"))
    assert [(r["machine"], r["count"], r["state"]) for r in folded] == [("m[1-5,7]", 6, "consuming"),
                                                                        ("m6", 1, "unreachable")]


def test_top_folds_a_large_fleet_and_shows_its_totals():
    from rich.console import Console

    machines = [_machine(i) for i in range(1, 257)]
    machines[9] = _machine(10, used=2)
    machines[199] = _machine(200, "unreachable")
    console = Console(file=io.StringIO(), width=200)
    console.print(output.top_view({"machines": machines, "queues": [], "running": []}))
    text = console.file.getvalue()
    assert "machines (256: 512 slots, 2 used, 0 queued; alike machines folded)" in text
    assert "m[1-9,11-199,201-256]" in text and "m10 " in text and "m200 " in text
    assert len([ln for ln in text.splitlines() if ln.strip().startswith(("m[", "m1", "m2"))]) == 3
    small = Console(file=io.StringIO(), width=200)
    small.print(output.top_view({"machines": machines[:4], "queues": [], "running": []}))
    assert "m4 " in small.file.getvalue() and "folded" not in small.file.getvalue()
