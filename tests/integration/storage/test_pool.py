"""The content-addressed pool: cmqueue.Pool and `cmq pool`, on S3 (SeaweedFS) and Azure
Blob (Azurite) with a small local cache."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys

import pytest

from cmqueue import Pool
from cmqueue.config.inventory import load
from tests.support.storage_servers import storage_servers  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def config(storage_servers, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("pool")
    (root / "box").mkdir()
    path = storage_servers.inventory(root / "cmq.yaml", root / "box", directory="pool-store")
    storage_servers.make_buckets(load(path))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CMQ_HOME", str(tmp_path / "home"))
    return tmp_path


def blob(tmp_path, name, size):
    p = tmp_path / name
    p.write_bytes(secrets.token_bytes(size))
    return p


def test_upload_stores_once_by_hash_and_download_verifies(config, home):
    src = blob(home, "a.bin", 50_000)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    with Pool(config=str(config), cache_dir=home / "cache", capacity="1M", services=["s3", "az"]) as pool:
        assert pool.upload(src) == sha
        assert pool.upload(src) == sha                        # the same content: stored once
        assert pool.exists(sha) and pool.on_cache(sha)
        assert sorted(r["service"] for r in pool.record(sha)["replicas"]) == ["az", "s3"]
        (home / "cache" / sha).unlink()                        # out of the cache: fetched again
        assert not pool.on_cache(sha)
        path = pool.download(sha)
        assert path.read_bytes() == src.read_bytes() and pool.on_cache(sha)
        assert 0 < pool.usage_ratio() <= 1


def test_a_full_cache_evicts_the_least_recently_used_and_a_huge_file_is_not_cached(config, home):
    with Pool(config=str(config), cache_dir=home / "cache", capacity=100_000, services=["s3"]) as pool:
        first = pool.upload(blob(home, "1.bin", 40_000))
        second = pool.upload(blob(home, "2.bin", 40_000))
        pool.download(first)                                   # first is now the most recently used
        third = pool.upload(blob(home, "3.bin", 40_000))       # makes room: second goes
        assert pool.on_cache(first) and pool.on_cache(third) and not pool.on_cache(second)
        assert pool.usage_ratio() <= 1.0
        big = blob(home, "big.bin", 150_000)
        sha = pool.upload(big)                                 # stored, but larger than the cache
        assert pool.exists(sha) and not pool.on_cache(sha)
        assert "more than the cache's capacity" in pool.not_cached
        assert not pool.warm_up(sha)
        with pytest.raises(Exception, match="give a destination"):
            pool.download(sha)
        out = pool.download(sha, home / "big.out")
        assert out.read_bytes() == big.read_bytes()


def test_cmq_pool_commands(config, home):
    env = {**os.environ, "CMQ_CONFIG": str(config), "CMQ_HOME": str(home / "home"), "CMQ_NO_LAUNCHER": "1"}

    def cmq(*args):
        return subprocess.run([sys.executable, "-m", "cmqueue", "pool", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    src = blob(home, "c.bin", 10_000)
    r = cmq("upload", str(src), "--services=az,m1")
    assert r.returncode == 0, r.stderr
    sha = r.stdout.strip()
    assert sha == hashlib.sha256(src.read_bytes()).hexdigest()
    assert cmq("exists", sha).returncode == 0
    assert cmq("exists", "0" * 64).returncode == 1
    r = cmq("download", sha, str(home / "c.out"))
    assert r.returncode == 0 and (home / "c.out").read_bytes() == src.read_bytes()
    listed = cmq("list", "--output=csv").stdout
    assert sha in listed and "az,m1" in listed
    assert "bytes cached" in cmq("usage").stdout
    bad = cmq("exists", "not-a-hash")
    assert bad.returncode == 2 and "not a SHA-256" in bad.stderr
