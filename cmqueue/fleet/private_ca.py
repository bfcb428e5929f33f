"""A private certificate authority for the broker's TLS (``cmq up --tls``).

Kept under ``$CMQ_HOME/tls/`` (0700): the CA (``ca.pem``, key ``ca.key``), the embedded
Redis's server certificate (``server.pem``/``server.key``) and the client certificates of
this controller and of agents (``clients/NAME.pem``/``NAME.key``). Every key is written
0600 and refused when group or others can read it. A file that is present and valid is
reused: signed by this CA, not expiring within :data:`RENEW_BEFORE`, its key matching, and
(a server's) naming every address asked for; anything else is made again. When the CA
itself is made again, every certificate it signed is made again as it is next asked for
(agents then need `cmq machines join` again).

Keys are ECDSA P-256; certificates carry the extended key usage of their role (server or
client authentication), as OpenSSL checks it on both ends.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..core.errors import ConfigError
from ..core.files import check_private, private_dir, write_private

#: Days a CA, and a server or client certificate, is valid for.
CA_DAYS = 3650
LEAF_DAYS = 825
#: A certificate that expires sooner than this is made again.
RENEW_BEFORE = datetime.timedelta(days=30)
#: Names a server certificate always carries (local services connect to 127.0.0.1).
LOCAL_NAMES = ("127.0.0.1", "localhost")
#: What a client certificate's name may be (it is a file name too).
CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as files (PEM)."""

    cert: Path
    key: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def san_of(name: str) -> x509.GeneralName:
    """The subjectAltName entry of ``name``: an IP address, else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def names_of(cert: x509.Certificate) -> set[str]:
    """The addresses and DNS names a certificate's subjectAltName carries."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in sans.get_values_for_type(x509.IPAddress)} | set(sans.get_values_for_type(x509.DNSName))


class PrivateCA:
    """The private CA of one cmq home (see the module)."""

    def __init__(self, home: Path) -> None:
        self.dir = Path(home).expanduser() / "tls"

    @property
    def ca_cert(self) -> Path:
        """The CA's certificate: what every client and the server check the other with."""
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The CA's key (0600)."""
        return self.dir / "ca.key"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the directory's lock: two commands (or threads) never make two CAs."""
        private_dir(self.dir)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- reading ---------------------------------------------------------------------------
    def _read(self, issued: Issued) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
        """The certificate and key of ``issued`` when both are there and readable; a key
        that others can read is refused (InsecureFileError)."""
        if not issued.cert.exists() or not issued.key.exists():
            return None
        check_private(issued.key, "TLS key")
        try:
            cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
            key = serialization.load_pem_private_key(issued.key.read_bytes(), password=None)
        except (ValueError, TypeError):
            return None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            return None
        return cert, key

    @staticmethod
    def _fresh(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
        """Whether ``cert`` is valid now and for a while yet, and ``key`` is its key."""
        now = _now()
        return (cert.not_valid_before_utc <= now and cert.not_valid_after_utc - RENEW_BEFORE > now
                and cert.public_key() == key.public_key())

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
        found = self._read(Issued(self.ca_cert, self.ca_key))
        if found is None or not self._fresh(*found):
            return None
        try:
            basic = found[0].extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            return None
        return found if basic.ca else None

    # -- making ----------------------------------------------------------------------------
    def ensure(self) -> bool:
        """Make the CA unless a valid one is there; whether it was made now."""
        with self._locked():
            return self._ensure_ca()[2]

    def _ensure_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
        found = self._load_ca()
        if found is not None:
            return found[0], found[1], False
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cmq"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"cmq private CA {_now():%Y-%m-%d %H:%M:%S}")])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=True, crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        write_private(self.ca_key, _key_pem(key))
        write_private(self.ca_cert, _cert_pem(cert))
        return cert, key, True

    def _issue(self, issued: Issued, common_name: str, names: list[str], usage: x509.ObjectIdentifier) -> Issued:
        """``issued`` made by this CA unless it is there, valid and names ``names``."""
        ca_cert, ca_key, _ = self._ensure_ca()
        found = self._read(issued)
        if found is not None and self._fresh(*found) and set(names) <= names_of(found[0]):
            try:
                found[0].verify_directly_issued_by(ca_cert)
                return issued
            except (ValueError, TypeError, InvalidSignature):
                pass                              # signed by an earlier CA
        key = _new_key()
        now = _now()
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cmq"),
                                            x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(min(now + datetime.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=True,
                                                key_cert_sign=False, crl_sign=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([san_of(n) for n in names]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        issued.cert.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(issued.key, _key_pem(key))
        write_private(issued.cert, _cert_pem(cert))
        return issued

    def server(self, addresses: Iterable[str] = ()) -> Issued:
        """The embedded Redis's certificate, naming 127.0.0.1, localhost and ``addresses``
        (made again when one of them is missing)."""
        names = list(dict.fromkeys([*LOCAL_NAMES, *(a for a in addresses if a)]))
        with self._locked():
            return self._issue(Issued(self.dir / "server.pem", self.dir / "server.key"), "cmq broker",
                               names, ExtendedKeyUsageOID.SERVER_AUTH)

    def client(self, name: str) -> Issued:
        """The client certificate of ``name`` (this controller, or an agent machine)."""
        if not CLIENT_NAME.match(name):
            raise ConfigError(f"a TLS client is named with letters, digits, '.', '_' and '-', got {name!r}")
        where = self.dir / "clients"
        with self._locked():
            private_dir(where)
            return self._issue(Issued(where / f"{name}.pem", where / f"{name}.key"), f"cmq client {name}",
                               [], ExtendedKeyUsageOID.CLIENT_AUTH)
