"""`cmq vagrant` against the real vagrant binary.

The Vagrantfile is checked by `vagrant validate` with vagrant-libvirt. The rest runs with
a provider of the test suite (tests/support/vagrant/loopback_provider.rb) whose "VMs" are
sshd daemons on loopback addresses: vagrant itself renders `vagrant ssh-config`, looks up
boxes and reports errors; cmq pins the host keys, writes the inventory beside the main
one, and runs jobs there. VMs booted for real under QEMU: vagrant/e2e.sh and
docs/vagrant.md.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from cmqueue.cli.demo_machines import LoopbackCluster, user_name
from cmqueue.clouds.vagrant import ClusterPaths, ClusterSpec, render
from cmqueue.core.files import write_private
from tests.conftest import CmqEnv, need, need_services
from tests.support.redis_server import RedisServer

PROVIDER = Path(__file__).resolve().parents[2] / "support" / "vagrant" / "loopback_provider.rb"
BOX = "cmq-test/loopback"


@pytest.fixture(scope="module")
def vagrant_home(tmp_path_factory) -> Path:
    """A VAGRANT_HOME whose Vagrantfile loads the loopback provider, with a box for it."""
    need("vagrant", shutil.which("vagrant") is not None)
    home = tmp_path_factory.mktemp("vagrant-home")
    (home / "Vagrantfile").write_text(f'require "{PROVIDER}"\n')
    box_dir = tmp_path_factory.mktemp("box")
    (box_dir / "metadata.json").write_text('{"provider": "loopback"}\n')
    box = box_dir / "loopback.box"
    with tarfile.open(box, "w:gz") as tar:
        tar.add(box_dir / "metadata.json", arcname="metadata.json")
    subprocess.run(["vagrant", "box", "add", "--name", BOX, str(box)], check=True, capture_output=True,
                   env={**os.environ, "VAGRANT_HOME": str(home)})
    return home


def test_the_rendered_vagrantfile_passes_vagrant_validate_with_libvirt(tmp_path):
    need("vagrant", shutil.which("vagrant") is not None)
    paths = ClusterPaths(tmp_path / "cmq.yaml")
    paths.root.mkdir()
    env = {**os.environ, "VAGRANT_HOME": str(tmp_path / "vh"), "VAGRANT_DEFAULT_PROVIDER": "libvirt"}
    for accel in ("tcg", "kvm"):
        paths.vagrantfile.write_text(render(ClusterSpec(count=2, accel=accel, memory=768, cpus=2), paths))
        r = subprocess.run(["vagrant", "validate"], cwd=paths.root, env=env, capture_output=True, text=True)
        assert r.returncode == 0 and "validated successfully" in r.stdout, r.stdout + r.stderr
    # vagrant-libvirt's validation is real: a setting it does not know is an error.
    paths.vagrantfile.write_text(paths.vagrantfile.read_text().replace("libvirt.cpus", "libvirt.cpuz"))
    r = subprocess.run(["vagrant", "validate"], cwd=paths.root, env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "cpuz" in r.stdout + r.stderr


class VagrantEnv(CmqEnv):
    """A CmqEnv whose inventory starts with no machine, and two sshd 'VMs'."""

    def vms(self, **where: tuple[str, int]) -> None:
        """Point the loopback provider's vm1.. at these (address, port)."""
        user, key = user_name(), str(self.cluster.key)
        self.env["CMQ_TEST_VMS"] = json.dumps(
            {name: {"host": a, "port": p, "user": user, "key": key} for name, (a, p) in where.items()})


@pytest.fixture
def venv(tmp_path, vagrant_home):
    need_services()
    cluster = LoopbackCluster(tmp_path / "cluster", n=2, slots=1, first=171).start()
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    config = write_private(tmp_path / "cmq.yaml", yaml.safe_dump(
        {"broker": redis.url, "settings": {"flower_port": 0}, "machines": {}}))
    env = {**os.environ, "CMQ_CONFIG": str(config), "CMQ_HOME": str(tmp_path / "home"),
           "VAGRANT_HOME": str(vagrant_home)}
    env.pop("CMQ_BROKER", None)
    v = VagrantEnv(root=tmp_path, config=config, home=tmp_path / "home", cluster=cluster, redis=redis, env=env)
    m1, m2 = cluster.machines
    v.vms(vm1=(m1.address, m1.port), vm2=(m2.address, m2.port))
    yield v
    try:
        v.run("vagrant", "destroy", timeout=120)
        v.run("down", "--grace=2", timeout=60)
    finally:
        cluster.stop()
        redis.stop()


def up(v: VagrantEnv, *more: str, n: str = "2"):
    return v.run("vagrant", "up", n, "--provider=loopback", f"--box={BOX}", "--mode=ssh", "--slots=1",
                 f"--workdir={v.root / 'vmwork'}", *more, timeout=300)


def last_line(r) -> str:
    """The error line of a failed `cmq vagrant up` (vagrant's progress comes before it):
    the only line from cmq, and no traceback."""
    assert "Traceback" not in r.err
    assert [ln for ln in r.err.splitlines() if ln.startswith("cmq:")] == [r.err.strip().splitlines()[-1]]
    return r.err.strip().splitlines()[-1]


@pytest.mark.timeout(900)
def test_up_adds_the_vms_with_pinned_keys_jobs_run_there_and_destroy_removes_them(venv):
    paths = ClusterPaths(venv.config)
    r = up(venv)
    assert r.code == 0, r.err
    assert r.err.count("pinned host key") == 2 and "vm1 (ED25519)" in r.err and "vm2 (ED25519)" in r.err
    assert stat.S_IMODE(paths.machines.stat().st_mode) == 0o600
    rows = {row["name"]: row for row in venv.run("machines", "--json", check=True).json()}
    m1, m2 = venv.cluster.machines
    assert (rows["vm1"]["host"], rows["vm1"]["port"]) == (m1.address, m1.port)
    assert (rows["vm2"]["host"], rows["vm2"]["port"]) == (m2.address, m2.port)
    assert rows["vm1"]["labels"] == ["vagrant"] and rows["vm1"]["identity"] == str(venv.cluster.key)
    assert rows["vm2"]["ssh_options"] == {"HostKeyAlias": "vm2", "UserKnownHostsFile": str(paths.known_hosts)}
    status = {row["name"]: row for row in venv.run("vagrant", "status", "--json", check=True).json()}
    assert {n: (s["state"], s["in_inventory"]) for n, s in status.items()} == {
        "vm1": ("running", True), "vm2": ("running", True)}

    # The pinned keys are checked: both answer as themselves, and not with each other's keys.
    # (Swapped first: a check that passed leaves ssh masters that later checks reuse.)
    pinned = paths.known_hosts.read_text()
    paths.known_hosts.write_text(pinned.replace("vm1 ", "vmX ").replace("vm2 ", "vm1 ").replace("vmX ", "vm2 "))
    swapped = venv.run("machines", "check", "vm1,vm2", "--json")
    assert swapped.code == 1 and [row["host_key"] for row in swapped.json()] == ["CHANGED", "CHANGED"], swapped.out
    paths.known_hosts.write_text(pinned)
    assert venv.run("machines", "check", "vm1,vm2").code == 0

    assert venv.run("up").code == 0
    r = venv.run("map", "--label=vagrant", "echo {} $CMQ_MACHINE; sleep 0.5", ":::", *"1234", timeout=120)
    assert r.code == 0, r.err
    words = r.out.split()
    assert words[0::2] == list("1234") and set(words[1::2]) == {"vm1", "vm2"}, r.out
    assert venv.run("down", "--grace=2").code == 0

    # A job bound to a VM keeps it from going away, unless --force.
    job = venv.run("submit", "--on=vm1", "--json", "echo later", check=True).json()["jobs"][0]["id"]
    r = venv.run("vagrant", "halt")
    assert r.code == 2 and r.err.startswith(f"cmq: 1 unfinished jobs need the VMs ({job})") and \
        "--force" in r.err, r.err
    venv.run("cancel", job, check=True)
    r = venv.run("vagrant", "halt")
    assert r.code == 0, r.err
    rows = {row["name"]: row for row in venv.run("machines", "--json", check=True).json()}
    assert rows["vm1"]["enabled"] is False and rows["vm2"]["enabled"] is False

    r = venv.run("vagrant", "destroy", timeout=120)
    assert r.code == 0 and "removed from the inventory: vm1, vm2" in r.err, r.err
    assert not paths.machines.exists() and not paths.root.exists()
    assert venv.run("machines", "--json", check=True).json() == []


def test_a_vm_that_never_answers_is_named_and_the_ones_that_did_stay_listed(venv):
    paths = ClusterPaths(venv.config)
    m1 = venv.cluster.machines[0]
    venv.vms(vm1=(m1.address, m1.port), vm2=("127.0.0.173", m1.port))     # nothing listens there
    r = up(venv)
    error = last_line(r)
    assert r.code == 1, r.err
    assert error.startswith("cmq: vm2: could not read its ssh host keys at 127.0.0.173") and \
        "in the inventory: vm1" in error and "cmq vagrant destroy" in error, error
    assert [row["name"] for row in venv.run("machines", "--json", check=True).json()] == ["vm1"]
    r = venv.run("vagrant", "destroy", timeout=120)
    assert r.code == 0 and not paths.machines.exists()


def test_bad_input_is_one_line_and_leaves_no_inventory(venv):
    paths = ClusterPaths(venv.config)
    for args, code, start in [
        (["0"], 2, "cmq: cmq vagrant up: N must be a positive integer, got 0"),
        (["two"], 2, "cmq: cmq vagrant up: N must be a positive integer, got 'two'"),
    ]:
        r = venv.run("vagrant", "up", *args)
        assert (r.code, r.err.strip()) == (code, start)
    # No inventory: refused before any VM boots, and nothing written beside it.
    missing = venv.root / "missing" / "cmq.yaml"
    r = venv.run("--config", str(missing), "vagrant", "up", "1", "--provider=loopback", f"--box={BOX}")
    assert (r.code, r.err.strip()) == (2, f"cmq: {missing}: inventory not found (create it, or pass --config "
                                          "/ set CMQ_CONFIG)")
    assert not missing.parent.exists()
    # A provider vagrant does not have, and one that cannot run here (VirtualBox is not
    # packaged in Debian): vagrant's own reason, as a configuration error.
    r = venv.run("vagrant", "up", "1", "--provider=nosuchprovider", "--mode=ssh", timeout=120)
    error = last_line(r)
    assert r.code == 2 and error.startswith("cmq: --provider=nosuchprovider: ") and \
        "could not be found" in error and "no VM is running" in error, r.err
    assert not paths.machines.exists()
    venv.run("vagrant", "destroy", check=True)
    if shutil.which("VBoxManage") is None:
        r = venv.run("vagrant", "up", "1", "--provider=virtualbox", "--mode=ssh", timeout=120)
        error = last_line(r)
        assert r.code == 2 and error.startswith("cmq: --provider=virtualbox: ") and "VirtualBox" in error, r.err
        venv.run("vagrant", "destroy", check=True)
    # A box that is neither installed nor in a catalogue this machine can reach.
    r = venv.run("vagrant", "up", "1", "--provider=loopback", "--box=cmq-test/no-such-box", "--mode=ssh",
                 timeout=300)
    error = last_line(r)
    assert r.code == 2 and error.startswith("cmq: --box=cmq-test/no-such-box: ") and \
        "cmq-test/no-such-box" in error.split(": ", 2)[2], r.err
    assert not paths.machines.exists()
    assert venv.run("machines", "--json", check=True).json() == []
