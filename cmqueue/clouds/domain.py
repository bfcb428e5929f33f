"""The libvirt domain of a VM that cmq boots: libcloud's libvirt driver lists, starts,
suspends, resumes and destroys domains but cannot create one, so cmq writes it here.

Always ``<domain type='qemu'>`` (software emulation: no KVM needed). Networking is QEMU
user mode, with ``restrict=on`` (the VM reaches nothing outside) and one forward,
``127.0.0.1:PORT`` to the VM's port 22; no bridge, no NAT rule on the host. The ssh
endpoint is kept in the domain's ``<metadata>``, so it is read back from libvirt
(``ssh_endpoint``). The serial console goes to a file: the VM prints its ssh host key
there, which cmq pins before the first connection.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

#: XML namespace of QEMU's command-line passthrough in a libvirt domain.
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
#: XML namespace of cmq's metadata in a libvirt domain.
CMQ_NS = "urn:cmqueue:vm"
#: PCI slot of the VM's network card (q35 leaves it free).
NIC_SLOT = "0x10"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass
class DomainSpec:
    """What a VM is made of."""

    name: str
    ssh_port: int
    console: str                          #: file the serial console is written to
    kernel: str = ""                      #: direct kernel boot (with ``initrd``), or
    initrd: str = ""
    cmdline: str = "console=ttyS0 quiet panic=-1"
    disk: str = ""                        #: a qcow2 disk to boot from (its own boot loader)
    memory_mib: int = 256
    vcpus: int = 1
    cloud: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse what libvirt or QEMU would misread (ValueError naming the field)."""
        if not _NAME.match(self.name):
            raise ValueError(f"VM name {self.name!r}: letters, digits, '.', '_' and '-', at most 63")
        if not 0 < self.ssh_port < 65536:
            raise ValueError(f"ssh port {self.ssh_port}: not a port")
        if not (self.kernel and self.initrd) and not self.disk:
            raise ValueError("a VM boots a kernel and initrd, or a disk")
        for what, value in (("kernel", self.kernel), ("initrd", self.initrd), ("disk", self.disk),
                            ("console", self.console)):
            if "," in value:
                raise ValueError(f"{what} path {value!r}: a ',' would break QEMU's options")


def domain_xml(spec: DomainSpec) -> str:
    """The domain XML of ``spec`` (checked first)."""
    spec.check()
    ET.register_namespace("qemu", QEMU_NS)
    ET.register_namespace("cmq", CMQ_NS)
    dom = ET.Element("domain", {"type": "qemu"})
    ET.SubElement(dom, "name").text = spec.name
    meta = ET.SubElement(ET.SubElement(dom, "metadata"), f"{{{CMQ_NS}}}vm", {"cloud": spec.cloud})
    ET.SubElement(meta, f"{{{CMQ_NS}}}ssh", {"host": "127.0.0.1", "port": str(spec.ssh_port)})
    for key, value in sorted(spec.labels.items()):
        ET.SubElement(meta, f"{{{CMQ_NS}}}label", {"name": key, "value": value})
    ET.SubElement(dom, "memory", {"unit": "MiB"}).text = str(spec.memory_mib)
    ET.SubElement(dom, "vcpu").text = str(spec.vcpus)
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", {"arch": "x86_64", "machine": "q35"}).text = "hvm"
    if spec.kernel:
        ET.SubElement(os_el, "kernel").text = spec.kernel
        ET.SubElement(os_el, "initrd").text = spec.initrd
        ET.SubElement(os_el, "cmdline").text = spec.cmdline
    ET.SubElement(ET.SubElement(dom, "features"), "acpi")          # the power button a clean stop presses
    ET.SubElement(dom, "on_reboot").text = "restart"
    ET.SubElement(dom, "on_crash").text = "destroy"
    devices = ET.SubElement(dom, "devices")
    if spec.disk:
        disk = ET.SubElement(devices, "disk", {"type": "file", "device": "disk"})
        ET.SubElement(disk, "driver", {"name": "qemu", "type": "qcow2"})
        ET.SubElement(disk, "source", {"file": spec.disk})
        ET.SubElement(disk, "target", {"dev": "vda", "bus": "virtio"})
    serial = ET.SubElement(devices, "serial", {"type": "file"})
    ET.SubElement(serial, "source", {"path": spec.console})
    ET.SubElement(serial, "target", {"port": "0"})
    ET.SubElement(devices, "memballoon", {"model": "none"})
    args = ET.SubElement(dom, f"{{{QEMU_NS}}}commandline")
    for value in ("-netdev", f"user,id=cmqnet,restrict=on,hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22",
                  "-device", f"virtio-net-pci,netdev=cmqnet,bus=pcie.0,addr={NIC_SLOT}"):
        ET.SubElement(args, f"{{{QEMU_NS}}}arg", {"value": value})
    return ET.tostring(dom, encoding="unicode")


def ssh_endpoint(xml: str) -> tuple[str, int] | None:
    """(host, port) of the VM's ssh forward kept in domain ``xml``, or None (not cmq's)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    found = root.find(f"metadata/{{{CMQ_NS}}}vm/{{{CMQ_NS}}}ssh")
    if found is None:
        return None
    try:
        return found.get("host", "127.0.0.1"), int(found.get("port", ""))
    except ValueError:
        return None


def cloud_of(xml: str) -> str | None:
    """The cloud a cmq domain was booted in, or None (not cmq's)."""
    try:
        found = ET.fromstring(xml).find(f"metadata/{{{CMQ_NS}}}vm")
    except ET.ParseError:
        return None
    return None if found is None else found.get("cloud", "")
