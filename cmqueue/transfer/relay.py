"""Send one file to many machines through relays: the controller's side.

The controller starts :mod:`cmqueue.transfer.relay_node` on every machine over its own
ssh session, sends each byte over its own link once per zone (more only when a relay
fails), and tells each machine, over that machine's ssh session, whom to feed and which
one-time token to present; each receiver accepts one connection carrying its token. The
plan (:mod:`cmqueue.transfer.relay_plan`) says who feeds whom; this module runs it,
reports each machine's bytes and feeder, and routes around a relay that dies or stalls:
the machines it fed are fed by its nearest live ancestor, or by the controller, from
the byte they have. A machine that ends without a verified copy is reported failed, and
its job copies it directly.
"""

from __future__ import annotations

import logging
import queue
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.inventory import Machine
from ..core import defaults
from ..core.models import PlainData
from . import relay_plan
from .machine_copy import Transfer, sha256_file
from .relay_plan import CONTROLLER
from .relay_session import Feed, NodeSession, release_master, take_master

log = logging.getLogger("cmq.transfer")

#: Seconds a machine's relay node may take to start and listen.
START_TIMEOUT = 30.0
#: Times a machine is given a new machine feeder before the controller feeds it.
MAX_REROUTES = 3
#: Called with (machine, bytes there, feeder) as copies progress.
OnProgress = Callable[[str, int, str], None]


@dataclass
class CopyOutcome(PlainData):
    """How one machine's copy ended: verified or not, and who fed it."""

    machine: str
    ok: bool = False
    fed_by: str = ""
    feeders: list[str] = field(default_factory=list)   #: every feeder, in order (reroutes)
    bytes: int = 0
    seconds: float = 0.0
    error: str = ""
    shared_with: str = ""     #: its disk is the one another machine of the relay wrote


_SHAS: dict[tuple[str, int, int, int], str] = {}
_SHAS_LOCK = threading.Lock()


def source_sha256(path: Path) -> str:
    """SHA-256 of a local file, computed once while it is unchanged."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
    with _SHAS_LOCK:
        if key in _SHAS:
            return _SHAS[key]
    digest = sha256_file(path)
    with _SHAS_LOCK:
        if len(_SHAS) >= 256:            # a worker lives long: keep the last files only
            _SHAS.clear()
        _SHAS[key] = digest
    return digest


@dataclass
class _Copy:
    """The controller's view of one machine during the relay."""

    machine: Machine
    target: str
    feeder: str = CONTROLLER
    feeders: list[str] = field(default_factory=list)
    have: int = 0
    reroutes: int = 0
    ref: int = 0                                             #: the current attachment
    part: str = field(default_factory=lambda: f".cmq-part-{secrets.token_hex(4)}")   #: suffix of the partial file
    started: float = field(default_factory=time.monotonic)
    changed: float = field(default_factory=time.monotonic)   #: when ``have`` last grew
    heard: float = field(default_factory=time.monotonic)     #: when its node last spoke
    shares_with: str = ""                                    #: the machine that writes its disk's copy
    outcome: CopyOutcome | None = None


class Relay:
    """One relayed copy of ``source`` to ``targets`` ({machine name: (machine, path there)})
    along ``feeders`` (a plan of :mod:`relay_plan`); ``readonly`` copies lose their write
    permission (the input cache's files are hard-linked into jobs); ``mtime`` is given to
    every copy (a storage service keeps the source's time). Each copy is checked against
    ``sha256`` when given (what the file was when a job was submitted), else the source's
    SHA-256 now."""

    def __init__(self, source: Path, targets: dict[str, tuple[Machine, str]], feeders: dict[str, str], *,
                 on_progress: OnProgress | None = None, stall: float = defaults.RELAY_STALL,
                 connect_timeout: int = defaults.CONNECT_TIMEOUT, readonly: bool = False,
                 mtime: float | None = None, sha256: str | None = None) -> None:
        self.source = Path(source)
        self.sha256 = sha256
        self.tag = secrets.token_hex(6)
        self.readonly = readonly
        self.mtime = mtime
        self.size = self.source.stat().st_size
        self.plan = dict(feeders)
        self.copies = {name: _Copy(machine=m, target=t) for name, (m, t) in targets.items()}
        self.on_progress = on_progress
        self.stall = stall
        self.connect_timeout = connect_timeout
        self.events: queue.Queue = queue.Queue()
        self.nodes: dict[str, NodeSession] = {}
        self.feeds: dict[str, Feed] = {}
        self.gone: set[str] = set()          #: machines that feed no one any more
        #: machine -> (ref, feeder, token) of an attachment whose receiver has not answered
        self.waiting: dict[str, tuple[int, str, str]] = {}
        self._refs = 0

    # -- the run -----------------------------------------------------------------------
    def run(self) -> dict[str, CopyOutcome]:
        """Copy to every machine; {machine: outcome}. Never raises for one machine's fault."""
        t0 = time.monotonic()
        sha = self.sha256 or source_sha256(self.source)
        t1 = time.monotonic()
        self.master = take_master()
        try:
            self._start(sha)
            self._look()
            t2 = time.monotonic()
            for c in self.copies.values():     # the stall clocks start with the copies
                c.started = c.changed = c.heard = t2
            for name in self._order():
                if self.copies[name].outcome is None and not self.copies[name].shares_with:
                    self._attach(name, self._feeder_of(name))
            self._loop()
            t3 = time.monotonic()
            log.info("relay of %s to %d machine(s): sha256 %.2fs, nodes ready %.2fs, copies %.2fs", self.source,
                     len(self.copies), t1 - t0, t2 - t1, t3 - t2)
        finally:
            for f in self.feeds.values():
                f.stopped.set()
            threads = [threading.Thread(target=self._close, args=(name,), daemon=True) for name in self.nodes]
            for t in threads:
                t.start()
            for t in threads:
                t.join(self.connect_timeout + 25)
            release_master(self.master)
        return {name: c.outcome or CopyOutcome(machine=name, error="the relay ended before this copy")
                for name, c in self.copies.items()}

    def _close(self, name: str) -> None:
        """End ``name``'s node; where its copy failed, take away what it left (a node
        killed on its machine could not)."""
        c = self.copies[name]
        ok = c.outcome is not None and c.outcome.ok
        self.nodes[name].close(timeout=10 if ok else 1)
        if not ok:
            try:
                Transfer(c.machine).run('rm -f -- "$1"', c.target + c.part, timeout=self.connect_timeout + 10)
            except (OSError, subprocess.SubprocessError) as e:
                log.warning("relay: cannot remove %s%s on %s: %s", c.target, c.part, name, e)

    def _order(self) -> list[str]:
        """Machines, feeders before the machines they feed."""
        done: list[str] = []
        pending = list(self.copies)
        while pending:
            ready = [m for m in pending if self.plan.get(m, CONTROLLER) in (CONTROLLER, *done)
                     or self.plan.get(m) not in self.copies]
            ready = ready or pending[:1]
            done += ready
            pending = [m for m in pending if m not in ready]
        return done

    def _start(self, sha: str) -> None:
        for name, c in self.copies.items():
            self.nodes[name] = NodeSession(c.machine, self.events, self.connect_timeout, self.master)
            self.nodes[name].send("start", path=c.target, size=self.size, sha256=sha, stall=self.stall,
                                  part=c.part, readonly=self.readonly, mtime=self.mtime,
                                  marker=f"{self.tag}-{name}")
        waiting = set(self.copies)
        deadline = time.monotonic() + START_TIMEOUT + self.connect_timeout
        while waiting and time.monotonic() < deadline:
            try:
                name, msg = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if msg.get("ev") == "ready":
                node = self.nodes[name]
                node.address, node.port, node.pid = msg["address"], int(msg["port"]), int(msg.get("pid") or 0)
                waiting.discard(name)
            elif msg.get("ev") == "done" and msg.get("ok"):      # an empty file is done at once
                self._finish(name, True, "")
                waiting.discard(name)
            elif msg.get("ev") in ("exit", "error"):
                self._fail(name, f"relay did not start: {msg.get('error')}")
                waiting.discard(name)
        for name in waiting:
            self._fail(name, f"relay did not start within {START_TIMEOUT + self.connect_timeout:.0f}s")

    def _look(self) -> None:
        """Machines that share a disk with one before them in the plan (each sees the
        other's marker beside the target) get no copy of their own: the first writes,
        and the others' copies are its copy."""
        live = [n for n in self._order() if self.copies[n].outcome is None]
        if len(live) < 2:
            return
        marker = {n: f"{self.tag}-{n}" for n in live}
        owner = {m: n for n, m in marker.items()}
        for n in live:
            self.nodes[n].send("look", markers=[marker[o] for o in live if o != n])
        seen: dict[str, set[str]] = {}
        deadline = time.monotonic() + START_TIMEOUT
        while len(seen) < len(live) and time.monotonic() < deadline:
            try:
                name, msg = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if msg.get("ev") == "seen":
                seen[name] = {owner[m] for m in msg.get("markers", []) if m in owner}
            else:
                self._handle(name, msg)
                if self.copies[name].outcome is not None:
                    seen.setdefault(name, set())
        writers: list[str] = []
        for n in live:
            w = next((w for w in writers if w in seen.get(n, set()) or n in seen.get(w, set())), None)
            if w is None or self.copies[n].outcome is not None:
                writers.append(n)
                continue
            log.info("relay: %s shares the disk of %s's copy: it gets no copy of its own", n, w)
            self.copies[n].shares_with = w
            self.gone.add(n)

    def _loop(self) -> None:
        """Handle the nodes' events until every copy has ended. A node not heard for
        :meth:`_deaf_after` seconds feeds no one any more (its machines get another
        feeder); a copy that gains no byte for four stall periods (its machine stopped,
        or every feeder it gets does) fails."""
        while any(c.outcome is None for c in self.copies.values()):
            try:
                name, msg = self.events.get(timeout=1)
                self._handle(name, msg)
            except queue.Empty:
                pass
            now = time.monotonic()
            for n, c in self.copies.items():
                if n not in self.gone and now - c.heard > self._deaf_after():
                    log.warning("relay: nothing from %s for %.0fs: it feeds no one any more", n, now - c.heard)
                    self._lose(n)
                if c.outcome is None and not c.shares_with and now - c.changed > 4 * self.stall:
                    self._fail(n, f"no byte arrived for {4 * self.stall:.0f}s")

    def _deaf_after(self) -> float:
        """Seconds of silence after which a node counts as stuck (it speaks every second)."""
        return max(3.0, self.stall / 2)

    def _handle(self, name: str, msg: dict[str, Any]) -> None:
        ev = msg.get("ev")
        c = self.copies.get(name)
        if c is None:
            return
        c.heard = time.monotonic()
        if ev == "progress":
            have = int(msg.get("have", 0))
            if have > c.have:
                c.have, c.changed = have, time.monotonic()
            if self.on_progress:
                self.on_progress(name, c.have, c.feeder)
        elif ev == "done":
            c.have = self.size if msg.get("ok") else c.have
            self._finish(name, bool(msg.get("ok")), msg.get("error", ""))
        elif ev == "lost":
            c.have = max(c.have, int(msg.get("have", 0)))
            if c.outcome is None and msg.get("ref") == c.ref:     # not a feed replaced already
                log.warning("relay: %s lost its feed from %s at %d bytes (%s)", name, c.feeder, c.have,
                            msg.get("error"))
                if c.feeder != CONTROLLER and c.feeder not in self.gone:
                    up = self.copies[c.feeder]
                    if (time.monotonic() - up.heard < self._deaf_after() and up.outcome is None
                            and up.have <= c.have):      # alive, and waiting for data itself: keep it
                        self._attach(name, c.feeder, reroute=False)
                        return
                    self.gone.add(c.feeder)     # dead or stuck: it feeds no one any more
                self._attach(name, self._feeder_of(name))
        elif ev == "expecting":
            ref, feeder, token = self.waiting.get(name, (None, "", ""))
            if ref is not None and msg.get("ref") == ref and c.outcome is None:
                del self.waiting[name]
                if not self.nodes[feeder].send("serve", to=name, address=self.nodes[name].address,
                                               port=self.nodes[name].port, token=token, ref=ref):
                    self.gone.add(feeder)
                    self._attach(name, self._feeder_of(name))
        elif ev == "unserved":
            to = msg.get("to", "")
            d = self.copies.get(to)
            if d is not None and d.outcome is None and d.feeder == name and msg.get("ref") == d.ref:
                log.warning("relay: %s cannot feed %s (%s): the controller does", name, to, msg.get("error"))
                self._attach(to, CONTROLLER)
        elif ev == "refused":
            log.warning("relay: %s refused a connection without its token from %s", name, msg.get("peer"))
        elif ev in ("exit", "error"):
            if c.outcome is None:
                self._fail(name, str(msg.get("error") or "the relay ended"))

    def _feeder_of(self, name: str) -> str:
        c = self.copies[name]
        if c.reroutes >= MAX_REROUTES:
            return CONTROLLER
        up = relay_plan.reroute(self.plan, name, self.gone | {n for n in self.copies if n not in self.nodes})
        return up if up == CONTROLLER or up in self.nodes else CONTROLLER

    def _attach(self, name: str, feeder: str, reroute: bool = True) -> None:
        """Have ``feeder`` feed ``name`` from the bytes ``name`` has (``reroute``: a new
        feeder, counted against :data:`MAX_REROUTES`)."""
        c = self.copies[name]
        if reroute:
            if c.feeders:
                c.reroutes += 1
            c.feeders.append(feeder)
        c.feeder = feeder
        old = self.feeds.pop(name, None)
        if old is not None:
            old.stopped.set()
        self.waiting.pop(name, None)
        node = self.nodes[name]
        self._refs += 1
        c.ref = self._refs
        if feeder == CONTROLLER:       # no one holds the token: any earlier one is void
            node.send("expect", token=secrets.token_urlsafe(32), ref=c.ref)
            feed = self.feeds[name] = Feed(node, self.source, c.have, self.size, c.ref)
            feed.start()
        else:       # the feeder is told once the receiver answers that it expects the token
            self.waiting[name] = (c.ref, feeder, secrets.token_urlsafe(32))
            node.send("expect", token=self.waiting[name][2], ref=c.ref)
        if self.on_progress:
            self.on_progress(name, c.have, feeder)

    def _finish(self, name: str, ok: bool, error: str) -> None:
        c = self.copies[name]
        if c.outcome is not None:
            return
        c.outcome = CopyOutcome(machine=name, ok=ok, fed_by=c.feeder, feeders=list(c.feeders),
                                bytes=self.size if ok else c.have, seconds=time.monotonic() - c.started,
                                error=error)
        if not ok:
            self._lose(name)
        feed = self.feeds.pop(name, None)
        if feed is not None:
            feed.stopped.set()
        for other, o in self.copies.items():        # the machines that share its disk have it too
            if o.shares_with == name and o.outcome is None:
                o.outcome = CopyOutcome(machine=other, ok=ok, shared_with=name, feeders=[], bytes=c.outcome.bytes,
                                        seconds=time.monotonic() - o.started,
                                        error="" if ok else f"the copy on the disk it shares with {name} failed")

    def _fail(self, name: str, error: str) -> None:
        if self.copies[name].outcome is None:
            self._finish(name, False, error)
        self._lose(name)

    def _lose(self, name: str) -> None:
        """``name`` feeds no one any more: its machines get a new feeder (it may be gone
        already, for one of them that lost its feed: the others still need one)."""
        self.gone.add(name)
        for child, c in self.copies.items():
            if c.feeder == name and c.outcome is None and child in self.nodes:
                self._attach(child, self._feeder_of(child))
