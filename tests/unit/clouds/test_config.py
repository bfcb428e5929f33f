"""The inventory's clouds: section (pure): what is accepted, what is refused and how."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cmqueue.clouds.config import parse
from cmqueue.config.inventory import load
from cmqueue.core.errors import ConfigError

INV = Path("cmq.yaml")


def test_clouds_parse_in_the_order_written_and_the_public_view_masks_secrets():
    found = parse({
        "lab": {"type": "libvirt", "credentials": {"uri": "qemu:///session"},
                "default": {"image": "bookworm", "size": "small"}},
        "aws": {"type": "EC2", "credentials": {"key": "AKIA1", "secret": "s3cr3t", "region": "eu-west-1"}},
        "os": {"type": "openstack", "credentials": {"username": "me", "password": "TBD"}},
    }, INV)
    assert list(found) == ["lab", "aws", "os"]
    assert found["aws"].type == "ec2" and found["lab"].default == {"image": "bookworm", "size": "small"}
    shown = found["aws"].public()
    assert shown["credentials"] == {"key": "***", "secret": "***", "region": "eu-west-1"}
    assert "s3cr3t" not in repr(found["aws"])
    assert found["os"].public()["credentials"] == {"username": "me", "password": "(asked on the terminal)"}
    assert found["lab"].public()["credentials"] == {"uri": "qemu:///session"}


@pytest.mark.parametrize("raw, message", [
    ({"x": {"credentials": {}}}, "clouds.x.type: must name a libcloud compute driver"),
    ({"x": {"type": "no such!"}}, "clouds.x.type: must name a libcloud compute driver"),
    ({"x": {"type": "ec2", "flavour": "big"}}, "clouds.x.flavour: unknown field; known: type, credentials, default"),
    ({"x": {"type": "ec2", "credentials": ["a"]}}, "clouds.x.credentials: must be a mapping"),
    ({"x": {"type": "ec2", "credentials": {"key": {"nested": 1}}}}, "clouds.x.credentials.key: must be a string"),
    ({"x": {"type": "ec2", "default": {"colour": "red"}}}, "clouds.x.default.colour: unknown field"),
    ({"bad name!": {"type": "ec2"}}, "cloud names use letters"),
    ("lab", "clouds: must be a mapping"),
])
def test_bad_clouds_are_refused_naming_the_field(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(raw, INV)


def test_the_inventory_carries_its_clouds_and_a_secret_in_it_needs_a_private_file(tmp_path):
    path = tmp_path / "cmq.yaml"
    path.write_text(yaml.safe_dump({"machines": {"m1": {"mode": "local"}},
                                    "clouds": {"aws": {"type": "ec2", "credentials": {"secret": "s"}}}}))
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="holds secrets"):
        load(path)
    path.chmod(0o600)
    assert list(load(path).clouds) == ["aws"]
