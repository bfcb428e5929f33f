"""The Cloud context's checks that need no cloud: unknown clouds, drivers and actions;
a TBD credential without a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmqueue.clouds.cloud import Cloud
from cmqueue.clouds.config import parse
from cmqueue.clouds.drivers import compute_driver
from cmqueue.core.errors import ConfigError, UsageError

INV = Path("cmq.yaml")


class Inventory:
    path = INV

    def __init__(self, clouds):
        self.clouds = parse(clouds, INV)


def test_an_unknown_cloud_names_the_known_ones():
    with pytest.raises(UsageError, match=r"no cloud 'aws' in cmq.yaml \(clouds: lab\)"):
        Cloud("aws", inventory=Inventory({"lab": {"type": "libvirt"}}))


def test_a_driver_libcloud_does_not_have_is_a_config_error_naming_the_field():
    config = Inventory({"x": {"type": "nosuchcloud"}}).clouds["x"]
    with pytest.raises(ConfigError, match="cmq.yaml: clouds.x.type: libcloud has no compute driver 'nosuchcloud'"):
        compute_driver(config)


def test_a_tbd_credential_without_a_terminal_is_refused_not_sent(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    config = Inventory({"aws": {"type": "ec2", "credentials": {"key": "AKIA", "secret": "TBD"}}}).clouds["aws"]
    with pytest.raises(ConfigError, match="clouds.aws.credentials.secret: is TBD"):
        compute_driver(config)


def test_an_unknown_action_is_a_usage_error(tmp_path):
    cloud = Cloud("lab", inventory=Inventory({"lab": {"type": "libvirt"}}), home=tmp_path)
    with pytest.raises(UsageError, match="'explode': an action is one of boot, start"):
        cloud.machine("vm1", "explode")


def dummy_cloud(tmp_path, **default):
    """A cloud on libcloud's dummy compute driver: a test double of libcloud's, not a cloud."""
    return Cloud("d", inventory=Inventory({"d": {"type": "dummy", "credentials": {"key": 0}, "default": default}}),
                 home=tmp_path)


def test_a_driver_cloud_lists_acts_and_boots_by_image_and_size_names(tmp_path):
    with dummy_cloud(tmp_path, image="Ubuntu 9.10", size="Small") as c:
        assert [(r["name"], r["state"], r["provider"]) for r in c.list()] == [
            ("dummy-1", "running", "dummy"), ("dummy-2", "running", "dummy")]
        assert c.machine("dummy-1", "reboot")["state"] == "pending"      # the double says REBOOTING
        booted = c.boot("web1")
        assert booted["state"] == "running" and booted["cloud"] == "d"
        assert booted["name"] in [r["name"] for r in c.list()]
        assert c.machine("dummy-2", "delete")["state"] == "deleted"
        assert "dummy-2" not in [r["name"] for r in c.list()]


def test_a_driver_cloud_says_what_it_cannot_do_in_one_line(tmp_path):
    from cmqueue.clouds.drivers import CloudError

    with dummy_cloud(tmp_path, image="Ubuntu 9.10") as c:
        with pytest.raises(CloudError, match="cloud d: booting needs an image and a size"):
            c.boot("web1")
        with pytest.raises(CloudError, match=r"cloud d: image 'Windows' not found; there are: Ubuntu 9.10 \(1\)"):
            c.boot("web1", image="Windows", size="Small")
        with pytest.raises(CloudError, match="cloud d: suspend dummy-1: the dummy driver cannot suspend"):
            c.machine("dummy-1", "suspend")
        with pytest.raises(CloudError, match="no VM 'nope'"):
            c.machine("nope", "start")


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


def test_a_drivers_error_is_shown_without_the_query_string_of_its_request():
    from cmqueue.clouds.drivers import first_line

    e = Exception("400 for url: https://ec2.example/?Action=RunInstances&AWSAccessKeyId=AKIAX&Signature=abc "
                  "(bad)\nsecond line")
    assert first_line(e) == "400 for url: https://ec2.example/?... (bad)"
