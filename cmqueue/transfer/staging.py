"""A job's data: inputs staged into its own directory through the machine's input cache,
outputs fetched back after it ends.

Each staged job runs in ``<workdir>/jobs/<id>/``. An input file is stored once per machine
under ``<workdir>/cache/<sha256>`` and hard-linked into the job directories that use it, so
sending the same input to the same machine again moves no bytes. The cache holds at most
the machine's ``cache`` capacity: least recently used entries go first, but never one that
a queued or running job needs (such inputs are *pinned* in Redis from submit to the end of
the job). When nothing can be evicted, the input is staged without being kept.

The submit side (parse_put, parse_get, plan) is pure; :class:`Stager` runs on the worker.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.inventory import Machine
from ..core.errors import MissingError, UsageError
from ..submit import placeholders
from .machine_copy import Transfer, TransferError, error_line, remote_path, sha256_file, walk_files

#: Relays one input into this machine's cache (sha256, local file, path there): its outcome
#: (:class:`cmqueue.transfer.relay.CopyOutcome`), or None when this machine missed it.
RelayInput = Callable[[str, Path, str], Any]
#: Attempts of one staging step (in or out) before the job fails as a transfer failure.
TRANSFER_ATTEMPTS = 3
#: Entries per remote command line (keeps each ssh command far below the protocol's limits).
CHUNK = 500


def cache_dir(machine: Machine) -> str:
    """The machine's input cache folder, as its remote shell sees it."""
    return remote_path(machine.workdir, "cache")


def pin_key(sha: str) -> str:
    """Redis set of the jobs (queued or running) that need cached input ``sha``."""
    return f"cmq:cache:pin:{sha}"


# -- submit side ----------------------------------------------------------------------------
def _relative(path: str, what: str) -> str:
    norm = posixpath.normpath(path)
    if not path or path.startswith(("/", "~")) or norm == ".." or norm.startswith("../"):
        raise UsageError(f"{what}: {path!r} must be a relative path inside the job's directory (no ../)")
    return norm


def parse_put(value: str) -> tuple[str, str]:
    """``LOCAL[:REMOTE]`` to (local, remote); REMOTE defaults to LOCAL's name."""
    local, sep, remote = value.partition(":")
    if not local:
        raise UsageError(f"--put={value}: expected LOCAL[:REMOTE]")
    return local, remote if sep and remote else ""


def parse_get(value: str) -> tuple[str, str]:
    """``REMOTE[:LOCAL]`` to (remote, local); REMOTE is checked to stay in the job directory."""
    remote, _, local = value.partition(":")
    return _relative(remote, f"--get={value}"), local


@dataclass
class Plan:
    """What a job stages: inputs as (path in job dir, sha256, size, local file), outputs
    as (path in job dir, local path)."""

    inputs: list[list[Any]] = field(default_factory=list)
    outputs: list[list[str]] = field(default_factory=list)
    keep: bool = False

    def params(self) -> dict[str, Any]:
        """The spec params that carry this plan to the worker."""
        return {"inputs": self.inputs, "outputs": self.outputs, "keep": self.keep}


class Hasher:
    """SHA-256 of local files, each computed once per submit."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int, int], str] = {}

    def __call__(self, path: Path) -> tuple[str, int]:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        if key not in self._seen:
            self._seen[key] = sha256_file(path)
        return self._seen[key], st.st_size


def plan(job_id: str, arg: str | None, seq: int, puts: list[str], gets: list[str], keep: bool,
         results: Path, hasher: Hasher, many: bool) -> Plan:
    """The staging plan of one job. ``arg``/``seq`` fill placeholders in --put/--get
    (``--put={}`` stages each job's own argument)."""
    p = Plan(keep=keep)
    for value in puts:
        local, remote = parse_put(placeholders.render_path(value, arg, seq) if arg is not None else value)
        src = Path(local).expanduser()
        if not src.exists():
            raise MissingError(f"--put={value}: {local}: no such file or directory")
        dest = _relative(remote or src.resolve().name, f"--put={value}")
        if src.is_dir():
            for rel, f in walk_files(src):
                p.inputs.append([posixpath.join(dest, rel), *hasher(f), str(f.resolve())])
        else:
            p.inputs.append([dest, *hasher(src), str(src.resolve())])
    for value in gets:
        remote, local = parse_get(placeholders.render_path(value, arg, seq) if arg is not None else value)
        if local:
            if many and "{job}" not in local:
                raise UsageError(f"--get={value}: {local} would be written by every job; put {{job}} in it")
            target = Path(local.replace("{job}", job_id)).expanduser().resolve()
        else:
            target = (results / job_id / remote).resolve()
        p.outputs.append([remote, str(target)])
    return p


# -- worker side --------------------------------------------------------------------------
_CHECK = (
    'c="$1"; shift; mkdir -p -- "$c" || exit 3; m=0; '
    'for h in "$@"; do if [ -f "$c/$h" ]; then touch -c -- "$c/$h"; else echo "miss $h"; m=1; fi; done; '
    "if [ $m = 1 ]; then find \"$c\" -maxdepth 1 -type f -printf 'have %f %s %T@\\n'; fi"
)
_RECEIVE = (
    'c="$1"; i="$c/.in-$2"; need="$3"; n="$4"; shift 4; '
    'while [ "$n" -gt 0 ]; do rm -f -- "$c/$1"; shift; n=$((n-1)); done; '
    'rm -rf -- "$i"; mkdir -p -- "$i" && tar -C "$i" -xf - || { rm -rf -- "$i"; '
    'free=$(df -Pk "$c" 2>/dev/null | awk \'NR==2{print $4}\'); '
    '[ -n "$free" ] && [ $((free*1024)) -lt "$need" ] && '
    'echo "No space left on device: $need bytes to store, $((free*1024)) free under $c" >&2; exit 4; }; '
    'cd -- "$i" || exit 4; r=0; '
    'for f in *; do [ -f "$f" ] || continue; s=$(sha256sum < "$f" | cut -d" " -f1); '
    'if [ "$s" = "$f" ]; then chmod a-w -- "$f"; mv -f -- "$f" "../$f"; '
    'else echo "cmq: checksum mismatch on $f" >&2; r=5; fi; done; '
    'cd .. && rm -rf -- "$i"; exit $r'
)
_LINK = (
    'c="$1"; j="$2"; shift 2; mkdir -p -- "$j" || exit 3; '
    'while [ $# -gt 1 ]; do mkdir -p -- "$(dirname -- "$j/$2")" && '
    '{ ln -f -- "$c/$1" "$j/$2" 2>/dev/null || cp -- "$c/$1" "$j/$2"; } || exit 3; shift 2; done'
)
_FORGET = 'c="$1"; shift; for h in "$@"; do rm -f -- "$c/$h"; done'
_REMOVE = 'rm -rf -- "$1"'


@dataclass
class StageReport:
    """What staging in did: bytes moved, cache hits, entries added and evicted."""

    moved: int = 0
    files_sent: int = 0
    hits: list[str] = field(default_factory=list)
    added: list[list[Any]] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)
    warning: str = ""
    seconds: float = 0.0
    #: Inputs that came by a relay: sha256 -> the machine (or "controller") that fed them.
    relayed: dict[str, str] = field(default_factory=dict)

    def cache_event(self, machine: str) -> dict[str, Any]:
        """The ``cache`` part of the job's final event (what the history store records)."""
        return {"machine": machine, "added": self.added, "used": self.hits, "evicted": self.evicted}


def retrying(step: Callable[[], Any], what: str, attempts: int = TRANSFER_ATTEMPTS) -> Any:
    """Run ``step``; on TransferError try again (1 s, 2 s later), then raise naming ``what``."""
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except TransferError as e:
            if attempt == attempts:
                raise TransferError(f"{what}: {e} (after {attempts} attempts)") from None
            time.sleep(attempt)
    raise AssertionError("unreachable")


def _names(shas: list[str], local_of: dict[str, str]) -> str:
    names = [os.path.basename(local_of[s]) for s in shas[:3]]
    return ", ".join(names) + (f" and {len(shas) - 3} more input(s)" if len(shas) > 3 else "")


class Stager:
    """Stages one machine's jobs through its cache (thread safe: no shared state)."""

    def __init__(self, transfer: Transfer, redis: Any, capacity: int) -> None:
        self.t = transfer
        self.redis = redis
        self.capacity = capacity
        self.cache = cache_dir(transfer.machine)
        self.jobs = remote_path(transfer.machine.workdir, "jobs")

    def job_dir(self, job: str) -> str:
        """The job's directory on the machine (as the remote shell sees it)."""
        return posixpath.join(self.jobs, job)

    def _run(self, script: str, *args: str, input: bytes | None = None, what: str) -> str:
        proc = self.t.run(script, *args, input=input)
        if proc.returncode != 0:
            detail = error_line(proc.stderr, f"exit {proc.returncode}")
            raise TransferError(f"{self.t.machine.name}: {what}: {detail}")
        return proc.stdout.decode("utf-8", "replace")

    def stage_in(self, job: str, inputs: list[list[Any]], relay: RelayInput | None = None,
                 shared: Collection[str] = ()) -> StageReport:
        """Make every input (path in job dir, sha256, size, local file) present in the
        job's directory; returns what it took. Missing inputs among ``shared`` (inputs
        other machines of the batch need too) go through ``relay`` first."""
        t0 = time.monotonic()
        report = StageReport()
        size_of = {sha: int(size) for _, sha, size, _ in inputs}
        local_of = {sha: local for _, sha, _, local in inputs}
        shas = sorted(size_of)
        missing: list[str] = []
        entries: dict[str, tuple[int, float]] = {}
        for i in range(0, len(shas), CHUNK):
            out = self._run(_CHECK, self.cache, *shas[i:i + CHUNK], what="looking at the input cache")
            for line in out.splitlines():
                word, _, rest = line.partition(" ")
                if word == "miss":
                    missing.append(rest)
                elif word == "have":
                    sha, size, mtime = rest.split(" ")
                    entries[sha] = (int(size), float(mtime))
        report.hits = [s for s in shas if s not in missing]
        uncached = False
        if missing:
            need = sum(size_of[s] for s in missing)
            evict, uncached = self._choose_evictions(entries, need, set(shas))
            report.evicted = evict
            if uncached:
                report.warning = (f"input cache on {self.t.machine.name} is full (capacity {self.capacity} bytes, "
                                  "the rest pinned by queued or running jobs): inputs staged without caching")
            rest = missing
            if relay is not None and not uncached and any(s in shared for s in missing):
                if evict:
                    self._run(_FORGET, self.cache, *evict, what="making room in the input cache")
                    evict = []
                for sha in [s for s in missing if s in shared]:
                    got = relay(sha, Path(local_of[sha]), posixpath.join(self.cache, sha))
                    if got is not None and got.ok:
                        report.relayed[sha] = got.fed_by or f"shared with {got.shared_with}"
                rest = [s for s in missing if s not in report.relayed]
            if rest:
                self._send(job, rest, evict, local_of, sum(size_of[s] for s in rest))
            report.moved = need
            report.files_sent = len(missing)
            report.added = [] if uncached else [[s, size_of[s]] for s in missing]
        pairs = [w for rel, sha, _, _ in inputs for w in (sha, rel)]
        for i in range(0, len(pairs), 2 * CHUNK):
            self._run(_LINK, self.cache, self.job_dir(job), *pairs[i:i + 2 * CHUNK], what="linking inputs")
        if not pairs:
            self._run('mkdir -p -- "$1"', self.job_dir(job), what="creating the job directory")
        if uncached:
            self._run(_FORGET, self.cache, *missing, what="dropping uncached inputs")
        report.seconds = time.monotonic() - t0
        return report

    def _choose_evictions(self, entries: dict[str, tuple[int, float]], need: int,
                          wanted: set[str]) -> tuple[list[str], bool]:
        """Least recently used entries to drop so that ``need`` more bytes fit; and whether
        it still does not fit (then the inputs are staged without caching)."""
        usage = sum(size for size, _ in entries.values())
        if usage + need <= self.capacity:
            return [], False
        candidates = sorted((mtime, sha) for sha, (_, mtime) in entries.items() if sha not in wanted)
        pinned = self._pinned([sha for _, sha in candidates])
        evict = []
        for _, sha in candidates:
            if usage + need <= self.capacity:
                break
            if sha in pinned:
                continue
            evict.append(sha)
            usage -= entries[sha][0]
        return evict, usage + need > self.capacity

    def _send(self, job: str, missing: list[str], evict: list[str], local_of: dict[str, str], need: int) -> None:
        with tempfile.TemporaryDirectory(prefix="cmq-stage-") as tmp:
            for sha in missing:
                os.symlink(local_of[sha], os.path.join(tmp, sha))
            listing = Path(tmp) / ".list"
            listing.write_text("".join(f"{sha}\n" for sha in missing))
            try:
                self.t.pipe_out(["tar", "-C", tmp, "-ch", "-f", "-", "-T", str(listing)],
                                self.t.script(_RECEIVE, self.cache, job, str(need), str(len(evict)), *evict), None,
                                what=f"sending {_names(missing, local_of)}")
            except TransferError as e:
                if "checksum mismatch" in str(e):
                    bad = str(e).rsplit(" ", 1)[-1]
                    names = sorted({local_of.get(bad, bad)})
                    raise TransferError(f"{self.t.machine.name}: input {names[0]} changed since it was submitted "
                                        "(checksum mismatch)") from None
                raise

    def stage_out(self, job: str, outputs: list[list[str]], required: bool) -> tuple[list[dict[str, Any]], str]:
        """Fetch each output; returns what was fetched and the first error ('' if none).

        A missing output is an error only when ``required`` (the command succeeded)."""
        fetched: list[dict[str, Any]] = []
        for remote, local in outputs:
            source = posixpath.join(self.job_dir(job), remote)
            try:
                got = retrying(lambda s=source, d=local: self.t.get(s, Path(d), recursive=True),  # type: ignore[misc]
                               f"fetching {remote}")
                fetched.append(got.to_dict())
            except TransferError as e:
                if required or "no such file" not in str(e):
                    return fetched, f"fetching {remote} to {local}: {e}"
        return fetched, ""

    def clear(self) -> tuple[list[str], list[str]]:
        """Empty the machine's cache except inputs pinned by queued or running jobs;
        returns (removed, kept) sha256s."""
        out = self._run('mkdir -p -- "$1" && find "$1" -maxdepth 1 -type f -printf "%f\\n"', self.cache,
                        what="listing the input cache")
        shas = [line for line in out.splitlines() if len(line) == 64]
        pinned = self._pinned(shas)
        removed = [s for s in shas if s not in pinned]
        for i in range(0, len(removed), CHUNK):
            self._run(_FORGET, self.cache, *removed[i:i + CHUNK], what="clearing the input cache")
        return removed, sorted(pinned)

    def _pinned(self, shas: list[str]) -> set[str]:
        if not shas:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for sha in shas:
            pipe.scard(pin_key(sha))
        return {sha for sha, n in zip(shas, pipe.execute(), strict=True) if n}

    def remove(self, job: str) -> None:
        """Remove the job's directory on the machine."""
        try:
            self._run(_REMOVE, self.job_dir(job), what="removing the job directory")
        except TransferError:
            pass

    def command(self, job: str, command: str) -> str:
        """``command`` run inside the job's directory (relative to the workdir, where the
        job wrapper starts)."""
        return f"cd -- {shlex.quote(posixpath.join('jobs', job))} || exit 125\n{command}"
