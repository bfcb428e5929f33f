"""The controller's end of one machine's relay node: its ssh session (through a master
of the relays' own), the messages to it, and the controller's own feed of the file."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any

from ..config.inventory import Machine
from ..core.files import private_dir
from ..machine import ssh
from ..machine.runner import control_dir
from ..machine.session_client import BOOTSTRAP, json_lines
from .machine_copy import CHUNK

NODE_SOURCE = (Path(__file__).with_name("relay_node.py")).read_text()
#: ssh masters per machine that relays go through (several relays at once stay under
#: sshd's MaxSessions).
RELAY_MASTERS = 4
_IN_USE: set[int] = set()
_IN_USE_LOCK = threading.Lock()


def take_master() -> int:
    """The lowest relay master free in this process (relays one after another all use
    the first, which stays up between them; relays at once use others)."""
    with _IN_USE_LOCK:
        index = next((i for i in range(RELAY_MASTERS) if i not in _IN_USE), len(_IN_USE) % RELAY_MASTERS)
        _IN_USE.add(index)
        return index


def release_master(index: int) -> None:
    """The relay that took master ``index`` is over."""
    with _IN_USE_LOCK:
        _IN_USE.discard(index)


class NodeSession:
    """The controller's end of one machine's relay node (its ssh session). Writes go
    through a thread of their own, so a machine that stops reading never blocks the
    relay's loop."""

    #: Frames of the controller's feed queued for a machine before the feed waits.
    WINDOW = 8

    def __init__(self, machine: Machine, events: queue.Queue, connect_timeout: int, master: int = 0) -> None:
        self.machine = machine
        self.name = machine.name
        self.address = ""
        self.port = 0
        self.pid = 0                         #: the node's pid on its machine
        # Through a master of the relays' own, which stays for the next relay (as a job's
        # session goes through the machine's masters): no new ssh handshake per relay.
        control = ssh.control_path(private_dir(control_dir()), machine, f"relay-{master}")
        self.proc = subprocess.Popen(
            ssh.ssh_argv(machine, ["python3", "-c", BOOTSTRAP], control, connect_timeout=connect_timeout),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self._events = events
        self._out: queue.Queue = queue.Queue()
        self.window = threading.Semaphore(self.WINDOW)
        self.broken = threading.Event()
        self.send_line(json.dumps(NODE_SOURCE))
        threading.Thread(target=self._write, name=f"cmq-relay-out-{self.name}", daemon=True).start()
        threading.Thread(target=self._read, name=f"cmq-relay-in-{self.name}", daemon=True).start()

    def send_line(self, line: str, data: bytes = b"") -> bool:
        """Queue one line (and raw bytes after it); False once the session is gone."""
        if self.broken.is_set():
            return False
        self._out.put((line.encode() + b"\n" + data, bool(data)))
        return True

    def send(self, op: str, **fields: Any) -> bool:
        """Send one message to the node."""
        return self.send_line(json.dumps({"op": op, **fields}, separators=(",", ":")))

    def _write(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        while True:
            item = self._out.get()
            if item is None:
                break
            data, frame = item
            try:
                stdin.write(data)
                stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.broken.set()
            finally:
                if frame:
                    self.window.release()
            if self.broken.is_set():
                break
        try:
            stdin.close()
        except OSError:
            pass

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for msg in json_lines(self.proc.stdout):
            self._events.put((self.name, msg))
        err = b""
        try:
            err = self.proc.stderr.read() if self.proc.stderr else b""
        except (OSError, ValueError):
            pass
        lines = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
        code = self.proc.wait()
        self.broken.set()
        self._events.put((self.name, {"ev": "exit", "error": ssh.explain_failure("\n".join(lines), self.machine)
                                      or f"the relay ended with exit code {code}"}))

    def close(self, timeout: float = 10) -> None:
        """Ask the node to stop, then make sure it has."""
        self.send("close")
        self._out.put(None)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)


class Feed(threading.Thread):
    """The controller feeding one machine from a byte on, through its ssh session."""

    def __init__(self, node: NodeSession, source: Path, offset: int, size: int, ref: int) -> None:
        super().__init__(name=f"cmq-feed-{node.name}", daemon=True)
        self.node, self.source, self.offset, self.size, self.ref = node, source, offset, size, ref
        self.stopped = threading.Event()

    def run(self) -> None:
        with open(self.source, "rb") as f:
            f.seek(self.offset)
            pos = self.offset
            while pos < self.size and not self.stopped.is_set():
                data = f.read(CHUNK)
                if not data:
                    break
                while not self.node.window.acquire(timeout=1):
                    if self.stopped.is_set() or self.node.broken.is_set():
                        return
                header = json.dumps({"op": "feed", "offset": pos, "length": len(data), "ref": self.ref},
                                    separators=(",", ":"))
                if not self.node.send_line(header, data):
                    return
                pos += len(data)
