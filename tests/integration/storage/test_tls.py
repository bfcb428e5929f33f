"""An object store over HTTPS (Azurite with a certificate of its own, started here): the
certificate is checked on both ways a request goes (the kept-alive connection and
libcloud's requests session), against the CA bundle libcloud is given (the file of
SSL_CERT_FILE when it is imported: ``libcloud.security.CA_CERTS_PATH``)."""

from __future__ import annotations

import http.client
import secrets

import libcloud.security
import pytest

from cmqueue.cli.demo_stores import AzuriteServer, azurite_binary
from cmqueue.config.inventory import Inventory
from cmqueue.storage import StorageUnavailableError, open_service
from cmqueue.storage.cloud_drivers import make_driver
from cmqueue.storage.config import StorageConfig
from cmqueue.storage.signed_http import SignedHttp
from tests.conftest import need, need_services


def _config(server: AzuriteServer) -> StorageConfig:
    return StorageConfig(name="az", type="azure", endpoint=server.endpoint, container="tls", key=server.account,
                         secret=server.secret, source="cmq.yaml")


@pytest.fixture(scope="module")
def azurite_tls(tmp_path_factory):
    need_services()
    need("Azurite (bash .ci/setup --tests)", azurite_binary() is not None)
    server = AzuriteServer(tmp_path_factory.mktemp("azurite-tls"), tls=True).start()
    try:
        with pytest.MonkeyPatch.context() as m:
            m.setattr(libcloud.security, "CA_CERTS_PATH", str(server.certificate))
            make_driver(_config(server)).create_container("tls")
        yield server
    finally:
        server.stop()


@pytest.fixture
def inventory(azurite_tls, monkeypatch, tmp_path):
    monkeypatch.setenv("CMQ_HOME", str(tmp_path / "home"))
    return Inventory(path=tmp_path / "cmq.yaml", machines={}, storage={"az": _config(azurite_tls)})


def trusted(monkeypatch, azurite_tls) -> None:
    monkeypatch.setattr(libcloud.security, "CA_CERTS_PATH", str(azurite_tls.certificate))


@pytest.mark.parametrize("through", ["kept-alive", "requests"])
def test_a_store_whose_certificate_is_trusted_is_used_over_https(azurite_tls, inventory, monkeypatch, tmp_path,
                                                                    through):
    trusted(monkeypatch, azurite_tls)
    if through == "requests":
        monkeypatch.setattr(SignedHttp, "usable", staticmethod(lambda conn: False))
    provider = open_service(inventory, "az")
    try:
        if through == "kept-alive":
            assert provider._http is not None
        local = tmp_path / "a.txt"
        local.write_bytes(b"over https " + secrets.token_bytes(16))
        provider.put_file(local, f"{through}/a.txt")
        if through == "kept-alive":
            assert isinstance(provider._http.http, http.client.HTTPSConnection)
        entry = provider.get_file(f"{through}/a.txt", tmp_path / "back.txt")
        assert (tmp_path / "back.txt").read_bytes() == local.read_bytes() and entry.size == local.stat().st_size
        assert [e.name for e in provider.list(through)] == [f"{through}/a.txt"]
    finally:
        provider.close()


@pytest.mark.parametrize("through", ["kept-alive", "requests"])
def test_a_certificate_nobody_vouches_for_is_refused_in_one_line(azurite_tls, inventory, monkeypatch, through):
    if through == "requests":
        monkeypatch.setattr(SignedHttp, "usable", staticmethod(lambda conn: False))
    provider = open_service(inventory, "az")
    try:
        with pytest.raises(StorageUnavailableError) as refused:
            provider.list("")
    finally:
        provider.close()
    message = str(refused.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message, message
    assert "\n" not in message


@pytest.mark.parametrize("through", ["kept-alive", "requests"])
def test_a_store_is_not_checked_only_when_libcloud_is_told_not_to(azurite_tls, inventory, monkeypatch, through):
    monkeypatch.setattr(libcloud.security, "VERIFY_SSL_CERT", False)
    if through == "requests":
        monkeypatch.setattr(SignedHttp, "usable", staticmethod(lambda conn: False))
    provider = open_service(inventory, "az")
    try:
        assert provider.stat("nothing-by-this-name") is None           # answered over HTTPS, unchecked
    finally:
        provider.close()
