"""What `cmq storage` does with files: plan the copies of put, get, copy and sync (one
step per file), run one step, search. The same steps run here or as jobs on the queue.

A place is ``(service, path)``: ``service`` None is a path on this machine. Naming
follows ``cp``: a destination that ends in ``/`` or is an existing directory receives
the source under its own name; a directory copied with ``recursive`` gives its contents
to the destination.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..core.models import PlainData
from . import names
from .base import VERIFIED, Entry, NotFoundError, OnBytes, Provider, counted, digests


@dataclass(frozen=True)
class Place:
    """A file or directory: on a service (its name there), or here (``service`` None)."""

    service: str | None
    path: str
    into: bool = False                  #: written with a trailing / : a directory to put things in

    def __str__(self) -> str:
        return f"{self.service}:{self.path or '/'}" if self.service else self.path


@dataclass
class Step(PlainData):
    """One file to copy, or (``kind`` dir) one empty directory to make at the destination."""

    source: str                          #: service name, "" for this machine
    source_path: str
    dest: str
    dest_path: str
    size: int = 0
    kind: str = "file"                   #: "file", or "dir": an empty directory

    def describe(self) -> str:
        """``SOURCE -> DEST``."""
        return f"{Place(self.source or None, self.source_path)} -> {Place(self.dest or None, self.dest_path)}"


@dataclass
class Providers:
    """The providers of one inventory, each opened once (``open_service`` opens them)."""

    inventory: Any
    opened: dict[str, Provider] = field(default_factory=dict)

    def __call__(self, service: str) -> Provider:
        if service not in self.opened:
            from . import open_service

            self.opened[service] = open_service(self.inventory, service)
        return self.opened[service]

    def close(self) -> None:
        """Close every provider opened."""
        for p in self.opened.values():
            p.close()
        self.opened.clear()


def place(text: str, default: str | None, local: bool = False) -> Place:
    """The place ``text`` names: ``SERVICE:PATH``, else a path on ``default`` (or, with
    ``local``, a path on this machine). A service path is checked as a name."""
    service, path = names.split_address(text, None)
    if service is None:
        if local:                             # absolute: a queued job runs in a worker's directory
            path = os.path.abspath(os.path.expanduser(text))
            return Place(None, path + "/" if text.endswith("/") and not path.endswith("/") else path)
        if default is None:
            raise UsageError(f"{text}: which storage service? give --storage=SERVICE or SERVICE:PATH")
        service = default
    return Place(service, names.object_name(path, allow_root=True), into=path.endswith("/"))


def _local_files(root: str, rel: str = "") -> list[tuple[str, str, int]]:
    """(path relative to ``root``, path, size) of each file below ``root``, in name order
    (symbolic links to files count as files; to directories, are not followed); an empty
    directory comes as (its relative path, its path, -1)."""
    found = []
    with os.scandir(os.path.join(root, rel) if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        name = f"{rel}/{e.name}" if rel else e.name
        if e.is_dir(follow_symlinks=False):
            below = _local_files(root, name)
            found += below if below else [(name, e.path, -1)]
        elif e.is_file():
            found.append((name, e.path, e.stat().st_size))
    return found


def _into(dest: Place, is_dir: bool, base: str) -> str:
    """The destination path of a single file called ``base``."""
    if dest.service is None:
        target = Path(dest.path)
        return str(target / base) if dest.path.endswith("/") or target.is_dir() else dest.path
    return names.join(dest.path, base) if is_dir or not dest.path else dest.path


def _dest_is_dir(providers: Providers, dest: Place) -> bool:
    if dest.service is None:
        return dest.path.endswith("/") or Path(dest.path).is_dir()
    if not dest.path or dest.into:
        return True
    entry = providers(dest.service).stat(dest.path)
    return bool(entry and entry.is_dir)


def plan(providers: Providers, source: Place, dest: Place, recursive: bool) -> list[Step]:
    """The steps that copy ``source`` to ``dest`` (one per file)."""
    if source.service is None and dest.service is None:
        raise UsageError(f"{source} -> {dest}: one side must be a storage service (SERVICE:PATH)")
    dest_is_dir = _dest_is_dir(providers, dest)
    if source.service is None:
        src = Path(source.path)
        if not src.exists():
            raise NotFoundError(f"{src}: no such file or directory")
        if src.is_dir():
            if not recursive:
                raise UsageError(f"{src} is a directory; use --recursive")
            return [Step(source="", source_path=path, dest=dest.service or "", dest_path=_join(dest, rel),
                         size=max(size, 0), kind="dir" if size < 0 else "file")
                    for rel, path, size in _local_files(str(src))]
        return [Step(source="", source_path=str(src), dest=dest.service or "",
                     dest_path=_into(dest, dest_is_dir, src.name), size=src.stat().st_size)]
    provider = providers(source.service)
    entry = provider.stat(source.path) if source.path else Entry(name="", is_dir=True)
    if entry is None:
        raise NotFoundError(f"{source}: no such file or directory")
    if entry.is_dir:
        if not recursive:
            raise UsageError(f"{source} is a directory; use --recursive")
        cut = len(source.path) + 1 if source.path else 0
        files = [Step(source=source.service, source_path=e.name, dest=dest.service or "",
                      dest_path=_join(dest, e.name[cut:]), size=e.size)
                 for e in provider.list(source.path, recursive=True)]
        empty = [Step(source=source.service, source_path=d, dest=dest.service or "",
                      dest_path=_join(dest, d[cut:]), kind="dir") for d in provider.empty_dirs(source.path)]
        return sorted(files + empty, key=lambda s: s.source_path)
    return [Step(source=source.service, source_path=entry.name, dest=dest.service or "",
                 dest_path=_into(dest, dest_is_dir, names.basename(entry.name)), size=entry.size)]


def _join(dest: Place, rel: str) -> str:
    if dest.service is None:
        return os.path.join(dest.path, rel)
    return names.join(dest.path, rel)


def make_dir(providers: Providers, step: Step) -> dict[str, Any]:
    """Make the empty directory of a ``dir`` step at its destination (a directory marker
    where the service has no directories)."""
    if step.dest:
        providers(step.dest).make_empty_dir(step.dest_path)
    else:
        os.makedirs(step.dest_path, exist_ok=True)
    return {"bytes": 0, "sha256": None, "how": "mkdir", "verified": "", "step": step.describe()}


def run_step(providers: Providers, step: Step, on_bytes: OnBytes | None = None) -> dict[str, Any]:
    """Copy one file, verified; returns what moved (bytes, sha256, how, what was verified).
    ``on_bytes`` is told the size of each chunk as it passes."""
    if step.kind == "dir":
        return make_dir(providers, step)
    if not step.source:
        entry = providers(step.dest).put_file(Path(step.source_path), step.dest_path, on_bytes)
        how = "put"
    elif not step.dest:
        entry = providers(step.source).get_file(step.source_path, Path(step.dest_path), on_bytes)
        how = "get"
    else:
        src, dst = providers(step.source), providers(step.dest)
        entry = dst.copy_within(step.source_path, step.dest_path) if src is dst else None
        how = "copy within"
        if entry is None:
            info = src.stat(step.source_path)
            if info is None or info.is_dir:
                raise NotFoundError(f"{src.where(step.source_path)}: no such file")
            expected = info.sha256 or src.hash(step.source_path)      # before the read: one request at a time
            entry = dst.write(step.dest_path, counted(src.read(step.source_path), on_bytes), expected,
                              mtime=info.mtime or None)
            entry.verified = "reread" if src.reads_to_hash and not info.sha256 else "sha256"
            how = "stream"
    return {"bytes": entry.size, "sha256": entry.sha256, "how": how, "verified": entry.verified,
            "step": step.describe()}


def run_steps(providers: Providers, steps: list[Step], on_bytes: OnBytes | None = None) -> list[dict[str, Any]]:
    """Run ``steps``: files that go from here to one service, or from one service to here,
    go together (a provider may send them in one stream); copies between services one by
    one. What moved, per step, in order of completion."""
    done: list[dict[str, Any]] = []
    puts: dict[str, list[Step]] = {}
    gets: dict[str, list[Step]] = {}
    for step in steps:
        if step.kind == "dir":
            done.append(make_dir(providers, step))
        elif not step.source:
            puts.setdefault(step.dest, []).append(step)
        elif not step.dest:
            gets.setdefault(step.source, []).append(step)
        else:
            done.append(run_step(providers, step, on_bytes))
    for service, group in puts.items():
        entries = providers(service).put_files([(Path(s.source_path), s.dest_path) for s in group], on_bytes)
        done += [{"bytes": e.size, "sha256": e.sha256, "how": "put", "verified": e.verified, "step": s.describe()}
                 for s, e in zip(group, entries, strict=True)]
    for service, group in gets.items():
        entries = providers(service).get_files([(s.source_path, Path(s.dest_path)) for s in group], on_bytes)
        done += [{"bytes": e.size, "sha256": e.sha256, "how": "get", "verified": e.verified, "step": s.describe()}
                 for s, e in zip(group, entries, strict=True)]
    return done


#: What :func:`compare` says of a step's destination.
MISSING, SAME, OLDER, NEWER = "missing", "same", "older", "newer"


def compare(providers: Providers, steps: list[Step]) -> list[str]:
    """For each step, its destination against its source: ``missing``, ``same`` content
    (sizes, then SHA-256, or the MD5 an S3 listing gives when that is all there is), or
    different and ``older`` or ``newer`` than the source (by time). Each service is
    asked about all its files at once."""
    def described(service: str, paths: list[str]) -> dict[str, Entry]:
        if service:
            return providers(service).describe(paths)
        found = {}
        for path in paths:
            p = Path(path)
            if p.is_file():
                st = p.stat()
                sha, md5 = digests(p)
                found[path] = Entry(name=path, size=st.st_size, mtime=st.st_mtime, sha256=sha, md5=md5)
        return found

    def same(s: Step, src: Entry, dst: Entry) -> bool:
        if src.size != dst.size:
            return False
        if src.sha256 and dst.sha256:
            return src.sha256 == dst.sha256
        if src.md5 and dst.md5:
            return src.md5 == dst.md5
        src.sha256 = src.sha256 or providers(s.source).hash(s.source_path)
        dst.sha256 = dst.sha256 or providers(s.dest).hash(s.dest_path)
        return src.sha256 == dst.sha256

    by_side: dict[tuple[str, str], list[str]] = {}
    for s in steps:
        by_side.setdefault(("src", s.source), []).append(s.source_path)
        by_side.setdefault(("dst", s.dest), []).append(s.dest_path)
    known = {key: described(key[1], paths) for key, paths in by_side.items()}
    verdicts = []
    for s in steps:
        src = known[("src", s.source)].get(s.source_path)
        dst = known[("dst", s.dest)].get(s.dest_path)
        if dst is None or src is None:
            verdicts.append(MISSING)
        elif same(s, src, dst):
            verdicts.append(SAME)
        else:
            verdicts.append(NEWER if dst.mtime > src.mtime else OLDER)
    return verdicts


def to_sync(providers: Providers, steps: list[Step]) -> tuple[list[Step], int, list[Step]]:
    """What a sync moves: the steps whose destination is missing or older and differs;
    how many are the same already; the steps left alone because their destination is
    newer (reported, never overwritten)."""
    dirs = [s for s in steps if s.kind == "dir"]
    files = [s for s in steps if s.kind != "dir"]
    verdicts = compare(providers, files)
    todo = [s for s, v in zip(files, verdicts, strict=True) if v in (MISSING, OLDER)]
    newer = [s for s, v in zip(files, verdicts, strict=True) if v == NEWER]
    missing_dirs = [s for s in dirs if not _dir_exists(providers, s)]
    return missing_dirs + todo, verdicts.count(SAME) + len(dirs) - len(missing_dirs), newer


def _dir_exists(providers: Providers, step: Step) -> bool:
    """Whether the directory of a ``dir`` step is at its destination already."""
    if not step.dest:
        return os.path.isdir(step.dest_path)
    entry = providers(step.dest).stat(step.dest_path)
    return bool(entry and entry.is_dir)


def verified_counts(results: list[dict[str, Any]]) -> dict[str, int]:
    """How many copied files were verified each way (``{"sha256": 3, "md5": 1}``; see
    :data:`~cmqueue.storage.base.VERIFIED`)."""
    counts: dict[str, int] = {}
    for r in results:
        if r.get("how") != "mkdir":
            kind = r.get("verified", "sha256")
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def verified_summary(counts: dict[str, int]) -> str:
    """What the copies checked, for the summary line: ``verified by SHA-256`` when every
    file was, else the count of each way (``verified 3 by SHA-256, 1 by the service's MD5``).
    Never a check that did not happen."""
    counts = {kind: n for kind, n in counts.items() if n}
    if not counts:
        return ""
    if list(counts) == ["sha256"]:
        return "verified by SHA-256"
    checked = [f"{n} {VERIFIED[kind]}" for kind, n in counts.items() if kind in ("sha256", "md5", "reread")]
    other = [f"{n} {VERIFIED.get(kind, 'not verified')}" for kind, n in counts.items()
             if kind not in ("sha256", "md5", "reread")]
    return ", ".join(([f"verified {', '.join(checked)}"] if checked else []) + other)


def search(provider: Provider, directory: str, pattern: str, recursive: bool) -> list[Entry]:
    """Files in ``directory`` (and below, with ``recursive``) whose name matches
    ``pattern`` (a name, or a glob such as ``*.csv``)."""
    entries = provider.list(directory, recursive=recursive)
    return [e for e in entries if not e.is_dir and fnmatch.fnmatchcase(names.basename(e.name), pattern)]
