#!/usr/bin/env bash
# Build a Vagrant box for the libvirt provider from Debian bookworm, offline of any
# box catalogue: debootstrap from this machine's own Debian mirror (its apt sources,
# unless MIRROR is given), an ext4 image made
# with mkfs.ext4 -d (no loop mount), and the kernel and initrd shipped inside the box
# so that libvirt boots them directly (no boot loader, no partition table).
#
#   sudo vagrant/build-box.sh OUT.box [MIRROR]
#
# The box has a user "vagrant" with Vagrant's well-known key (Vagrant swaps it for a
# key of its own on first boot), passwordless sudo, DHCP on eth0, python3-venv for
# `cmq machines join`, and no ssh host keys: each VM makes its own on first boot.
set -euo pipefail

out=${1:?usage: build-box.sh OUT.box [MIRROR]}
mirror=${2:-$("$(dirname "$0")/../scripts/debian-mirror")}
[ -n "$mirror" ] || { echo "build-box.sh: no Debian mirror in this machine's apt sources; give MIRROR" >&2; exit 2; }
suite=bookworm
size_gb=3
[ "$(id -u)" = 0 ] || { echo "build-box.sh: debootstrap needs root" >&2; exit 2; }
insecure_key=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
    /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1 || true)
[ -n "$insecure_key" ] || { echo "build-box.sh: Vagrant's keys/vagrant.pub not found; is vagrant installed?" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/cmq-box.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs

echo "build-box: debootstrap $suite from $mirror"
debootstrap --variant=minbase \
    --include=linux-image-cloud-amd64,openssh-server,sudo,python3,python3-venv,systemd-sysv,ifupdown,isc-dhcp-client,iproute2,procps,rsync \
    "$suite" "$root" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }

echo "build-box: configure"
echo cmq-box > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 cmq-box\n' > "$root/etc/hosts"
echo '/dev/vda / ext4 defaults,noatime 0 1' > "$root/etc/fstab"
cat > "$root/etc/network/interfaces" <<'IFACES'
auto lo
iface lo inet loopback
auto eth0
iface eth0 inet dhcp
IFACES
chroot "$root" useradd --create-home --shell /bin/bash vagrant
install -d -m 0700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$insecure_key" "$root/home/vagrant/.ssh/authorized_keys"
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
echo 'UseDNS no' > "$root/etc/ssh/sshd_config.d/cmq-box.conf"
# Host keys are made per VM at first boot, never shared by every VM of the box.
rm -f "$root"/etc/ssh/ssh_host_*
cat > "$root/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Make this machine's own ssh host keys
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
ln -s /etc/systemd/system/ssh-hostkeys.service "$root/etc/systemd/system/multi-user.target.wants/ssh-hostkeys.service"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/*

echo "build-box: image"
mkdir "$work/box"
cp "$root"/boot/vmlinuz-* "$work/box/vmlinuz"
cp "$root"/boot/initrd.img-* "$work/box/initrd.img"
truncate -s "${size_gb}G" "$work/root.raw"
mkfs.ext4 -q -L root -d "$root" "$work/root.raw"
qemu-img convert -c -O qcow2 "$work/root.raw" "$work/box/box.img"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$size_gb" > "$work/box/metadata.json"
cat > "$work/box/Vagrantfile" <<'VF'
# Boots the kernel shipped in this box directly: the image has no boot loader.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = File.join(__dir__, "vmlinuz")
    libvirt.initrd = File.join(__dir__, "initrd.img")
    libvirt.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
  end
end
VF
tar -C "$work/box" -czf "$out.part" metadata.json Vagrantfile box.img vmlinuz initrd.img
mv "$out.part" "$out"
echo "build-box: $out ($(du -h "$out" | cut -f1))"
