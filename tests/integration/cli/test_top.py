"""`cmq top`: slots used and free, queue depths and running jobs, from the live cluster."""

from __future__ import annotations

import uuid

from tests.conftest import wait_for


def test_top_shows_busy_slots_and_waiting_jobs(cmq):
    tag = uuid.uuid4().hex[:8]
    r = cmq.run("submit", "--json", "--on=m3", f"sleep 30 # {tag}-{{}}", ":::", "1", "2", "3", "4")
    ids = [j["id"] for j in r.json()["jobs"]]
    try:
        def busy():
            snap = cmq.run("top", "--json").json()
            m3 = next(m for m in snap["machines"] if m["machine"] == "m3")
            return snap if (m3["used"], m3["free"], m3["queued"]) == (2, 0, 2) else None

        snap = wait_for(busy, timeout=60, what="m3 to run 2 jobs with 2 waiting")
        assert sum(1 for r in snap["running"] if tag in r["command"]) == 2
        assert next(q for q in snap["queues"] if q["queue"] == "cmq.m.m3")["waiting"] == 2
        assert next(m for m in snap["machines"] if m["machine"] == "m3")["state"] == "consuming"
        screen = cmq.run("top", "--once")
        assert screen.code == 0 and "machines" in screen.out and "cmq.m.m3" in screen.out
    finally:
        cmq.run("cancel", *ids)


def test_top_on_a_terminal_quits_on_q(cmq):
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "cmqueue", "top", "--interval=0.2"], stdin=follower,
                            stdout=follower, stderr=follower, env={**cmq.env, "COLUMNS": "120"}, close_fds=True)
    os.close(follower)
    try:
        seen = b""
        while b"queues" not in seen:                 # its first screen is up
            ready, _, _ = select.select([leader], [], [], 30)
            assert ready, seen[-2000:]
            seen += os.read(leader, 65536)
        os.write(leader, b"q")
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:   # keep reading what it draws
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    os.read(leader, 65536)
                except OSError:
                    break
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)


def test_top_into_a_pipe_prints_a_snapshot_every_interval_and_ends_when_the_reader_goes(cmq):
    """first-contact-round2: without a terminal, top prints plain snapshots at once (not
    nothing until it is killed), and a reader that goes away ends it quietly, through the
    launcher as well as in its own process."""
    import subprocess
    import sys

    from tests.support.streams import read_until

    for launched in (True, False):
        entry = "from cmqueue.cli.client import main; raise SystemExit(main())" if launched else \
            "from cmqueue.cli.main import main; raise SystemExit(main())"
        proc = subprocess.Popen([sys.executable, "-c", entry, "top", "--interval=0.2"], env=cmq.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            seen = read_until(proc.stdout, "cmq.m.m3", timeout=60)
            seen += read_until(proc.stdout, "\n-- ", timeout=30)       # the next snapshot follows
            assert seen.startswith("-- ") and "machines" in seen and "\x1b[" not in seen
            proc.stdout.close()                                         # the reader goes away
            assert proc.wait(timeout=30) in (0, 141)
            err = proc.stderr.read().decode()
            assert "without an exit status" not in err and "Traceback" not in err, err
        finally:
            proc.kill()
            proc.wait(timeout=30)
            proc.stderr.close()
