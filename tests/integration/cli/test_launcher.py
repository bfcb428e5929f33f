"""The launcher `cmq up` starts: the `cmq` command hands it commands, which run as forks
of a warm process in the caller's directory, environment and file descriptors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import cmqueue
from cmqueue.cli.launcher import socket_path
from tests.conftest import make_env, teardown, wait_for
from tests.support.streams import read_until

#: The `cmq` entry point, reporting on stderr whether it ran the command itself.
CLIENT = """
import sys
from cmqueue.cli.client import main
code = main()
print("RAN", "here" if "cmqueue.cli.main" in sys.modules else "in-launcher", file=sys.stderr)
raise SystemExit(code)
"""


def cmq(cenv, *argv: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the `cmq` command as a user types it; ``.ran`` says where it ran."""
    proc = subprocess.run([sys.executable, "-c", CLIENT, *argv], capture_output=True, text=True,
                          env={**cenv.env, **(env or {})}, cwd=cwd, timeout=120)
    lines = proc.stderr.splitlines()
    proc.ran = lines[-1].split()[1] if lines and lines[-1].startswith("RAN ") else "?"
    proc.stderr = "\n".join(lines[:-1]) + ("\n" if lines[:-1] else "")
    return proc


@pytest.fixture(scope="module")
def cenv(tmp_path_factory):
    cenv = make_env(tmp_path_factory.mktemp("launcher"), machines=2, slots=2, first=184)
    wait_for(lambda: socket_path(cenv.home).exists(), timeout=60, what="the launcher's socket")
    yield cenv
    teardown(cenv)


def test_commands_run_in_the_launcher_as_if_typed_here(cenv, tmp_path):
    (tmp_path / "data.txt").write_text("from the caller's directory\n")
    r = cmq(cenv, "submit", "--wait", "--on=m1", "--put=data.txt", "cat data.txt; echo to-err >&2", cwd=tmp_path)
    assert (r.returncode, r.ran) == (0, "in-launcher"), r.stderr
    assert r.stdout == "from the caller's directory\n" and "to-err" in r.stderr
    failed = cmq(cenv, "submit", "--wait", "--on=m2", "exit 3")
    assert (failed.returncode, failed.ran) == (1, "in-launcher") and "exit code 3" in failed.stderr
    usage = cmq(cenv, "submit", "--lable=x", "true")
    assert (usage.returncode, usage.ran) == (2, "in-launcher") and "--label" in usage.stderr
    # The caller's environment, not the launcher's.
    other = cmq(cenv, "status", env={"CMQ_CONFIG": str(tmp_path / "elsewhere.yaml")})
    assert (other.returncode, other.ran) == (2, "in-launcher") and "elsewhere.yaml" in other.stderr, other.stderr
    listed = cmq(cenv, "jobs", "--json", "--last=3")
    assert listed.ran == "in-launcher" and json.loads(listed.stdout)[-1]["state"] == "failed"
    # Commands that start or stop services run here.
    assert cmq(cenv, "ps").ran == "in-launcher" and cmq(cenv, "up").ran == "here"


def _restart_launcher_with_sigint_ignored(cenv) -> None:
    """Stop the launcher and start it again from a `cmq up` that ignores SIGINT, as a
    shell without job control starts `cmq up &`."""
    import psutil

    pid = json.loads((cenv.home / "services.json").read_text())["launcher"]["pid"]
    os.kill(pid, signal.SIGTERM)
    psutil.Process(pid).wait(timeout=30)
    up = subprocess.run([sys.executable, "-m", "cmqueue", "up"], env=cenv.env, capture_output=True, text=True,
                        timeout=120, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert up.returncode == 0, up.stderr
    wait_for(lambda: socket_path(cenv.home).exists(), timeout=60, what="the new launcher's socket")
    launcher = json.loads((cenv.home / "services.json").read_text())["launcher"]["pid"]
    assert launcher != pid


@pytest.mark.parametrize("started", ["as usual", "with SIGINT ignored"])
def test_ctrl_c_reaches_the_command(cenv, started):
    if started != "as usual":
        _restart_launcher_with_sigint_ignored(cenv)
    import pty

    job = cmq(cenv, "submit", "--json", "--on=m1", "sleep 60").stdout
    job_id = json.loads(job)["jobs"][0]["id"]
    # On a terminal, so that the command shows its progress view once it waits: the Ctrl-C
    # is sent then, not while it still starts.
    leader, follower = pty.openpty()
    waiting = subprocess.Popen([sys.executable, "-c", CLIENT, "wait", job_id], env={**cenv.env, "COLUMNS": "120"},
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    screen = os.fdopen(leader, "rb", buffering=0)
    try:
        read_until(screen, "eta", timeout=60)
        assert _children_of_launcher(cenv)                 # it runs in the launcher
        waiting.send_signal(signal.SIGINT)
        assert waiting.wait(timeout=30) == 130             # long before its 60 s job could end
        err = read_until(screen, "cancels them", timeout=30)
    finally:
        waiting.kill()
        waiting.wait(timeout=30)
        screen.close()
    # It stops waiting, not the job, and says how to go on.
    assert "stopped waiting" in err and f"`cmq cancel {job_id}`" in err, err
    cmq(cenv, "cancel", job_id)


def _children_of_launcher(cenv) -> list:
    """The commands the launcher runs now (its forks)."""
    import psutil

    return psutil.Process(json.loads((cenv.home / "services.json").read_text())["launcher"]["pid"]).children()


def test_a_launcher_whose_code_changed_is_bypassed_then_starts_afresh(cenv):
    assert cmq(cenv, "status").ran == "in-launcher"
    source = Path(cmqueue.__file__).parent / "core" / "defaults.py"
    os.utime(source)                                       # as after an upgrade or an edit
    bypassed = cmq(cenv, "status")
    assert (bypassed.returncode, bypassed.ran) == (0, "here"), bypassed.stderr
    wait_for(lambda: cmq(cenv, "status").ran == "in-launcher", timeout=60, what="the launcher to start afresh")


def test_only_its_owner_may_use_it_and_down_removes_it(tmp_path):
    cenv = make_env(tmp_path, machines=1, slots=1, first=188)
    try:
        sock = socket_path(cenv.home)
        wait_for(sock.exists, timeout=60, what="the launcher's socket")
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        assert cenv.run("down", "--grace=2").code == 0
        assert not sock.exists()
        r = cmq(cenv, "status")
        assert (r.returncode, r.ran) == (0, "here"), r.stderr   # no launcher: the command runs here
    finally:
        teardown(cenv)


def test_a_launcher_whose_socket_another_took_over_exits_and_never_removes_the_new_one(tmp_path):
    # Two `cmq up` at once, one killed before it recorded its launcher: the unrecorded one
    # must not linger unreachable, nor take the recorded one's socket with it when stopped.
    from cmqueue.cli.launcher import CHECK_EVERY, _identity

    (tmp_path / "home").mkdir(mode=0o700)                         # as `cmq up` makes it
    env = {**os.environ, "CMQ_HOME": str(tmp_path / "home")}
    sock = socket_path(tmp_path / "home")
    started: list[subprocess.Popen] = []

    def launcher() -> tuple[subprocess.Popen, tuple[int, int]]:
        before = _identity(sock)
        proc = subprocess.Popen([sys.executable, "-m", "cmqueue", "launcher"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        started.append(proc)
        wait_for(lambda: _identity(sock) not in (None, before), timeout=60, what="the launcher's socket")
        return proc, _identity(sock)

    try:
        first, _ = launcher()
        second, _ = launcher()
        assert first.wait(timeout=CHECK_EVERY * 4) == 0           # it saw the socket was not its own
        third, third_socket = launcher()
        second.send_signal(signal.SIGTERM)                         # before it looked
        assert second.wait(timeout=30) == 0
        assert _identity(sock) == third_socket                     # the newest one's socket stays
        assert third.poll() is None
        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=30) == 0 and not sock.exists()   # its own, it removes
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
