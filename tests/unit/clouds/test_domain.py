"""The libvirt domain cmq writes for a VM (pure): software emulation, user-mode network
with one forward on 127.0.0.1, the ssh endpoint kept in the metadata."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from cmqueue.clouds.domain import DomainSpec, cloud_of, domain_xml, ssh_endpoint


def spec(**kw):
    base = {"name": "vm1", "ssh_port": 40022, "console": "/tmp/c/vm1.console", "kernel": "/k/vmlinuz",
            "initrd": "/k/initrd.gz", "cloud": "lab"}
    return DomainSpec(**{**base, **kw})


def test_a_domain_is_software_emulated_with_one_forward_to_its_ssh_port_on_loopback():
    xml = domain_xml(spec())
    root = ET.fromstring(xml)
    assert root.get("type") == "qemu"
    args = [a.get("value") for a in root.iter("{http://libvirt.org/schemas/domain/qemu/1.0}arg")]
    assert "user,id=cmqnet,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22" in args
    assert root.find("devices/interface") is None                 # no libvirt network, no bridge
    assert root.find("os/kernel").text == "/k/vmlinuz"
    assert root.find("devices/serial/source").get("path") == "/tmp/c/vm1.console"
    assert ssh_endpoint(xml) == ("127.0.0.1", 40022)
    assert cloud_of(xml) == "lab"


def test_a_disk_image_boots_instead_of_a_kernel():
    root = ET.fromstring(domain_xml(spec(kernel="", initrd="", disk="/img/vm1.qcow2")))
    assert root.find("os/kernel") is None
    assert root.find("devices/disk/source").get("file") == "/img/vm1.qcow2"


def test_a_domain_not_made_by_cmq_has_no_endpoint():
    assert ssh_endpoint("<domain type='kvm'><name>other</name></domain>") is None
    assert cloud_of("<domain><name>other</name></domain>") is None
    assert ssh_endpoint("not xml") is None


@pytest.mark.parametrize("change, message", [
    ({"name": "bad name"}, "VM name"),
    ({"name": "x" * 64}, "VM name"),
    ({"ssh_port": 0}, "not a port"),
    ({"kernel": "", "initrd": ""}, "a kernel and initrd, or a disk"),
    ({"console": "/tmp/a,b"}, "','"),
])
def test_what_libvirt_or_qemu_would_misread_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        domain_xml(spec(**change))
