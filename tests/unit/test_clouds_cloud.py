"""The Cloud context's checks that need no cloud: unknown clouds, drivers and actions;
a TBD credential without a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmqueue.clouds.cloud import Cloud, compute_driver
from cmqueue.clouds.config import parse
from cmqueue.errors import ConfigError, UsageError

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
