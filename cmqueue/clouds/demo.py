"""`cmq cloud demo`: a whole local cloud in one command, each step a cmq command shown
as it runs: a private libvirtd, two VMs booted and joined as machines, a map with a
reduce across them, one suspended and resumed, both deleted, everything stopped.

Everything lives under $CMQ_HOME/cloud-demo (its own CMQ_HOME and inventory, with one
local machine whose worker runs the cloud actions); your own inventory, services and
any system libvirt are not touched. Needs root (libvirtd's mount namespace), libvirtd
and QEMU.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ..cli import output
from ..config.settings import home_dir
from ..core.errors import CmqError
from ..core.files import write_private
from .libvirtd import PrivateLibvirtd

#: The demo's map: the squares of 1..10, summed on the VMs.
NUMBERS = list(range(1, 11))


class DemoError(CmqError):
    """A step of the cloud demo failed; the message names the command."""


def demo_root() -> Path:
    """The cloud demo's directory (also its CMQ_HOME)."""
    return home_dir() / "cloud-demo"


def _cmq() -> list[str]:
    return [sys.executable, "-m", "cmqueue"]


def _step(env: dict[str, str], *argv: str, timeout: float = 300) -> str:
    """Run ``cmq ARGV`` (shown first, its output after); its standard output."""
    output.err.print(f"$ cmq {' '.join(shlex.quote(a) for a in argv)}", markup=False, highlight=False)
    proc = subprocess.run([*_cmq(), *argv], env=env, capture_output=True, text=True, timeout=timeout)
    for stream, text in ((sys.stdout, proc.stdout), (sys.stderr, proc.stderr)):
        if text:
            stream.write(text if text.endswith("\n") else text + "\n")
            stream.flush()
    if proc.returncode != 0:
        raise DemoError(f"`cmq {' '.join(argv)}` failed (exit {proc.returncode}); the demo stopped there")
    return proc.stdout


def run_cloud_demo(vms: int = 2) -> int:
    """Run the demo; 0 when the reduce across the VMs gave the expected value."""
    root = demo_root()
    if (root / "cmq.yaml").exists():
        subprocess.run([*_cmq(), "down", "--grace=2"], env=_env(root), capture_output=True)
    for item in ("libvirtd", "cmq.yaml", "cmq.clouds.yaml"):
        path = root / item
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    daemon = PrivateLibvirtd(root / "libvirtd").start()
    output.err.print(f"private libvirtd: {daemon.uri}", markup=False, highlight=False)
    env = _env(root)
    try:
        write_private(root / "cmq.yaml", yaml.safe_dump({
            "machines": {"here": {"mode": "local", "slots": 4}},
            "clouds": {"lab": {"type": "libvirt", "credentials": {"uri": daemon.uri}, "default": {"size": "small"}}},
            "settings": {"flower_port": 0},
        }, sort_keys=False))
        names = [f"lab-{i}" for i in range(1, vms + 1)]
        hostlist = f"lab-[1-{vms}]" if vms > 1 else names[0]
        _step(env, "up")
        _step(env, "cloud", "boot", "lab", f"--count={vms}", "--join")
        value = _step(env, "map", "--label=lab", "--reduce=sum", "echo $(( {} * {} ))", ":::",
                      *map(str, NUMBERS)).strip()
        _step(env, "cloud", "suspend", names[0])
        _step(env, "cloud", "list", "lab")
        _step(env, "cloud", "resume", names[0])
        _step(env, "cloud", "delete", hostlist)
        _step(env, "down", "--grace=2")
    finally:
        subprocess.run([*_cmq(), "down", "--grace=2"], env=env, capture_output=True)
        daemon.stop()
    expected = sum(n * n for n in NUMBERS)
    if value != str(expected):
        raise DemoError(f"the reduce gave {value!r}, not {expected}")
    output.err.print(f"cloud demo: {vms} VMs booted, joined, used (sum of squares {value}), suspended, resumed "
                     f"and deleted in {time.monotonic() - started:.0f} s; libvirtd stopped", markup=False,
                     highlight=False)
    return 0


def _env(root: Path) -> dict[str, str]:
    env = {**os.environ, "CMQ_HOME": str(root), "CMQ_CONFIG": str(root / "cmq.yaml")}
    env.pop("CMQ_BROKER", None)
    return env
