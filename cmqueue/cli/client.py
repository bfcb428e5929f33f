"""The ``cmq`` command: hands the command to the launcher when one runs, else runs it.

This module imports nothing of cmq's but its own few lines (see :mod:`cmqueue.cli.launcher`):
with a launcher, ``cmq status`` costs a Python start, one round trip on a Unix socket and
a fork. Without one (before `cmq up`, or for the commands that start long-lived
processes: up, down, worker, recorder, flower, demo, vagrant), the command runs here.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys

from .argv import command_word

#: Commands the launcher runs (the rest start or stop services, or run in the foreground).
LAUNCHED = frozenset((
    "status", "jobs", "logs", "machines", "submit", "wait", "cancel", "map", "put", "get", "cache", "run", "plan",
    "workflows", "show", "resume", "retry", "edit", "top", "ps", "procfile", "storage", "vdir", "pool",
))
#: Signals passed on to the command while it runs.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH)


def _home() -> str:
    return os.path.expanduser(os.environ.get("CMQ_HOME") or "~/.cloudmesh/cmq")


def launch(argv: list[str]) -> int | None:
    """Run ``argv`` through the launcher; its exit code, or None when there is no
    launcher to take it (or it asked to be bypassed: its code changed)."""
    path = os.path.join(_home(), "launcher.sock")
    pending: list[int] = []
    target: list[int] = []

    def forward(sig: int, _frame: object) -> None:
        if not target:
            pending.append(sig)             # before the launcher said which process runs it
            return
        try:
            os.kill(target[0], sig)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                              "umask": _umask()}).encode() + b"\n"
        fds = array.array("i", [0, 1, 2])
        sent = conn.sendmsg([request[:65536]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        if sent < len(request):
            conn.sendall(request[sent:])
        reader = conn.makefile("rb")
        hello = json.loads(reader.readline() or b"{}")
    except (OSError, ValueError):
        hello = {}
    if "pid" not in hello:
        conn.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in pending:                 # the command runs here: it gets them as if sent now
            signal.raise_signal(sig)
        return None
    target.append(int(hello["pid"]))
    for sig in pending:
        forward(sig, None)
    while True:
        try:
            line = reader.readline()
            break
        except InterruptedError:
            continue
    try:
        return int(json.loads(line)["exit"])
    except (ValueError, KeyError, TypeError):
        print("cmq: the command ended without an exit status (its process was killed)", file=sys.stderr)
        return 1


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def main() -> int:
    """Entry point of ``cmq``."""
    argv = sys.argv[1:]
    if command_word(argv) in LAUNCHED and os.environ.get("CMQ_NO_LAUNCHER") != "1":
        code = launch(argv)
        if code is not None:
            return code
    from .main import main as run_here

    return run_here(argv)
