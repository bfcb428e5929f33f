"""A content-addressed pool: files stored by their SHA-256 on chosen storage services,
indexed in the history store's database, with a local cache of fixed capacity.

```python
from cmqueue import Pool
with Pool(capacity="2G", services=["s3"]) as pool:
    h = pool.upload("model.bin")         # stored on s3 as pool/ab/abcd..., kept in the cache
    path = pool.download(h)              # from the cache, or fetched and cached (verified)
```

The cache keeps the most recently used files (as the machines' input caches do: least
recently used first out). A file that cannot be cached, because it alone is larger than
the capacity, is still uploaded or downloaded; the pool says it was not cached instead of
failing (the original pool crashed when nothing could be evicted).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..core.errors import CmqError, UsageError
from .base import NotFoundError, StorageError, sha256_of
from .ops import Providers

log = logging.getLogger("cmq.pool")

#: The cache's capacity when none is given.
DEFAULT_CAPACITY = 1 << 30


def object_name(sha: str) -> str:
    """Where content ``sha`` is kept on a service."""
    return f"pool/{sha[:2]}/{sha}"


def _check_hash(sha: str) -> str:
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise UsageError(f"{sha!r}: not a SHA-256 (64 lowercase hex digits)")
    return sha


class PoolError(CmqError):
    """The pool cannot store or find a file."""


class LocalCache:
    """Files named by their SHA-256 in one directory, at most ``capacity`` bytes in all."""

    def __init__(self, directory: Path, capacity: int) -> None:
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.capacity = capacity

    def path(self, sha: str) -> Path:
        """Where ``sha`` is (or would be) cached."""
        return self.directory / sha

    def has(self, sha: str) -> bool:
        """Whether ``sha`` is cached."""
        return self.path(sha).is_file()

    def touch(self, sha: str) -> None:
        """Mark ``sha`` as just used."""
        now = time.time()
        try:
            os.utime(self.path(sha), (now, now))
        except OSError:
            pass

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last used, size, path) of every cached file, least recently used first."""
        found = []
        for p in self.directory.iterdir():
            if p.is_file() and not p.name.startswith("."):
                st = p.stat()
                found.append((st.st_mtime, st.st_size, p))
        return sorted(found)

    def used(self) -> int:
        """Bytes cached."""
        return sum(size for _, size, _ in self.entries())

    def make_room(self, size: int, keep: str = "") -> str | None:
        """Evict least recently used files until ``size`` more bytes fit; the reason it
        cannot (the file alone is larger than the capacity), else None."""
        if size > self.capacity:
            return f"{size} bytes is more than the cache's capacity ({self.capacity} bytes)"
        entries = self.entries()
        used = sum(s for _, s, _ in entries)
        for _, s, p in entries:
            if used + size <= self.capacity:
                break
            if p.name == keep:
                continue
            p.unlink(missing_ok=True)
            used -= s
        return None if used + size <= self.capacity else "the cache could not make room"

    def add(self, sha: str, source: Path, move: bool = False) -> str | None:
        """Cache ``source`` as ``sha`` (copied, or moved with ``move``); None when cached,
        else why not (and then ``source`` is left where it is)."""
        if self.has(sha):
            self.touch(sha)
            return None
        why = self.make_room(source.stat().st_size)
        if why is not None:
            return why
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".part-")
        os.close(fd)
        try:
            if move:
                os.replace(source, tmp)
            else:
                shutil.copyfile(source, tmp)
            os.replace(tmp, self.path(sha))
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            return f"cannot write the cache: {e.strerror or e}"
        self.touch(sha)
        return None


class Pool:
    """Content-addressed files on storage services with a local cache (see the module)."""

    def __init__(self, db: Any = None, cache_dir: str | os.PathLike | None = None, capacity: int | str | None = None,
                 services: list[str] | None = None, config: str | None = None) -> None:
        """``db``: a history store URL (default: the inventory's history); ``cache_dir``:
        the local cache (default: <cmq home>/pool-cache); ``capacity``: its size (bytes,
        or "2G"); ``services``: where uploads are stored (default: the inventory's first
        storage service); ``config``: the inventory (default: as for the command line)."""
        from ..config.fields import parse_size
        from ..config.settings import resolve
        from ..history import open_store
        from .vdir_store import backend_for

        self.settings = resolve(config, check_keys=False)
        inventory = self.settings.inventory
        self.services = list(services) if services else list(inventory.storage)[:1]
        if not self.services:
            raise UsageError(f"{inventory.path.name}: the pool needs a storage service (a storage: section)")
        for name in self.services:
            if name not in inventory.storage:
                raise UsageError(f"pool: unknown storage service {name!r}; services: {', '.join(inventory.storage)}")
        try:
            size = DEFAULT_CAPACITY if capacity is None else parse_size(capacity, inventory.path, "capacity")
        except CmqError:
            raise UsageError(f"pool capacity {capacity!r}: must be a size such as 2G or 500M") from None
        self.store = open_store(db or self.settings.history)
        self.index = backend_for(self.store, "pool")
        self.cache = LocalCache(Path(cache_dir) if cache_dir else self.settings.home / "pool-cache", size)
        self.providers = Providers(inventory)
        #: Why the last upload or download was not cached (None: it was).
        self.not_cached: str | None = None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, sha: str) -> dict[str, Any] | None:
        """The index entry of ``sha``: size and the services that hold it."""
        return self.index.file("/" + _check_hash(sha))

    def upload(self, path: str | os.PathLike) -> str:
        """Store a local file on the pool's services (once per content) and cache it; its SHA-256."""
        source = Path(path).expanduser()
        if not source.is_file():
            raise NotFoundError(f"{source}: no such file")
        sha = sha256_of(source)
        record = self.record(sha) or {"path": "/" + sha, "size": source.stat().st_size, "sha256": sha,
                                      "mtime": source.stat().st_mtime, "preferred": self.services[0],
                                      "updated": time.time(), "replicas": []}
        held = {r["service"] for r in record["replicas"]}
        for service in self.services:
            if service in held:
                continue
            entry = self.providers(service).put_file(source, object_name(sha))
            record["replicas"].append({"service": service, "name": object_name(sha), "size": entry.size,
                                       "sha256": sha, "mtime": entry.mtime})
        record["updated"] = time.time()
        self.index.save_file(record)
        self.not_cached = self.cache.add(sha, source)
        if self.not_cached:
            log.warning("pool: %s stored but not cached: %s", sha[:12], self.not_cached)
        return sha

    def exists(self, sha: str) -> bool:
        """Whether the pool holds ``sha`` on at least one service."""
        record = self.record(sha)
        return bool(record and record["replicas"])

    def on_cache(self, sha: str) -> bool:
        """Whether ``sha`` is in the local cache."""
        return self.cache.has(_check_hash(sha))

    def warm_up(self, sha: str) -> bool:
        """Bring ``sha`` into the cache; False (with :attr:`not_cached` saying why) when it
        cannot be cached."""
        if self.on_cache(sha):
            self.cache.touch(sha)
            self.not_cached = None
            return True
        tmp = self._fetch(sha, self.cache.directory)
        self.not_cached = self.cache.add(sha, tmp, move=True)
        tmp.unlink(missing_ok=True)
        return self.not_cached is None

    def download(self, sha: str, destination: str | os.PathLike | None = None) -> Path:
        """The file of ``sha``: its path in the cache, or (with ``destination``) a copy there.
        A file that cannot be cached is fetched straight to ``destination`` (which it then
        needs)."""
        if self.warm_up(sha):
            cached = self.cache.path(sha)
            if destination is None:
                return cached
            dest = Path(destination).expanduser()
            dest = dest / sha if dest.is_dir() else dest
            shutil.copyfile(cached, dest)
            return dest
        if destination is None:
            raise PoolError(f"pool {sha[:12]}...: cannot be cached ({self.not_cached}); give a destination")
        dest = Path(destination).expanduser()
        dest = dest / sha if dest.is_dir() else dest
        tmp = self._fetch(sha, dest.parent)
        os.replace(tmp, dest)
        return dest

    def _fetch(self, sha: str, directory: Path) -> Path:
        """Download ``sha`` from the first replica that works into a temporary file in
        ``directory``, verified."""
        record = self.record(sha)
        if not record or not record["replicas"]:
            raise NotFoundError(f"pool {sha[:12]}...: not in the pool")
        problems = []
        for r in sorted(record["replicas"], key=lambda r: r["service"] != record["preferred"]):
            fd, name = tempfile.mkstemp(dir=directory, prefix=".fetch-")
            os.close(fd)
            tmp = Path(name)
            try:
                entry = self.providers(r["service"]).get_file(r["name"], tmp)
            except (StorageError, NotFoundError) as e:
                tmp.unlink(missing_ok=True)
                problems.append(str(e))
                continue
            if entry.sha256 != sha:
                tmp.unlink(missing_ok=True)
                problems.append(f"{r['service']}:{r['name']}: content differs from its name")
                continue
            return tmp
        raise PoolError(f"pool {sha[:12]}...: no replica could be read: " + "; ".join(problems))

    def usage_ratio(self) -> float:
        """How full the cache is (0.0 to 1.0)."""
        return self.cache.used() / self.cache.capacity if self.cache.capacity else 1.0

    def hashes(self) -> list[dict[str, Any]]:
        """Every file in the pool: its hash, size, services, and whether it is cached."""
        return [{"sha256": r["sha256"], "size": r["size"], "services": [x["service"] for x in r["replicas"]],
                 "cached": self.cache.has(r["sha256"])} for r in self.index.all_files("/")]

    def close(self) -> None:
        """Close the services and the database."""
        self.providers.close()
        self.store.close()
