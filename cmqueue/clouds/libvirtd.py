"""A private libvirtd for a local cloud (tests, `cmq cloud demo`): started in a mount
namespace of its own, where /run/libvirt, /var/lib/libvirt, /var/log/libvirt,
/var/cache/libvirt and /etc/libvirt are empty tmpfs, so it shares nothing with a system
libvirt and leaves nothing behind; its socket is in a directory of ours, reached as
``qemu+unix:///system?socket=...``.

Its QEMU runs without a security driver and without cgroups (neither is needed for
software-emulated VMs of our own), and it defines no network: VMs use QEMU's user-mode
network, so no bridge or firewall rule appears on the host. The user ``libvirt-qemu``
that Debian's libvirtd insists on exists only in the namespace's copy of /etc/passwd.
Stopped by its pid; needs root (a mount namespace).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ..core.errors import ServiceError

LIBVIRTD_CONF = """unix_sock_dir = "{sock}"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:{log}"
"""
QEMU_CONF = """security_driver = "none"
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
swtpm_user = "root"
swtpm_group = "root"
"""
START = """set -e
for d in /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /etc/libvirt; do
  mkdir -p "$d"; mount -t tmpfs -o mode=0755 none "$d"
done
cp "$1/libvirtd.conf" "$1/qemu.conf" /etc/libvirt/
cp /etc/passwd "$1/passwd"; cp /etc/group "$1/group"
grep -q '^libvirt-qemu:' "$1/passwd" ||
  echo 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin' >> "$1/passwd"
grep -q '^libvirt-qemu:' "$1/group" || echo 'libvirt-qemu:x:64055:' >> "$1/group"
grep -q '^kvm:' "$1/group" || echo 'kvm:x:64056:' >> "$1/group"
mount --bind "$1/passwd" /etc/passwd; mount --bind "$1/group" /etc/group
exec libvirtd -f /etc/libvirt/libvirtd.conf -p "$1/libvirtd.pid"
"""


#: Longest path of the daemon's sockets kept under its directory (sun_path holds 108 bytes).
SOCKET_PATH_MAX = 100


def libvirtd_binary() -> str | None:
    """libvirtd's path, or None when it is not installed."""
    return shutil.which("libvirtd", path="/usr/sbin:/usr/bin:/sbin")


class PrivateLibvirtd:
    """A libvirtd of our own under ``root`` (its config, socket and log)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        sock = self.root / "sock"
        self._own_sock = len(str(sock / "libvirt-admin-sock")) >= SOCKET_PATH_MAX
        if self._own_sock:                   # a unix socket's path has at most 107 bytes
            sock = Path(tempfile.mkdtemp(prefix="cmq-libvirt-"))
        self.socket = sock / "libvirt-sock"
        self.log = self.root / "libvirtd.log"
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        """The libvirt URI of this daemon."""
        return f"qemu+unix:///system?socket={self.socket}"

    def start(self, timeout: float = 30) -> PrivateLibvirtd:
        """Start it and wait for its socket."""
        binary = libvirtd_binary()
        if binary is None:
            raise ServiceError("libvirtd is not installed (apt-get install libvirt-daemon "
                               "libvirt-daemon-driver-qemu qemu-system-x86)")
        if os.geteuid() != 0:
            raise ServiceError("a private libvirtd needs root (it runs in a mount namespace of its own)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        (self.root / "libvirtd.conf").write_text(LIBVIRTD_CONF.format(sock=self.socket.parent, log=self.log))
        (self.root / "qemu.conf").write_text(QEMU_CONF)
        (self.root / "start.sh").write_text(START)
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh",
                                      str(self.root / "start.sh"), str(self.root)],
                                     stdout=open(self.root / "out.log", "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"libvirtd did not start: {self._last_error()} (log: {self.log})")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        """Whether the daemon accepts connections on its socket (it may exist and be stale)."""
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(self.socket))
            except OSError:
                return False
        return True

    def _last_error(self) -> str:
        for path in (self.log, self.root / "out.log"):
            try:
                lines = [ln for ln in path.read_text(errors="replace").splitlines() if "error" in ln.lower()]
            except OSError:
                continue
            if lines:
                return lines[-1].split(" : ", 1)[-1][:300]
        return "no socket"

    def destroy_all(self) -> int:
        """Destroy and undefine every domain of this daemon (QEMU outlives libvirtd
        otherwise); how many there were."""
        import libvirt

        conn = libvirt.open(self.uri)
        try:
            domains = conn.listAllDomains()
            for dom in domains:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            return len(domains)
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop it, its VMs first; its mounts go with its namespace."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.destroy_all()
            except Exception:  # noqa: BLE001 - stopping anyway; a VM left is reported by the caller's check
                pass
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if self._own_sock:
            shutil.rmtree(self.socket.parent, ignore_errors=True)
