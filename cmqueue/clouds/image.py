"""The small VM image cmq boots on a local libvirt cloud when no image is given: Debian's
cloud kernel and an initramfs of busybox and dropbear, made here from this machine's own
packages and apt configuration (no image catalogue, no network beyond the apt mirror).

The VM it boots brings up its user-mode network, makes its own ssh host key and prints
it on the serial console (``CMQ-HOSTKEY ...``, read and pinned by cmq before the first
connection), takes the authorized key from the kernel command line (``cmq.key=``,
base64: a public key, nothing secret) and starts dropbear; ``CMQ-READY`` follows.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..core.errors import CmqError

#: Kernel modules the VM needs (a virtio network card; the ACPI power button and the
#: input events acpid reads, for a clean stop); what they depend on comes too.
MODULES = ("virtio_pci", "virtio_net", "button", "evdev")
#: The Debian packages the image is made of (busybox-static and dropbear-bin installed here).
KERNEL_PACKAGE = "linux-image-cloud-amd64"

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts; mount -t devpts devpts /dev/pts
for m in {modules}; do insmod /lib/modules/$m.ko; done
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\necho CMQ-POWEROFF > /dev/console\nsync\npoweroff -f\n' > /etc/acpi/PWRF/00000080
chmod 755 /etc/acpi/PWRF/00000080; mkdir -p /var/log
(for i in $(seq 100); do grep -q "Power Button" /proc/bus/input/devices && break; sleep 0.1; done; acpid) &
ip link set lo up; ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
[ -s /etc/hostname ] && hostname "$(cat /etc/hostname)"
chmod 600 /root/.ssh/authorized_keys /etc/dropbear/host_key 2>/dev/null
[ -s /etc/dropbear/host_key ] || dropbearkey -t ed25519 -f /etc/dropbear/host_key > /dev/null 2>&1
echo "CMQ-HOSTKEY $(dropbearkey -y -f /etc/dropbear/host_key | grep ^ssh-)"
dropbear -R -E -s -p 22 -r /etc/dropbear/host_key
echo CMQ-READY
exec sh
"""


class ImageError(CmqError):
    """The VM image could not be made (a package or a tool missing here)."""


def _run(argv: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageError(f"{' '.join(argv[:3])}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return proc.stdout


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the "newc" format the kernel unpacks: (path, mode, data) each;
    a symbolic link's data is its target."""
    out = io.BytesIO()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        header = b"070701" + b"".join(f"{v:08X}".encode() for v in fields)
        out.write(header + encoded)
        out.write(b"\0" * (-(len(header) + len(encoded)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))
    return out.getvalue()


def _libraries(binary: str) -> list[str]:
    found = []
    for line in _run(["ldd", binary]).splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) > parts.index("=>") + 1 and parts[parts.index("=>") + 1].startswith("/"):
            found.append(parts[parts.index("=>") + 1])
        elif parts and parts[0].startswith("/"):
            found.append(parts[0])
    return found


def load_order(modules: Path, wanted: tuple[str, ...] = MODULES) -> list[Path]:
    """The module files of ``wanted`` and of what they depend on (read from each
    module's .modinfo), each after its dependencies."""
    index = {p.name.removesuffix(".ko").replace("-", "_"): p for p in modules.rglob("*.ko")}
    order: list[Path] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name not in index:
            raise ImageError(f"kernel module {name} not found under {modules}")
        if index[name] in order or name in path:
            return
        info = [f for f in index[name].read_bytes().split(b"\0") if f.startswith(b"depends=")]
        for dep in (info[0][len(b"depends="):].decode().split(",") if info else []):
            if dep:
                visit(dep.replace("-", "_"), (*path, name))
        order.append(index[name])

    for name in wanted:
        visit(name, ())
    return order


def kernel(cache: Path) -> tuple[Path, Path]:
    """(vmlinuz, modules directory) of Debian's cloud kernel, fetched once into ``cache``
    with this machine's apt (``apt-get download``: nothing is installed)."""
    done = sorted(cache.glob("kernel/boot/vmlinuz-*"))
    if done:
        return done[-1], next((cache / "kernel/lib/modules").iterdir())
    depends = _run(["apt-cache", "depends", KERNEL_PACKAGE])
    names = [ln.split()[-1] for ln in depends.splitlines() if ln.strip().startswith("Depends:")]
    package = next((n for n in names if n.startswith("linux-image-")), None)
    if package is None:
        raise ImageError(f"apt-cache depends {KERNEL_PACKAGE}: no kernel package named")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        _run(["apt-get", "download", "-q", package], cwd=Path(tmp))
        deb = next(Path(tmp).glob("*.deb"))
        _run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "kernel")])
        shutil.rmtree(cache / "kernel", ignore_errors=True)
        os.replace(Path(tmp) / "kernel", cache / "kernel")
    return kernel(cache)


def initramfs(modules: Path, out: Path) -> Path:
    """Write the VM's initramfs (busybox, dropbear, the network modules) to ``out``."""
    busybox = Path("/bin/busybox")
    dropbear = shutil.which("dropbear", path="/usr/sbin:/usr/bin")
    dropbearkey = shutil.which("dropbearkey", path="/usr/bin:/usr/sbin")
    if not busybox.exists() or subprocess.run(["ldd", str(busybox)], capture_output=True).returncode == 0:
        raise ImageError("a static /bin/busybox is needed: apt-get install busybox-static")
    if not dropbear or not dropbearkey:
        raise ImageError("dropbear is needed: apt-get install dropbear-bin")
    dirs = ["bin", "sbin", "etc", "etc/dropbear", "proc", "sys", "dev", "tmp", "root", "lib", "lib/modules",
            "usr", "usr/bin", "usr/sbin", "var", "var/run"]
    entries: list[tuple[str, int, bytes]] = [(d, 0o40755, b"") for d in dirs]
    entries.append(("root/.ssh", 0o40700, b""))
    files = {"bin/busybox": busybox, "usr/sbin/dropbear": Path(dropbear), "usr/bin/dropbearkey": Path(dropbearkey)}
    for lib in {*_libraries(dropbear), *_libraries(dropbearkey)}:
        files[lib.lstrip("/")] = Path(lib)
    made = set(dirs)
    for name, source in sorted(files.items()):
        parent = os.path.dirname(name)
        while parent and parent not in made:
            entries.append((parent, 0o40755, b""))
            made.add(parent)
            parent = os.path.dirname(parent)
        entries.append((name, 0o100755, source.resolve().read_bytes()))
    ordered = load_order(modules)
    for module in ordered:
        entries.append((f"lib/modules/{module.name}", 0o100644, module.read_bytes()))
    names = " ".join(m.name.removesuffix(".ko") for m in ordered)
    entries += [("init", 0o100755, INIT.format(modules=names).encode()),
                ("etc/passwd", 0o100644, b"root:x:0:0:root:/root:/bin/sh\n"),
                ("etc/group", 0o100644, b"root:x:0:\n"), ("etc/shells", 0o100644, b"/bin/sh\n")]
    entries.sort(key=lambda e: e[0].count("/"))
    tmp = out.with_suffix(".part")
    tmp.write_bytes(gzip.compress(_newc(entries), compresslevel=1))
    os.replace(tmp, out)
    return out


def small_image(cache: Path) -> tuple[Path, Path]:
    """(kernel, initrd) of the small VM image, made once into ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    vmlinuz, modules = kernel(cache)
    initrd = cache / f"initrd-{image_version()}.gz"
    if not initrd.exists():
        initramfs(modules, initrd)
    return vmlinuz, initrd


def image_version() -> str:
    """A short hash of what the small image is made of (its init and modules), so a
    changed image is made again rather than taken from an old cache."""
    import hashlib

    return hashlib.sha256(f"{INIT}{MODULES}".encode()).hexdigest()[:10]


#: The kernel command line of a small-image VM (what is its own is in its initrd).
KERNEL_CMDLINE = "console=ttyS0 quiet panic=-1"


def vm_initrd(base: Path, out: Path, name: str, authorized_key: str, host_key: Path) -> Path:
    """The initrd of one VM at ``out`` (0600): the small image's ``base`` followed by an
    archive of what is the VM's own (its name, the key cmq logs in with, and its ssh host
    key, which it keeps across restarts). Nothing of it is on QEMU's command line."""
    own = [("etc/hostname", 0o100644, f"{name}\n".encode()),
           ("root/.ssh/authorized_keys", 0o100600, authorized_key.strip().encode() + b"\n"),
           ("etc/dropbear/host_key", 0o100600, host_key.read_bytes())]
    tmp = out.with_suffix(".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base.read_bytes())
        f.write(gzip.compress(_newc(own), compresslevel=1))
    os.replace(tmp, out)
    return out


def make_host_key(path: Path) -> str:
    """A new ed25519 ssh host key in dropbear's format at ``path`` (0600); its public
    line (``ssh-ed25519 AAAA...``), which cmq pins before the VM first boots."""
    dropbearkey = shutil.which("dropbearkey", path="/usr/bin:/usr/sbin")
    if not dropbearkey:
        raise ImageError("dropbear is needed: apt-get install dropbear-bin")
    path.unlink(missing_ok=True)
    _run([dropbearkey, "-t", "ed25519", "-f", str(path)])
    path.chmod(0o600)
    return public_host_key(path)


def public_host_key(path: Path) -> str:
    """The public line (``ssh-ed25519 AAAA...``) of the dropbear host key at ``path``."""
    dropbearkey = shutil.which("dropbearkey", path="/usr/bin:/usr/sbin") or "dropbearkey"
    line = next((ln for ln in _run([dropbearkey, "-y", "-f", str(path)]).splitlines() if ln.startswith("ssh-")), "")
    return " ".join(line.split()[:2])


def wait_ready(console: Path, timeout: float = 120) -> str:
    """Wait until the VM writing ``console`` says it is ready; its ssh host key
    (``ssh-ed25519 AAAA...``), as it printed it there."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        text = console.read_bytes().decode("utf-8", "replace") if console.exists() else ""
        if "CMQ-READY" in text:
            for line in text.splitlines():
                if "CMQ-HOSTKEY " in line:
                    return " ".join(line.split("CMQ-HOSTKEY ", 1)[1].split()[:2])
            raise ImageError(f"{console}: the VM said it is ready but printed no host key")
        if time.monotonic() > deadline:
            raise ImageError(f"{console}: the VM was not ready in {timeout:.0f} s")
        time.sleep(0.1)
