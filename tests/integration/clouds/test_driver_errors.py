"""A cloud on libcloud's EC2 driver against a test double of the EC2 API on loopback (and
against a closed port): its errors are one line naming the cloud and the reason, with no
request or secret in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmqueue.clouds.cloud import Cloud
from cmqueue.clouds.config import parse

INV = Path("cmq.yaml")


class Inventory:
    path = INV

    def __init__(self, clouds):
        self.clouds = parse(clouds, INV)


def ec2_cloud(tmp_path, port):
    """A cloud on libcloud's EC2 driver, pointed at the EC2 test double on ``port``."""
    creds = {"key": "AKIAEXAMPLE", "secret": "s3cr3t-value", "region": "us-east-1", "host": "127.0.0.1",
             "port": port, "secure": False}
    inventory = Inventory({"aws": {"type": "ec2", "credentials": creds,
                                   "default": {"image": "ami-1", "size": "t3.micro"}}})
    return Cloud("aws", inventory=inventory, home=tmp_path)


def free_closed_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_cloud_is_one_line_naming_it_and_the_reason_exit_3(tmp_path):
    from cmqueue.clouds.drivers import CloudUnavailableError

    port = free_closed_port()
    with ec2_cloud(tmp_path, port) as c:
        with pytest.raises(CloudUnavailableError) as caught:
            c.list()
    assert str(caught.value) == f"cloud aws (127.0.0.1:{port}): cannot reach it: connection refused"
    assert caught.value.exit_code == 3


def test_refused_credentials_are_one_line_without_the_request_or_the_secret(tmp_path):
    from cmqueue.clouds.drivers import CloudUnavailableError
    from tests.support.ec2_double import Ec2Double

    with Ec2Double() as ec2, ec2_cloud(tmp_path, ec2.port) as c:
        ec2.errors["*"] = (401, "AuthFailure", "AWS was not able to validate the provided access credentials")
        with pytest.raises(CloudUnavailableError) as caught:
            c.boot("web1")
    assert str(caught.value) == (f"cloud aws (127.0.0.1:{ec2.port}): the credentials were refused: AuthFailure: "
                                 "AWS was not able to validate the provided access credentials")
    assert ec2.actions == ["DescribeInstances"]            # refused at the first call: nothing else was tried


def test_a_quota_error_fails_the_boot_job_with_the_reason_and_nothing_is_recorded(tmp_path):
    from cmqueue.clouds import jobs
    from cmqueue.clouds.records import records_for
    from cmqueue.history.sqlite import SqliteStore
    from tests.support.ec2_double import Ec2Double

    with Ec2Double() as ec2:
        ec2.errors["RunInstances"] = (400, "InstanceLimitExceeded", "Your quota allows for 0 more running instances.")
        cloud = ec2_cloud(tmp_path, ec2.port)
        [spec] = jobs.build("aws", ["web1"], "boot")
        result = jobs.run(spec, cloud.inventory, "here")
        assert "RunInstances" in ec2.actions
        assert result.exit_code is None and result.data == {"final": True}
        assert result.reason == ("cloud: cloud aws: boot web1: InstanceLimitExceeded: Your quota allows for 0 more "
                                 "running instances.")
        store = SqliteStore(tmp_path / "history.sqlite")
        try:
            with cloud:
                assert cloud.refresh(store) == []
            assert records_for(store, "vm", key="id").search(cloud="aws") == []
        finally:
            store.close()
