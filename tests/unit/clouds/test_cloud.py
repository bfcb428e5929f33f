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


def test_a_drivers_error_is_shown_without_the_query_string_of_its_request():
    from cmqueue.clouds.drivers import first_line

    e = Exception("400 for url: https://ec2.example/?Action=RunInstances&AWSAccessKeyId=AKIAX&Signature=abc "
                  "(bad)\nsecond line")
    assert first_line(e) == "400 for url: https://ec2.example/?... (bad)"
