"""A warm process that starts cmq commands in milliseconds (as Mercurial's chg does).

Starting Python and importing Celery, kombu, redis-py and rich takes a few hundred
milliseconds, more than most commands' own work. `cmq up` starts a launcher that has
imported them once; the ``cmq`` command (:mod:`cmqueue.cli.client`) connects to its Unix
socket in the cmq home, hands over its standard input, output and error (SCM_RIGHTS)
with its arguments, working directory, environment and umask, and the launcher forks a
child that becomes the command: the same code as ever (:func:`cmqueue.cli.main.main`),
on the caller's terminal, in the caller's directory. The child sends its pid (so the
client forwards Ctrl-C and other signals to it) and, at the end, its exit code.

Only the owner of the socket may connect (a 0600 socket in the 0700 home, and its peer's
uid checked). A launcher whose cmqueue source files changed since it started says so to
the next client (which then runs the command itself) and starts afresh (exec).
The launcher never starts a thread: a fork copies only the calling thread.
"""

from __future__ import annotations

import array
import importlib
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

#: The socket's name in the cmq home.
SOCKET_NAME = "launcher.sock"
#: Seconds between two looks at whether the socket is still this launcher's: one whose
#: socket another launcher took over (two `cmq up` at once, one killed before it recorded
#: its launcher) exits rather than linger, unreachable.
CHECK_EVERY = 5.0
#: Modules a command may need, imported once by the launcher.
PRELOAD = (
    "celery", "kombu.transport.redis", "redis", "yaml", "rich.console", "rich.table", "rich.progress", "rich.live",
    "cmqueue.cli.stack", "cmqueue.cli.jobs", "cmqueue.cli.machines", "cmqueue.cli.top", "cmqueue.cli.data",
    "cmqueue.cli.mapping", "cmqueue.cli.workflows", "cmqueue.api.cluster", "cmqueue.submit.specs",
    "cmqueue.fleet.services", "cmqueue.queue.celery_app", "cmqueue.history.sqlite",
    "cmqueue.workflow.engine", "cmqueue.cli.storage", "cmqueue.cli.vdir", "cmqueue.cli.pool", "cmqueue.storage.ops",
    "cmqueue.storage.local", "cmqueue.storage.ssh", "cmqueue.storage.cloud", "cmqueue.storage.vdir",
    "cmqueue.storage.pool", "libcloud.storage.drivers.s3", "libcloud.storage.drivers.minio",
    "libcloud.storage.drivers.azure_blobs", "libcloud.storage.types",
)
#: Bytes of the request read with its file descriptors (the rest follows on the stream).
FIRST_READ = 65536


def socket_path(home: Path) -> Path:
    """Where the launcher of cmq home ``home`` listens."""
    return Path(home) / SOCKET_NAME


def _sources() -> dict[str, float]:
    """mtime of the source file of every cmqueue module loaded now."""
    found = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name.startswith("cmqueue") and path:
            try:
                found[path] = os.stat(path).st_mtime
            except OSError:
                found[path] = -1.0
    return found


def _changed(loaded: dict[str, float]) -> bool:
    for path, mtime in loaded.items():
        try:
            if os.stat(path).st_mtime != mtime:
                return True
        except OSError:
            return True
    return False


def _warm() -> None:
    """Lay out a small table once, so that the modules rich imports on its first render
    (and its caches) are ready in every command forked from here."""
    import io

    from rich.console import Console
    from rich.table import Table

    table = Table(title="warm", show_edge=False, header_style="bold")
    table.add_column("a")
    table.add_row("[green]b[/] c")
    Console(file=io.StringIO(), width=80, force_terminal=True).print(table)


def serve(home: Path) -> None:
    """Listen on ``home``'s launcher socket until killed (``cmq launcher``)."""
    for name in PRELOAD:
        importlib.import_module(name)
    _warm()
    loaded = _sources()
    path = socket_path(home)
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        server.bind(str(path))
    finally:
        os.umask(old)
    server.listen(64)
    server.settimeout(CHECK_EVERY)
    mine = _identity(path)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)          # children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: (_unlink_if(path, mine), os._exit(0)))
    print(f"launcher: listening on {path}", flush=True)
    while True:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            if _identity(path) != mine:                  # a newer launcher took the socket over
                print(f"launcher: {path} is another launcher's now; exiting", flush=True)
                os._exit(0)
            continue
        conn.setblocking(True)
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
        if uid != os.getuid():
            conn.close()
            continue
        if _changed(loaded):
            conn.sendall(b'{"stale": true}\n')
            conn.close()
            server.close()
            _unlink_if(path, mine)
            os.execv(sys.executable, [sys.executable, "-m", "cmqueue", "launcher"])
        if os.fork() == 0:
            server.close()
            os._exit(_child(conn))
        conn.close()


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the socket at ``path``, None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _unlink_if(path: Path, mine: tuple[int, int] | None) -> None:
    """Remove the socket at ``path`` if it is still this launcher's (not a newer one's)."""
    if _identity(path) == mine:
        path.unlink(missing_ok=True)


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The request (JSON, one line) and the three file descriptors sent with it."""
    fds = array.array("i")
    data, ancillary, _, _ = conn.recvmsg(FIRST_READ, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    while not data.endswith(b"\n"):
        more = conn.recv(FIRST_READ)
        if not more:
            raise ConnectionError("the client went away mid-request")
        data += more
    return json.loads(data), list(fds)


def _child(conn: socket.socket) -> int:
    """Become the command the client asked for; returns its exit code."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)           # subprocess waits for its children
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # The command gets Ctrl-C as if typed here, even when the launcher was started with
    # SIGINT ignored (`cmq up &` from a script: a shell without job control starts
    # background commands so).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    try:
        request, fds = _receive(conn)
    except (OSError, ValueError):
        return 1
    if len(fds) != 3:
        return 1
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):                 # made for the launcher's log file
        stream.reconfigure(line_buffering=stream.isatty())
    os.environ.clear()
    os.environ.update(request["env"])
    os.umask(int(request["umask"]))
    code = 1
    try:
        conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
        os.chdir(request["cwd"])
        sys.argv = ["cmq", *request["argv"]]
        from .main import main

        code = main(list(request["argv"]))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        print("cmq: interrupted", file=sys.stderr)
        code = 130
    except OSError as e:
        print(f"cmq: {e}", file=sys.stderr)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    try:
        conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
    except OSError:
        pass
    return code
