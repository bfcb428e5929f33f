"""The small image's per-VM initrd: the shared image followed by what is the VM's own,
private, and none of it on QEMU's command line."""

from __future__ import annotations

import gzip

from cmqueue.clouds.image import KERNEL_CMDLINE, _newc, image_version, vm_initrd


def members(archive: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of every entry of concatenated newc archives."""
    out, at = {}, 0
    while at < len(archive):
        if archive[at:at + 6] != b"070701":
            at += 1                                          # padding between archives
            continue
        fields = [int(archive[at + 6 + 8 * i: at + 14 + 8 * i], 16) for i in range(13)]
        mode, size, name_len = fields[1], fields[6], fields[11]
        name_at = at + 110
        name = archive[name_at:name_at + name_len - 1].decode()
        data_at = (name_at + name_len + 3) & ~3
        out[name] = (mode, archive[data_at:data_at + size])
        at = (data_at + size + 3) & ~3
    return out


def test_a_vms_initrd_is_the_image_then_its_name_login_key_and_host_key_all_private(tmp_path):
    base = tmp_path / "initrd.gz"
    base.write_bytes(gzip.compress(_newc([("init", 0o100755, b"#!/bin/sh\n")])))
    host_key = tmp_path / "vm1.host_key"
    host_key.write_bytes(b"\x00\x01private-host-key-bytes")
    out = vm_initrd(base, tmp_path / "vm1.initrd", "vm1", "ssh-ed25519 AAAA cmq-cloud\n", host_key)
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert out.read_bytes().startswith(base.read_bytes())
    entries = members(gzip.decompress(out.read_bytes()))
    assert entries["init"] == (0o100755, b"#!/bin/sh\n")
    assert entries["etc/hostname"] == (0o100644, b"vm1\n")
    assert entries["root/.ssh/authorized_keys"] == (0o100600, b"ssh-ed25519 AAAA cmq-cloud\n")
    assert entries["etc/dropbear/host_key"] == (0o100600, b"\x00\x01private-host-key-bytes")
    assert "key" not in KERNEL_CMDLINE


def test_the_image_version_changes_with_what_the_image_is_made_of(monkeypatch):
    before = image_version()
    monkeypatch.setattr("cmqueue.clouds.image.MODULES", ("virtio_pci",))
    assert image_version() != before
