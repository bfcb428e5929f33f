"""The inventory's storage: section (pure): what is accepted, what is refused and how."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmqueue.core.errors import ConfigError
from cmqueue.storage.config import parse

INV = Path("cmq.yaml")


def test_every_type_parses_and_the_public_view_masks_secrets():
    found = parse({
        "box": {"type": "local", "directory": "/srv"},
        "n": {"type": "ssh", "machine": "m1"},
        "s3": {"type": "s3", "endpoint": "http://127.0.0.1:9000", "bucket": "b", "key": "k", "secret": "sss"},
        "az": {"type": "azure", "container": "c", "key": "acct", "secret": "TBD"},
        "g": {"type": "libcloud", "driver": "google_storage", "container": "c", "args": {"project": "p",
                                                                                        "token": "t"}},
    }, INV, {"m1"})
    assert list(found) == ["box", "n", "s3", "az", "g"]
    assert found["s3"].container == "b"
    assert found["s3"].public()["secret"] == "***" and "sss" not in repr(found["s3"])
    assert found["az"].public()["secret"] == "(asked on the terminal)"
    assert found["g"].public()["args"] == {"project": "p", "token": "***"}


@pytest.mark.parametrize("raw, message", [
    ({"x": {"type": "ftp"}}, "storage.x.type: must be one of"),
    ({"x": {"type": "local"}}, "storage.x.directory: required for type local"),
    ({"x": {"type": "ssh", "machine": "nope"}}, "storage.x.machine: 'nope' is not a machine"),
    ({"x": {"type": "s3", "bucket": "b", "key": "k", "secret": "s"}}, "give an endpoint"),
    ({"x": {"type": "s3", "region": "r", "key": "k", "secret": "s"}}, "storage.x.bucket: required"),
    ({"x": {"type": "s3", "endpoint": "ftp://h", "bucket": "b", "key": "k", "secret": "s"}}, "must be an http"),
    ({"x": {"type": "azure", "container": "c", "key": "k"}}, "give secret (TBD to be asked for it)"),
    ({"x": {"type": "local", "directory": "/d", "colour": "red"}}, "storage.x.colour: unknown field"),
    ({"bad name!": {"type": "local", "directory": "/d"}}, "service names use letters"),
    ({"x": {"type": "azure", "container": "c", "key": "k", "secret": "s", "secret_file": "f"}}, "not both"),
])
def test_bad_services_name_the_field(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(raw, INV, {"m1"})
