"""The machine's half of a relay: a small program run by ``python3`` on each machine that
receives one file, writes it, and passes it on to other machines while it arrives.

It must stay standalone (stdlib only, Python 3.6+): the controller sends this file's
source as the first line of an ssh session (as the session transport does), then
JSON lines. Nothing secret is ever in its arguments: tokens come on stdin.

In (stdin):
  ``start`` {path, size, sha256, stall, part, readonly, mtime, marker}: leave the file
      ``.cmq-relay-MARKER`` beside ``path`` (taken away at exit); open ``path`` + ``part``
      (a name of this copy's own: machines that share a disk never write one file),
      listen on the address the controller's ssh reached (port chosen by the kernel);
      answers ``ready``. The finished file gets time ``mtime`` (if given) and, with
      ``readonly``, loses its write permission.
  ``feed`` {offset, length, ref} followed by ``length`` raw bytes: data from the controller.
  ``expect`` {token, ref}: accept ONE inbound connection that presents ``token`` (any
      earlier token is forgotten); answers ``expecting`` {ref}. The sender is told how many
      bytes are here and sends the rest.
  ``serve`` {to, address, port, token, ref}: connect to machine ``to`` and send it the
      file from the offset it asks for, as this machine receives it.
  ``look`` {markers}: which of these markers (of other machines of the relay) are in the
      target's folder: machines that share this disk; answers ``seen`` {markers}.
  ``close``: stop listening and exit (stdin's end does the same).
Out (stdout):
  ``ready`` {address, port, pid}; ``expecting`` {ref}; ``progress`` {have}, at least once
  a second; ``lost`` {have, ref, error}: the inbound stream of attachment ``ref`` broke or
  stalled; ``done`` {ok, sha256, error}; ``served`` / ``unserved`` {to, ref, bytes, error};
  ``refused`` {peer}: a connection without the token; ``seen`` {markers}; ``error``
  {error}: this machine cannot take part (it exits).
The file counts (is renamed from ``.cmq-part`` to its name) only when every byte arrived
and its SHA-256 is the one ``start`` named.
"""

import hashlib
import hmac
import json
import os
import socket
import sys
import threading
import time

CHUNK = 1 << 20
#: Seconds a connection has to present its token.
GREET_TIMEOUT = 5
#: Connections that may be presenting a token at once.
GREETERS = 16
_out_lock = threading.Lock()


def send(msg):
    data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
    with _out_lock:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def _address():
    parts = os.environ.get("SSH_CONNECTION", "").split()
    return parts[2] if len(parts) == 4 else "127.0.0.1"


class Node:
    def __init__(self, path, size, sha256, stall, part, readonly, mtime, marker):
        self.path, self.size, self.sha256, self.stall = path, size, sha256, stall
        self.readonly, self.mtime = readonly, mtime
        self.part = path + part
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.out = open(self.part, "wb")
        self.reader = os.open(self.part, os.O_RDONLY)     # served from, whatever renames follow
        self.greeters = threading.BoundedSemaphore(GREETERS)
        self.marker = os.path.join(folder or ".", f".cmq-relay-{marker}") if marker else None
        if self.marker:
            open(self.marker, "w").close()
        self.have = 0
        self.hash = hashlib.sha256()
        self.cond = threading.Condition()
        self.finished = False
        self.failed = False
        self.token = None
        self.ref = None
        self.inbound = None
        self.listener = socket.socket(socket.AF_INET6 if ":" in _address() else socket.AF_INET)
        self.listener.bind((_address(), 0))
        self.listener.listen(8)

    # -- receiving ---------------------------------------------------------------------
    def absorb(self, offset, data):
        """Write the part of ``data`` (found at ``offset`` of the file) beyond what is
        here; False when it leaves a gap (the stream started past what this machine has)."""
        with self.cond:
            if self.finished or self.failed:
                return True
            if offset > self.have:
                return False
            fresh = data[self.have - offset:]
            if fresh:
                fresh = fresh[:self.size - self.have]
                self.out.write(fresh)
                self.out.flush()
                self.hash.update(fresh)
                self.have += len(fresh)
                self.cond.notify_all()
            if self.have >= self.size:
                self._complete()
        return True

    def _complete(self):
        self.out.close()
        digest = self.hash.hexdigest()
        ok = digest == self.sha256
        if ok:
            if self.mtime is not None:
                os.utime(self.part, (self.mtime, self.mtime))
            if self.readonly:
                os.chmod(self.part, 0o444)
            os.replace(self.part, self.path)
            self.part = self.path
        self.finished, self.failed = ok, not ok
        self.cond.notify_all()
        self._stop_listening()
        send({"ev": "done", "ok": ok, "sha256": digest,
              "error": "" if ok else f"checksum mismatch: sha256 {digest} here, {self.sha256} sent"})

    def _stop_listening(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)      # wakes the accept() blocked on it
        except OSError:
            pass
        try:
            self.listener.close()
        except OSError:
            pass

    def accept_loop(self):
        while not (self.finished or self.failed):
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return
            if not self.greeters.acquire(blocking=False):     # a crowd at the door: not the feeder
                _close(conn)
                continue
            threading.Thread(target=self._greet, args=(conn, peer), daemon=True).start()

    def _greet(self, conn, peer):
        ref = None
        try:
            conn.settimeout(GREET_TIMEOUT)
            line = _readline(conn, 256)
            with self.cond:
                token, ok, ref = self.token, False, self.ref
                if token is not None and hmac.compare_digest(line.strip(), token.encode()):
                    ok, self.token = True, None
                    old, self.inbound = self.inbound, conn
                    offset = self.have
            if not ok:
                send({"ev": "refused", "peer": "{}:{}".format(*peer[:2])})
                _close(conn)
                return
            if old is not None:
                _close(old)
            conn.sendall(b"%d\n" % offset)
        except OSError as e:
            if ref is not None:
                send({"ev": "lost", "have": self.have, "ref": ref, "error": f"handshake: {e}"})
            _close(conn)
            return
        finally:
            self.greeters.release()
        self._receive(conn, offset, ref)

    def _receive(self, conn, offset, ref):
        conn.settimeout(self.stall)
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        error = "the sender closed the stream early"
        try:
            while not (self.finished or self.failed):
                n = conn.recv_into(view)
                if n == 0:
                    break
                if not self.absorb(offset, bytes(view[:n])):
                    error = "the stream skipped bytes"
                    break
                offset += n
        except socket.timeout:  # noqa: UP041 - TimeoutError is only its name from Python 3.10
            error = f"no data for {self.stall}s"
        except OSError as e:
            error = str(e)
        with self.cond:
            current = self.inbound is conn
            if current:
                self.inbound = None
        _close(conn)
        if current and not (self.finished or self.failed):
            send({"ev": "lost", "have": self.have, "ref": ref, "error": error})

    # -- sending -----------------------------------------------------------------------
    def serve(self, to, address, port, token, ref):
        sent = 0
        try:
            conn = socket.create_connection((address, port), timeout=10)
            try:
                conn.sendall(token.encode() + b"\n")
                pos = int(_readline(conn, 32) or b"-1")
                if pos < 0:
                    raise OSError(f"refused by {to}")
                conn.settimeout(self.stall)
                # Waits as long as this machine waits for data itself: whether its own
                # feeder is dead or starved is the controller's to tell (it hears both).
                with os.fdopen(os.dup(self.reader), "rb") as f:
                    while pos < self.size:
                        with self.cond:
                            while self.have <= pos and not self.failed:
                                self.cond.wait(1)
                            if self.failed:
                                raise OSError("this machine's copy failed")
                            end = self.have
                        n = conn.sendfile(f, pos, end - pos)
                        if n <= 0:
                            raise OSError("sendfile sent nothing")
                        pos += n
                        sent += n
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(self.stall)
                conn.recv(1)         # the receiver closes once it has everything
            finally:
                _close(conn)
        except (OSError, ValueError) as e:
            send({"ev": "unserved", "to": to, "ref": ref, "bytes": sent, "error": str(e) or type(e).__name__})
            return
        send({"ev": "served", "to": to, "ref": ref, "bytes": sent})


def _readline(conn, limit):
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = conn.recv(1)
        if not chunk:
            break
        data += chunk
    return data.strip()


def _close(conn):
    try:
        conn.close()
    except OSError:
        pass


def _progress(node):
    """The bytes here as they grow, and at least once a second (the controller hears that
    this machine is alive even while it waits for data)."""
    last, quiet = -1, 0
    while not node.failed:
        if node.have != last or quiet >= 4:
            last, quiet = node.have, 0
            send({"ev": "progress", "have": last})
        quiet += 1
        time.sleep(0.25)


def main():
    node = None
    stdin = sys.stdin.buffer
    try:
        while True:
            line = stdin.readline()
            if not line:
                break
            msg = json.loads(line)
            op = msg.get("op")
            if op == "start":
                node = Node(msg["path"], int(msg["size"]), msg["sha256"], float(msg.get("stall") or 15),
                            msg.get("part") or ".cmq-part", bool(msg.get("readonly")), msg.get("mtime"),
                            msg.get("marker"))
                address, port = node.listener.getsockname()[:2]
                send({"ev": "ready", "address": address, "port": port, "pid": os.getpid()})
                threading.Thread(target=node.accept_loop, daemon=True).start()
                threading.Thread(target=_progress, args=(node,), daemon=True).start()
                if node.size == 0:
                    with node.cond:
                        node._complete()
            elif op == "feed":
                data = stdin.read(int(msg["length"]))
                if node is not None and not node.absorb(int(msg["offset"]), data):
                    send({"ev": "lost", "have": node.have, "ref": msg.get("ref"),
                          "error": "the controller's feed skipped bytes"})
            elif op == "expect" and node is not None:
                with node.cond:
                    node.token, node.ref = msg["token"], msg.get("ref")
                send({"ev": "expecting", "ref": msg.get("ref")})
            elif op == "serve" and node is not None:
                threading.Thread(target=node.serve, daemon=True,
                                 args=(msg["to"], msg["address"], int(msg["port"]), msg["token"],
                                       msg.get("ref"))).start()
            elif op == "look" and node is not None:
                folder = os.path.dirname(node.marker or "") or "."
                seen = [m for m in msg.get("markers", []) if os.path.exists(os.path.join(folder, f".cmq-relay-{m}"))]
                send({"ev": "seen", "markers": seen})
            elif op == "close":
                break
    except Exception as e:  # noqa: BLE001 - whatever it is, the controller hears it in one line
        send({"ev": "error", "error": f"{type(e).__name__}: {e}"})
        code = 1
    else:
        code = 0
    if node is not None:
        node._stop_listening()
        if node.marker:
            try:
                os.unlink(node.marker)
            except OSError:
                pass
        if not node.finished:
            try:
                os.unlink(node.part)
            except OSError:
                pass
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
