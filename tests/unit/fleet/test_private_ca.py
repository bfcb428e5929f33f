"""The private CA of `cmq up --tls`: files and their modes, certificates OpenSSL accepts for
their role, reuse of what is valid, and what is made again."""

from __future__ import annotations

import socket
import ssl
import stat
import threading

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from cmqueue.core.errors import ConfigError, InsecureFileError
from cmqueue.fleet import private_ca
from cmqueue.fleet.private_ca import PrivateCA, names_of


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def usage(cert: x509.Certificate) -> list:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_the_ca_and_keys_are_private_and_reused(tmp_path):
    ca = PrivateCA(tmp_path)
    assert ca.ensure() is True
    assert ca.dir == tmp_path / "tls" and mode(ca.dir) == 0o700
    assert mode(ca.ca_key) == 0o600
    before = ca.ca_cert.read_bytes(), ca.ca_key.read_bytes()
    assert ca.ensure() is False
    assert (ca.ca_cert.read_bytes(), ca.ca_key.read_bytes()) == before
    cert = load(ca.ca_cert)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    client = ca.client("controller")
    assert mode(client.key) == 0o600 and mode(client.key.parent) == 0o700


def test_server_certificate_names_loopback_and_the_addresses_asked(tmp_path):
    ca = PrivateCA(tmp_path)
    server = ca.server(["10.0.0.5", "broker.example"])
    cert = load(server.cert)
    assert names_of(cert) == {"127.0.0.1", "localhost", "10.0.0.5", "broker.example"}
    assert usage(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    cert.verify_directly_issued_by(load(ca.ca_cert))
    assert mode(server.key) == 0o600
    # The same names: reused. Another address: made again, naming it.
    same = server.cert.read_bytes()
    ca.server(["10.0.0.5"])
    assert server.cert.read_bytes() == same
    ca.server(["10.0.0.6"])
    assert "10.0.0.6" in names_of(load(server.cert))


def test_client_certificates_are_per_name_for_client_authentication(tmp_path):
    ca = PrivateCA(tmp_path)
    a, b = ca.client("agent-m1"), ca.client("agent-m2")
    assert a.cert != b.cert and a.cert.read_bytes() != b.cert.read_bytes()
    cert = load(a.cert)
    assert usage(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert "agent-m1" in cert.subject.rfc4514_string()
    first = a.cert.read_bytes()
    assert ca.client("agent-m1").cert.read_bytes() == first
    with pytest.raises(ConfigError, match="TLS client"):
        ca.client("../escape")


def test_a_new_ca_makes_every_certificate_again(tmp_path):
    ca = PrivateCA(tmp_path)
    client = ca.client("controller")
    old = client.cert.read_bytes()
    ca.ca_cert.unlink()
    ca.client("controller")
    assert client.cert.read_bytes() != old
    load(client.cert).verify_directly_issued_by(load(ca.ca_cert))


def test_an_expiring_or_broken_certificate_is_made_again(tmp_path, monkeypatch):
    ca = PrivateCA(tmp_path)
    monkeypatch.setattr(private_ca, "LEAF_DAYS", 10)         # inside RENEW_BEFORE: stale at once
    client = ca.client("controller")
    first = client.cert.read_bytes()
    monkeypatch.setattr(private_ca, "LEAF_DAYS", 825)
    ca.client("controller")
    assert client.cert.read_bytes() != first
    client.cert.write_text("not a certificate\n")
    ca.client("controller")
    load(client.cert).verify_directly_issued_by(load(ca.ca_cert))


def test_a_key_others_can_read_is_refused(tmp_path):
    ca = PrivateCA(tmp_path)
    ca.ensure()
    ca.ca_key.chmod(0o644)
    with pytest.raises(InsecureFileError, match="chmod 600"):
        ca.ensure()


@pytest.mark.timeout(30)
def test_openssl_accepts_the_pair_with_the_ca_and_refuses_a_stranger(tmp_path):
    ca = PrivateCA(tmp_path / "ours")
    server, client = ca.server(), ca.client("controller")
    stranger = PrivateCA(tmp_path / "theirs").client("controller")

    def handshake(client_pair) -> str:
        srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv_ctx.load_cert_chain(server.cert, server.key)
        srv_ctx.load_verify_locations(ca.ca_cert)
        srv_ctx.verify_mode = ssl.CERT_REQUIRED                 # as tls-auth-clients yes
        cli_ctx = ssl.create_default_context(cafile=ca.ca_cert)
        cli_ctx.load_cert_chain(client_pair.cert, client_pair.key)
        left, right = socket.socketpair()
        errors: list[str] = []

        def serve() -> None:
            try:
                with srv_ctx.wrap_socket(right, server_side=True) as s:
                    s.sendall(s.recv(4))
            except (ssl.SSLError, OSError) as e:
                errors.append(str(e))

        t = threading.Thread(target=serve)
        t.start()
        try:
            with cli_ctx.wrap_socket(left, server_hostname="127.0.0.1") as c:
                c.sendall(b"ping")
                got = c.recv(4)
            return got.decode() or "closed: " + "; ".join(errors)
        except (ssl.SSLError, OSError) as e:
            return f"refused: {e}; {'; '.join(errors)}"
        finally:
            t.join(10)

    assert handshake(client) == "ping"
    assert "ping" not in handshake(stranger)
