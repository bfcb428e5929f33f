"""The object stores' kept-alive connection: when it is used (only where the request is
the same as libcloud's) and the request body of a file (no server needed)."""

from __future__ import annotations

import io

import pytest

from cmqueue.storage.cloud_drivers import make_driver, read_environment_once
from cmqueue.storage.config import StorageConfig
from cmqueue.storage.signed_http import FileSlice, SignedHttp


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _connection(kind: str = "s3"):
    driver = make_driver(StorageConfig(name=kind, type=kind, endpoint="http://store.example:8333", container="b",
                                       key="devstoreaccount1" if kind == "azure" else "k", secret="c2VjcmV0"))
    read_environment_once(driver)
    return driver.connection


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_used_when_no_proxy_stands_between(clean_env, kind):
    assert SignedHttp.usable(_connection(kind))


def test_not_used_through_a_proxy(clean_env):
    clean_env.setenv("http_proxy", "http://proxy.example:3128")
    assert not SignedHttp.usable(_connection())


def test_a_request_is_signed_by_the_drivers_own_code(clean_env):
    url, headers = SignedHttp(_connection()).signed("GET", "/b/dir/key.txt")
    headers = {k.lower(): v for k, v in headers.items()}
    assert url == "/b/dir/key.txt"
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=k/")
    assert headers["host"] == "store.example:8333" and "x-amz-date" in headers


def test_a_file_body_stops_at_its_size_and_goes_back_for_a_retry():
    f = io.BytesIO(b"head:0123456789-grown")
    f.seek(5)
    body = FileSlice(f, 10)
    assert body.read(4) + body.read(100) + body.read(100) == b"0123456789"
    body.seek(0)
    assert body.read() == b"0123456789"


def test_a_file_body_measures_as_its_slice():
    """requests measures a body by seeking to its end (and back)."""
    body = FileSlice(io.BytesIO(b"head:0123456789-grown"[5:]), 10)
    assert body.seek(0, io.SEEK_END) == 10 and body.tell() == 10 and body.read() == b""
    assert body.seek(-4, io.SEEK_CUR) == 6 and body.read() == b"6789"
    assert body.seek(0) == 0
