"""The object-store provider's HTTP session: the environment is read once, as requests
would read it on each request (no server needed: nothing is sent)."""

from __future__ import annotations

import pytest

from cmqueue.storage.cloud_drivers import make_driver, read_environment_once
from cmqueue.storage.config import StorageConfig


def _driver(endpoint: str):
    return make_driver(StorageConfig(name="s3", type="s3", endpoint=endpoint, container="b", key="k",
                                     secret="s"))


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy",
                 "ALL_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_proxy_of_the_environment_is_kept_for_the_endpoint(clean_env):
    clean_env.setenv("http_proxy", "http://proxy.example:3128")
    driver = _driver("http://store.example:8333")
    read_environment_once(driver)
    session = driver.connection.connection.session
    assert session.trust_env is False
    assert session.proxies.get("http") == "http://proxy.example:3128"


def test_no_proxy_for_an_endpoint_it_excludes(clean_env):
    clean_env.setenv("http_proxy", "http://proxy.example:3128")
    clean_env.setenv("no_proxy", "store.example")
    driver = _driver("http://store.example:8333")
    read_environment_once(driver)
    assert not driver.connection.connection.session.proxies.get("http")


def test_the_ca_bundle_of_the_environment_is_used_when_libcloud_has_none(clean_env, tmp_path):
    import libcloud.security

    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    clean_env.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    clean_env.setattr(libcloud.security, "CA_CERTS_PATH", None)
    driver = _driver("https://store.example")
    read_environment_once(driver)
    assert driver.connection.connection.verification == str(bundle)
