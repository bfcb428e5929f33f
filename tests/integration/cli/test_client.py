"""The `cmq` client's side of the launcher: command words, and signals that come early."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading

from cmqueue.cli import client
from tests.support import threads


def test_the_command_word_comes_after_the_global_options():
    assert client.command_word(["--config", "x.yaml", "-q", "status", "--json"]) == "status"
    assert client.command_word(["--broker", "redis://h", "submit", "true"]) == "submit"
    assert client.command_word(["--debug"]) is None


def _sigint_kills() -> None:
    """In the stand-in command: Ctrl-C ends it, whatever this test process ignores."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _read_line(conn: socket.socket) -> bytes:
    """The first line the client sent (its request may come in several pieces), with a deadline."""
    conn.settimeout(30)
    data, _fds, _, _ = conn.recvmsg(65536, socket.CMSG_LEN(3 * 4))
    while b"\n" not in data:
        more = conn.recv(65536)
        if not more:
            raise AssertionError("the client closed the socket before its request ended")
        data += more
    return data.split(b"\n")[0]


def test_a_ctrl_c_before_the_launcher_names_its_process_reaches_the_command(tmp_path, monkeypatch):
    """The signal comes while the client still waits for the launcher's hello: it is kept
    and passed on to the command's process as soon as the launcher names it."""
    monkeypatch.setenv("CMQ_HOME", str(tmp_path))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "launcher.sock"))
    server.listen(1)
    server.settimeout(30)
    command = subprocess.Popen(["sleep", "60"], preexec_fn=_sigint_kills)
    main = threading.get_ident()
    accepted: list[socket.socket] = []

    def launcher() -> dict:
        conn, _ = server.accept()
        accepted.append(conn)
        argv = json.loads(_read_line(conn))["argv"]
        signal.pthread_kill(main, signal.SIGINT)      # the user's Ctrl-C, before the hello
        conn.sendall(json.dumps({"pid": command.pid}).encode() + b"\n")
        command.wait(timeout=30)
        conn.sendall(json.dumps({"exit": 130}).encode() + b"\n")
        conn.close()
        return {"argv": argv, "signal": -command.returncode}

    def fail_the_client() -> None:
        # The client reads its exit status without a deadline (a command may run for days):
        # closing the connection ends that read, and result() names what went wrong.
        for conn in accepted:
            conn.close()
        server.close()

    previous = signal.getsignal(signal.SIGINT)
    helper = threads.start(launcher, on_error=fail_the_client)
    try:
        code = client.launch(["wait", "j1"])
    finally:
        for sig in client.FORWARDED:
            signal.signal(sig, previous if sig == signal.SIGINT else signal.SIG_DFL)
        command.kill()
        command.wait(timeout=30)
    outcome = helper.result(timeout=30)
    server.close()
    assert outcome == {"argv": ["wait", "j1"], "signal": signal.SIGINT} and code == 130


def test_without_a_launcher_the_command_runs_here(tmp_path, monkeypatch):
    monkeypatch.setenv("CMQ_HOME", str(tmp_path))
    assert client.launch(["status"]) is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
