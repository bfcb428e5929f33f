"""Move files and trees to and from one machine, verified. Knows nothing of jobs.

Every transfer goes through the machine's ssh master with the same options as jobs.
A single file that is new on the machine goes as a plain byte stream (sendfile(2) into
ssh), kept there only when its POSIX ``cksum`` (CRC and size) matches this end's, which
is computed once per file and process: the fastest way on a CPU-bound host, where
rsync's protocol costs more than it saves. ``rsync`` is used where both ends have it for
trees and for a file that is already there (only its changes travel; it checks each file
against a whole-file checksum computed while the data streams); elsewhere a tar stream
over ssh, followed by a SHA-256 comparison of both ends.
Machines with ``mode: local`` use the same code without ssh.

Remote paths that are relative are taken from the machine's workdir, so that a file put
with ``cmq put data.txt m1:`` is where a job on m1 finds it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config.inventory import Machine
from ..core import defaults
from ..core.errors import CmqError, MissingError
from ..core.models import PlainData
from ..machine import ssh

#: Callback given the bytes moved so far.
Progress = Callable[[int], None]

CHUNK = 1 << 20

# Look at a remote path and at the tools there, in one round trip:
#   sh -c PROBE cmq-probe PATH
# prints "rsync" / "sha256sum" when present, then "kind d|f|-" for PATH.
_PROBE = (
    'command -v rsync >/dev/null 2>&1 && echo rsync; '
    'command -v sha256sum >/dev/null 2>&1 && echo sha256sum; '
    'if [ -d "$1" ]; then echo "kind d"; elif [ -e "$1" ]; then echo "kind f"; else echo "kind -"; fi'
)
# SHA-256 of every file under a directory (paths relative, ./ prefixed) or of one file.
_MANIFEST = (
    'if [ -d "$1" ]; then cd -- "$1" && find . -type f -exec sha256sum -- {} +; '
    'else sha256sum -- "$1" | sed "s|  .*|  .|"; fi'
)
_RECEIVE_FILE = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1.cmq-part" && mv -f -- "$1.cmq-part" "$1"'
# Receive one file and keep it only when its POSIX cksum (CRC and size) is $2's.
_RECEIVE_CHECKED = (
    'mkdir -p -- "$(dirname -- "$1")" && cat > "$1.cmq-part" || exit 1; '
    'got=$(cksum < "$1.cmq-part"); '
    'if [ "$got" = "$2" ]; then mv -f -- "$1.cmq-part" "$1"; '
    'else rm -f -- "$1.cmq-part"; echo "checksum mismatch: cksum $got here, $2 sent" >&2; exit 1; fi'
)
_RECEIVE_TREE = 'mkdir -p -- "$1" && tar -C "$1" -xf -'
_SEND_TREE = 'tar -C "$1" -cf - .'
_SEND_FILE = 'cat -- "$1"'


def error_line(stderr: bytes | None, fallback: str) -> str:
    """The line of a failed command's stderr that says what went wrong (tar's closing
    "Exiting with failure status" says nothing)."""
    lines = [ln for ln in (stderr or b"").decode("utf-8", "replace").strip().splitlines()
             if ln.strip() and "Exiting with failure status" not in ln]
    return lines[-1] if lines else fallback


class TransferError(CmqError):
    """A transfer failed; the message names the machine and the path."""


class SourceMissingError(TransferError, MissingError):
    """What a transfer should copy is not there (or is a directory without recursive):
    trying again cannot help, so it fails at once."""


@dataclass
class TransferResult(PlainData):
    """What one transfer moved, how, and whether it was verified."""

    machine: str
    direction: str
    source: str
    dest: str
    bytes: int = 0
    files: int = 0
    seconds: float = 0.0
    method: str = ""
    verified: str = ""
    #: Who sent the bytes of a relayed put: another machine, or "controller" (this host).
    fed_by: str = ""
    #: Why a put meant to be relayed was copied directly.
    note: str = ""


def human_bytes(n: float) -> str:
    """``1.5 MB`` style size (powers of 1000, as rich and rsync print rates)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def describe(r: TransferResult) -> str:
    """One line: what moved, how fast, and how it was checked."""
    rate = r.bytes / r.seconds if r.seconds > 0 else 0
    arrow = f"{r.source} -> {r.machine}:{r.dest}" if r.direction == "put" else f"{r.machine}:{r.source} -> {r.dest}"
    fed = f" from {r.fed_by}" if r.fed_by else ""
    note = f" ({r.note})" if r.note else ""
    return (f"{r.direction} {arrow}: {r.files} file(s), {human_bytes(r.bytes)} in {r.seconds:.2f}s "
            f"({human_bytes(rate)}/s) by {r.method}{fed}, verified by {r.verified}{note}")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a local file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def walk_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of every regular file under ``root``, sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file():
                yield p.relative_to(root).as_posix(), p


def local_manifest(path: Path) -> dict[str, str]:
    """{relative path: sha256} of a tree (``.`` for a single file)."""
    if path.is_dir():
        return {f"./{rel}": sha256_file(p) for rel, p in walk_files(path)}
    return {".": sha256_file(path)}


_CKSUMS: dict[tuple[str, int, int], str] = {}
_CKSUMS_LOCK = threading.Lock()


def local_cksum(path: Path) -> str:
    """POSIX ``cksum`` of a local file ("CRC SIZE"), remembered while the file is unchanged
    (a fan-out reads it once per process, not once per machine)."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _CKSUMS_LOCK:
        if key in _CKSUMS:
            return _CKSUMS[key]
    with path.open("rb") as f:
        proc = subprocess.run(["cksum"], stdin=f, capture_output=True, check=False)
    if proc.returncode != 0:
        raise TransferError(f"{path}: cksum failed: " + error_line(proc.stderr, f"exit {proc.returncode}"))
    value = proc.stdout.decode().strip()
    with _CKSUMS_LOCK:
        _CKSUMS[key] = value
    return value


def local_size(path: Path) -> tuple[int, int]:
    """(bytes, files) of a file or tree."""
    if path.is_dir():
        sizes = [p.stat().st_size for _, p in walk_files(path)]
        return sum(sizes), len(sizes)
    return path.stat().st_size, 1


def parse_manifest(text: str) -> dict[str, str]:
    """sha256sum's output as {path: sha256}."""
    out = {}
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if name:
            out[name] = digest
    return out


def remote_path(workdir: str, path: str) -> str:
    """Where ``path`` lives on the machine, as the remote shell sees it (home = cwd).

    Absolute paths stay; ``~/x`` is ``x`` (ssh starts in the home directory); other
    relative paths are under the workdir.
    """
    if path.startswith("/"):
        return posixpath.normpath(path)
    if path in ("~", "~/"):
        return "."
    if path.startswith("~/"):
        return posixpath.normpath(path[2:])
    if path.startswith("~"):
        raise TransferError(f"{path}: ~user paths are not supported; use an absolute path")
    base = remote_path("/", workdir) if workdir.startswith("/") else remote_path(".", workdir)
    return posixpath.normpath(posixpath.join(base, path or "."))


def _send_file(reader, writer, progress: Progress | None) -> int:
    """Copy an open file into a pipe with sendfile(2) (no copy through Python); returns
    the bytes sent. Where the kernel cannot, nothing is sent and the caller reads and
    writes the rest itself (from the file's position, which this leaves at the end of
    what was sent)."""
    sent = 0
    try:
        while n := os.sendfile(writer.fileno(), reader.fileno(), None, CHUNK):
            sent += n
            if progress:
                progress(sent)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOSYS) or sent:
            raise
    return sent


_PROGRESS2 = re.compile(rb"^\s*([\d,]+)\s+\d+%")


class Transfer:
    """Transfers to and from one machine (thread safe: each call is its own process)."""

    def __init__(self, machine: Machine, control: str | None = None, *,
                 connect_timeout: int = defaults.CONNECT_TIMEOUT,
                 control_persist: int = defaults.CONTROL_PERSIST) -> None:
        self.machine = machine
        self.control = control
        self._kw = {"persist": control_persist, "connect_timeout": connect_timeout}
        self._tools: set[str] | None = None
        self._lock = threading.Lock()

    # -- remote commands --------------------------------------------------------------
    def argv(self, remote: list[str]) -> list[str]:
        """argv running ``remote`` on the machine (ssh through the master, or locally)."""
        if self.machine.mode == "ssh":
            return ssh.ssh_argv(self.machine, remote, self.control, **self._kw)
        return remote

    def script(self, script: str, *args: str) -> list[str]:
        """argv running POSIX sh ``script`` with ``args`` as $1... on the machine."""
        return self.argv(["sh", "-c", script, "cmq", *args])

    def _cwd(self) -> str | None:
        return os.path.expanduser("~") if self.machine.mode != "ssh" else None

    def run(self, script: str, *args: str, input: bytes | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run ``script`` on the machine and return the completed process (bytes)."""
        return subprocess.run(self.script(script, *args), input=input, capture_output=True,
                              cwd=self._cwd(), timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def _fail(self, what: str, proc: subprocess.CompletedProcess | None = None, detail: str = "") -> TransferError:
        if proc is not None and not detail:
            detail = error_line(proc.stderr, f"exit code {proc.returncode}")
        return TransferError(f"{self.machine.name}: {what}: {detail}")

    def probe(self, path: str) -> str:
        """Kind of remote ``path`` ('d', 'f' or '-'); also learns which tools are there."""
        proc = self.run(_PROBE, path, timeout=self._kw["connect_timeout"] + 30)
        if proc.returncode != 0:
            raise self._fail(f"cannot reach the machine to look at {path}", proc)
        lines = proc.stdout.decode().split("\n")
        with self._lock:
            self._tools = {x for x in lines if x in ("rsync", "sha256sum")}
        return next((x[5:] for x in lines if x.startswith("kind ")), "-")

    def method(self) -> str:
        """'rsync' when both ends have it (and the machine allows it), else 'tar'."""
        choice = self.machine.transfer
        if choice == "tar":
            return "tar"
        both = shutil.which("rsync") is not None and "rsync" in (self._tools or set())
        if choice == "rsync" and not both:
            raise TransferError(f"{self.machine.name}: transfer: rsync, but rsync is missing on "
                                f"{'this machine' if not shutil.which('rsync') else 'the machine'}")
        return "rsync" if both else "tar"

    def remote_manifest(self, path: str) -> dict[str, str]:
        """{relative path: sha256} of a remote file or tree."""
        proc = self.run(_MANIFEST, path)
        if proc.returncode != 0:
            raise self._fail(f"cannot checksum {path}", proc)
        return parse_manifest(proc.stdout.decode("utf-8", "surrogateescape"))

    # -- put / get ----------------------------------------------------------------------
    def put(self, src: Path, dst: str, *, recursive: bool = False,
            progress: Progress | None = None) -> TransferResult:
        """Copy local ``src`` to ``dst`` on the machine, by cmq's one rule for trees
        (rclone's): a directory (with ``recursive``) gives its contents to ``dst``, whatever
        the slashes; one file goes inside ``dst`` when it ends in ``/`` (or is the workdir
        itself, ``""``), else is written as ``dst``."""
        src = Path(src)
        if not src.exists():
            raise SourceMissingError(f"{src}: no such file or directory")
        if src.is_dir() and not recursive:
            raise SourceMissingError(f"{src} is a directory; use --recursive")
        target = self.target_of(src, dst)
        t0 = time.monotonic()
        kind = self.probe(target)
        size, files = local_size(src)
        method = self.method()
        what = f"put {src} to {target}"
        if src.is_file() and not (method == "rsync" and kind == "f"):
            # One file, new there (or no rsync): a plain stream, checked by cksum at both
            # ends. rsync is kept for a file that exists there (it sends only the changes).
            self.pipe_out(None, self.script(_RECEIVE_CHECKED, target, local_cksum(src)), progress, what=what,
                          source=src)
            method, verified = "stream", "cksum (CRC and size) of both ends"
        elif method == "rsync":
            self._rsync_put(src, target, progress)
            verified = "rsync whole-file checksum"
        else:
            self.pipe_out(["tar", "-C", str(src), "-cf", "-", "."], self.script(_RECEIVE_TREE, target), progress,
                          what=what)
            self.verify(local_manifest(src), self.remote_manifest(target), what)
            verified = "sha256"
        return TransferResult(machine=self.machine.name, direction="put", source=str(src), dest=target,
                              bytes=size, files=files, seconds=time.monotonic() - t0, method=method,
                              verified=verified)

    def target_of(self, src: Path, dst: str) -> str:
        """The path on the machine that :meth:`put` of ``src`` to ``dst`` writes."""
        inside = src.is_file() and (dst.endswith("/") or dst in ("", "~"))
        return remote_path(self.machine.workdir, dst.rstrip("/") + "/" + src.name if inside else dst)

    def get(self, src: str, dst: Path | str, *, recursive: bool = False,
            progress: Progress | None = None) -> TransferResult:
        """Copy ``src`` from the machine to local ``dst`` by the same rule as :meth:`put`:
        a directory gives its contents to ``dst``; one file goes inside ``dst`` when it
        ends in ``/`` or is a directory, else is written as ``dst``."""
        source = remote_path(self.machine.workdir, src)
        t0 = time.monotonic()
        kind = self.probe(source)
        if kind == "-":
            raise SourceMissingError(f"{self.machine.name}:{source}: no such file or directory")
        if kind == "d" and not recursive:
            raise SourceMissingError(f"{self.machine.name}:{source} is a directory; use --recursive")
        into = str(dst).endswith("/")
        dst = Path(dst)
        if kind == "f" and (into or dst.is_dir()):
            dst = dst / posixpath.basename(source)
        dst.parent.mkdir(parents=True, exist_ok=True)
        method = self.method()
        if method == "rsync":
            self._rsync_get(source, dst, kind, progress)
            verified = "rsync whole-file checksum"
        else:
            if kind == "d":
                dst.mkdir(parents=True, exist_ok=True)
                self._pipe_in(self.script(_SEND_TREE, source), ["tar", "-C", str(dst), "-xf", "-"], progress,
                              what=f"get {source}")
            else:
                self._pipe_in(self.script(_SEND_FILE, source), None, progress, what=f"get {source}", dest=dst)
            self.verify(self.remote_manifest(source), local_manifest(dst), f"get {source}")
            verified = "sha256"
        size, files = local_size(dst)
        return TransferResult(machine=self.machine.name, direction="get", source=source, dest=str(dst),
                              bytes=size, files=files, seconds=time.monotonic() - t0, method=method,
                              verified=verified)

    # -- methods ------------------------------------------------------------------------
    def _rsync_base(self) -> list[str]:
        argv = ["rsync", "-a", "--no-inc-recursive", "--info=progress2"]
        if self.machine.mode == "ssh":
            argv += ["-e", shlex.join(["ssh", *ssh.ssh_options(self.machine, self.control, **self._kw)])]
        return argv

    def _rhost(self, path: str) -> str:
        if self.machine.mode != "ssh":
            return os.path.join(os.path.expanduser("~"), path)
        return f"{self.machine.host}:{path}"

    def _rsync_put(self, src: Path, target: str, progress: Progress | None) -> None:
        mk = self.run('mkdir -p -- "$1"', target if src.is_dir() else posixpath.dirname(target) or ".")
        if mk.returncode != 0:
            raise self._fail(f"cannot create {target}", mk)
        source = f"{src}/" if src.is_dir() else str(src)
        self._rsync([*self._rsync_base(), "--", source, self._rhost(target)], progress, f"put {src} to {target}")

    def _rsync_get(self, source: str, dst: Path, kind: str, progress: Progress | None) -> None:
        if kind == "d":
            dst.mkdir(parents=True, exist_ok=True)
            src, dest = self._rhost(source) + "/", f"{dst}/"
        else:
            src, dest = self._rhost(source), str(dst)
        self._rsync([*self._rsync_base(), "--", src, dest], progress, f"get {source}")

    def _rsync(self, argv: list[str], progress: Progress | None, what: str) -> None:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        err: list[bytes] = []
        reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        buf = b""
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):
            buf += chunk
            *done, buf = re.split(rb"[\r\n]", buf)
            for line in reversed(done):
                m = _PROGRESS2.match(line)
                if m and progress:
                    progress(int(m.group(1).replace(b",", b"")))
                    break
        code = proc.wait()
        reader.join()
        if code != 0:
            lines = b"".join(err).decode("utf-8", "replace").strip().splitlines()
            raise TransferError(f"{self.machine.name}: {what}: " + (lines[0] if lines else f"rsync exit {code}"))

    def pipe_out(self, producer: list[str] | None, consumer: list[str], progress: Progress | None, what: str,
                  source: Path | None = None) -> None:
        """Stream a local file or a local command's output into a remote command."""
        cons = subprocess.Popen(consumer, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                cwd=self._cwd())
        prod = None
        moved = 0
        try:
            if producer is not None:
                prod = subprocess.Popen(producer, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
                reader = prod.stdout
            else:
                assert source is not None
                reader = open(source, "rb")  # noqa: SIM115 - closed below
            try:
                assert cons.stdin is not None
                if prod is None:
                    moved = _send_file(reader, cons.stdin, progress)
                while chunk := reader.read(CHUNK):  # type: ignore[union-attr]
                    cons.stdin.write(chunk)
                    moved += len(chunk)
                    if progress:
                        progress(moved)
            except BrokenPipeError:
                pass
            finally:
                reader.close()  # type: ignore[union-attr]
                if cons.stdin:
                    try:
                        cons.stdin.close()
                    except BrokenPipeError:
                        pass
        finally:
            err = cons.stderr.read() if cons.stderr else b""
            code = cons.wait()
            if prod is not None and prod.wait() != 0:
                raise TransferError(f"{self.machine.name}: {what}: local tar failed")
        if code != 0:
            raise TransferError(f"{self.machine.name}: {what}: " + error_line(err, f"exit {code}"))

    def _pipe_in(self, producer: list[str], consumer: list[str] | None, progress: Progress | None, what: str,
                 dest: Path | None = None) -> None:
        """Stream a remote command's output into a local command or a local file."""
        prod = subprocess.Popen(producer, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                cwd=self._cwd())
        part = dest.with_name(dest.name + ".cmq-part") if dest is not None else None
        cons = None
        if consumer is not None:
            cons = subprocess.Popen(consumer, stdin=subprocess.PIPE)
            writer = cons.stdin
        else:
            assert part is not None
            writer = open(part, "wb")  # noqa: SIM115 - closed below
        moved = 0
        assert prod.stdout is not None and writer is not None
        try:
            while chunk := prod.stdout.read(CHUNK):
                writer.write(chunk)
                moved += len(chunk)
                if progress:
                    progress(moved)
        finally:
            writer.close()
        err = prod.stderr.read() if prod.stderr else b""
        code = prod.wait()
        local = cons.wait() if cons is not None else 0
        if code != 0 or local != 0:
            if part is not None:
                part.unlink(missing_ok=True)
            raise TransferError(f"{self.machine.name}: {what}: " + error_line(err, f"exit {code or local}"))
        if part is not None and dest is not None:
            os.replace(part, dest)

    def verify(self, source: dict[str, str], dest: dict[str, str], what: str) -> None:
        """Every file of ``source`` arrived with the same SHA-256 at ``dest``."""
        bad = sorted(name for name, digest in source.items() if dest.get(name) != digest)
        if bad:
            raise TransferError(f"{self.machine.name}: {what}: checksum mismatch on {bad[0]}"
                                + (f" and {len(bad) - 1} more file(s)" if len(bad) > 1 else ""))
