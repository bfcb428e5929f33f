"""A local cloud: `cmq cloud` against virsh, one after another, on the same private
libvirtd, the same domain definition and the same small image, in one run.

1. Boot N VMs and run one job on each: `cmq cloud boot lab --count=N --join` then
   `cmq submit --on lab-[1-N] --wait 'uname -n'`, against `virsh define` + `virsh start`
   of each VM in turn, waiting for its ssh, then `ssh VM uname -n` in turn.
2. Suspend, resume and delete the N VMs: `cmq cloud suspend|resume|delete lab-[1-N]`
   (one job per VM, all at once) against `virsh suspend|resume|destroy+undefine` in turn.

Prints seconds for both and the ratio virsh/cmq (above 1: cmq is faster); --record
appends them to bench/RESULTS.md. Needs root, libvirtd, QEMU and virsh (bash .ci/setup --tests).
Usage: python bench/bench_cloud.py [--vms=4] [--record]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_jobs import report, versions  # noqa: E402

from cmqueue.clouds.domain import DomainSpec, domain_xml  # noqa: E402
from cmqueue.clouds.image import KERNEL_CMDLINE, make_host_key, small_image, vm_initrd, wait_ready  # noqa: E402
from cmqueue.clouds.libvirtd import PrivateLibvirtd  # noqa: E402
from cmqueue.core.files import write_private  # noqa: E402


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of a command; exits with its output when it fails."""
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return took


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=4)
    ap.add_argument("--record", action="store_true")
    opts = ap.parse_args()
    n = opts.vms
    root = Path(tempfile.mkdtemp(prefix="cmq-bench-cloud-"))
    daemon = PrivateLibvirtd(root / "libvirtd").start()
    home = root / "home"
    kernel, initrd = small_image(home / "clouds" / "images" / "small")
    config = root / "cmq.yaml"
    write_private(config, yaml.safe_dump({
        "machines": {"here": {"mode": "local", "slots": max(4, n)}},
        "clouds": {"lab": {"type": "libvirt", "credentials": {"uri": daemon.uri}}},
        "settings": {"flower_port": 0}}))
    env = {**os.environ, "CMQ_HOME": str(home), "CMQ_CONFIG": str(config)}
    env.pop("CMQ_BROKER", None)
    cmq = [sys.executable, "-m", "cmqueue"]
    virsh = ["virsh", "-q", "-c", daemon.uri]
    rows: list[tuple[str, float, float]] = []
    try:
        timed([*cmq, "up"], env)
        hosts = f"lab-[1-{n}]"
        boot = timed([*cmq, "cloud", "boot", "lab", f"--count={n}", "--join"], env)
        boot += timed([*cmq, "submit", f"--on={hosts}", "--wait", "uname -n"], env)
        acts = [timed([*cmq, "cloud", action, hosts], env) for action in ("suspend", "resume", "delete")]

        key = home / "clouds" / "id_ed25519"
        t0 = time.perf_counter()
        ports = {}
        for i in range(1, n + 1):
            name, port = f"v-{i}", free_port()
            ports[name] = port
            console = root / f"{name}.console"
            xml = root / f"{name}.xml"
            make_host_key(root / f"{name}.host_key")      # the same per-VM initrd cmq gives its VMs
            own = vm_initrd(initrd, root / f"{name}.initrd", name, Path(f"{key}.pub").read_text(),
                            root / f"{name}.host_key")
            xml.write_text(domain_xml(DomainSpec(name=name, ssh_port=port, console=str(console), kernel=str(kernel),
                                                 initrd=str(own), cmdline=KERNEL_CMDLINE)))
            timed([*virsh, "define", str(xml)])
            timed([*virsh, "start", name])
            host_key = wait_ready(console)
            with (root / "known_hosts").open("a") as f:
                f.write(f"[127.0.0.1]:{port} {host_key}\n")
        for port in ports.values():
            timed(["ssh", "-o", f"UserKnownHostsFile={root / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
                   "-o", "BatchMode=yes", "-i", str(key), "-p", str(port), "root@127.0.0.1", "uname -n"])
        virsh_boot = time.perf_counter() - t0
        virsh_acts = []
        for steps in (["suspend"], ["resume"], ["destroy", "undefine"]):
            t0 = time.perf_counter()
            for name in ports:
                for step in steps:
                    timed([*virsh, step, name])
            virsh_acts.append(time.perf_counter() - t0)
        rows = [(f"boot {n} VMs, one job on each", boot, virsh_boot),
                *[(f"{a} {n} VMs", c, v) for a, c, v in zip(("suspend", "resume", "delete"), acts, virsh_acts,
                                                          strict=True)]]
    finally:
        subprocess.run([*cmq, "down", "--grace=2"], env=env, capture_output=True)
        daemon.stop()
    lines = [f"cloud: {n} VMs on a private libvirtd (QEMU in software), cmq against virsh one after another:",
             f"  {'what':<32} {'cmq (s)':>8} {'virsh (s)':>9}  virsh/cmq"]
    lines += [f"  {what:<32} {c:8.2f} {v:9.2f}  {v / c:.2f}x" for what, c, v in rows]
    v = versions()
    v["libvirt"] = subprocess.run(["virsh", "--version"], capture_output=True, text=True).stdout.strip()
    v["qemu"] = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                               text=True).stdout.splitlines()[0]
    report("bench_cloud.py", lines, v, opts.record)


if __name__ == "__main__":
    main()
