"""A real local cloud: a private libvirtd (its own mount namespace and socket), QEMU in
software emulation, the small VM image made from this machine's packages, and libcloud's
libvirt driver doing what it can (list, suspend, resume, destroy) on a VM cmq defined."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from cmqueue.clouds.domain import DomainSpec, domain_xml, ssh_endpoint
from cmqueue.clouds.image import KERNEL_CMDLINE, make_host_key, small_image, vm_initrd, wait_ready
from cmqueue.clouds.libvirtd import PrivateLibvirtd, libvirtd_binary
from tests.conftest import need

#: VMs boot under QEMU in software emulation: minutes each on a loaded machine.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def libvirtd(tmp_path_factory):
    need("libvirtd and QEMU (bash .ci/setup --tests)", libvirtd_binary() is not None
         and shutil.which("qemu-system-x86_64") is not None)
    need("root, for libvirtd's mount namespace", os.geteuid() == 0)
    daemon = PrivateLibvirtd(tmp_path_factory.mktemp("libvirtd")).start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return small_image(tmp_path_factory.mktemp("image"))


def test_a_vm_boots_answers_ssh_on_its_pinned_key_and_libcloud_drives_it(libvirtd, image, tmp_path):
    import libvirt
    from libcloud.compute.providers import get_driver
    from libcloud.compute.types import NodeState, Provider

    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = _free_port()
    console = tmp_path / "vm1.console"
    made = make_host_key(tmp_path / "vm1.host_key")
    own = vm_initrd(image[1], tmp_path / "vm1.initrd", "vm1", (tmp_path / "id.pub").read_text(),
                    tmp_path / "vm1.host_key")
    assert oct(own.stat().st_mode & 0o777) == "0o600"
    spec = DomainSpec(name="vm1", ssh_port=port, console=str(console), kernel=str(image[0]), initrd=str(own),
                      cmdline=KERNEL_CMDLINE, cloud="lab")
    conn = libvirt.open(libvirtd.uri)
    try:
        conn.defineXML(domain_xml(spec)).create()
    finally:
        conn.close()
    host_key = wait_ready(console)
    assert host_key == made                             # the VM serves the key made for it here
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key}\n")

    def ssh(command):
        return subprocess.run(["ssh", "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
                               "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key), "-p", str(port),
                               "root@127.0.0.1", command], capture_output=True, text=True, timeout=60)

    assert ssh("hostname").stdout.strip() == "vm1"
    driver = get_driver(Provider.LIBVIRT)(uri=libvirtd.uri)
    (node,) = [n for n in driver.list_nodes() if n.name == "vm1"]
    assert node.state == NodeState.RUNNING
    assert ssh_endpoint(driver._get_domain_for_node(node).XMLDesc()) == ("127.0.0.1", port)
    assert driver.ex_suspend_node(node)
    # libcloud calls a paused domain TERMINATED: cmq reads libvirt's own state for its VMs
    assert driver._get_domain_for_node(node).state()[0] == libvirt.VIR_DOMAIN_PAUSED
    assert driver.ex_resume_node(node)
    assert ssh("echo still here").stdout.strip() == "still here"
    wrong = tmp_path / "wrong_hosts"
    wrong.write_text(f"[127.0.0.1]:{port} {open(tmp_path / 'id.pub').read().split()[0]} "
                     f"{open(tmp_path / 'id.pub').read().split()[1]}\n")
    refused = subprocess.run(["ssh", "-o", f"UserKnownHostsFile={wrong}", "-o", "StrictHostKeyChecking=yes",
                              "-o", "BatchMode=yes", "-i", str(key), "-p", str(port), "root@127.0.0.1", "true"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 255 and "HOST IDENTIFICATION HAS CHANGED" in refused.stderr
    assert driver.destroy_node(node)                    # it stops the VM and leaves it defined
    dom = driver._get_domain_for_node(node)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    dom.undefine()
    assert [n for n in driver.list_nodes() if n.name == "vm1"] == []
    assert "virbr" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(libvirtd, image, tmp_path):
    """Cloud "lab" of an inventory, on the private libvirtd; its VMs deleted after."""
    import yaml

    from cmqueue.config.inventory import load

    inv = tmp_path / "cmq.yaml"
    inv.write_text(yaml.safe_dump({"machines": {"here": {"mode": "local"}},
                                   "clouds": {"lab": {"type": "libvirt", "credentials": {"uri": libvirtd.uri}}}}))
    inventory = load(inv)
    home = tmp_path / "clouds"
    # the small image made once for the module: the cloud finds it in its cache
    (home / "images").mkdir(parents=True)
    (home / "images" / "small").symlink_to(image[1].parent)
    yield inventory, home
    libvirtd.destroy_all()


def test_the_cloud_api_boots_acts_in_parallel_records_and_deletes(lab, tmp_path):
    from cmqueue import Cloud
    from cmqueue.clouds.drivers import CloudError
    from cmqueue.clouds.records import records_for
    from cmqueue.history import open_store

    inventory, home = lab
    with Cloud("lab", inventory=inventory, home=home) as c:
        booted = c.machines(["vm2", "vm3"], "boot")
        assert [(r["name"], r["state"]) for r in booted] == [("vm2", "running"), ("vm3", "running")]
        host, port = booted[0]["ssh"].split("@")[1].split(":")
        answer = subprocess.run(["ssh", "-o", f"UserKnownHostsFile={c.known_hosts}", "-o", "HostKeyAlias=vm2",
                                 "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                                 "-i", str(c.key), "-p", port, f"root@{host}", "hostname"],
                                capture_output=True, text=True, timeout=60)
        assert answer.stdout.strip() == "vm2", answer.stderr
        assert [r["state"] for r in c.machines(["vm2", "vm3"], "suspend")] == ["suspended", "suspended"]
        assert c.machine("vm3", "resume")["state"] == "running"
        assert c.machine("vm3", "stop")["state"] == "stopped"
        assert "CMQ-POWEROFF" in (home / "lab" / "vm3.console").read_text()      # it heard the power button
        assert c.machine("vm3", "start")["state"] == "running"                   # and is up again, same host key:
        again = subprocess.run(["ssh", "-o", f"UserKnownHostsFile={c.known_hosts}", "-o", "HostKeyAlias=vm3",
                                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                                "-i", str(c.key), "-p", booted[1]["ssh"].rsplit(":", 1)[1], "root@127.0.0.1",
                                "hostname"], capture_output=True, text=True, timeout=60)
        assert again.stdout.strip() == "vm3", again.stderr
        store = open_store(f"sqlite:///{tmp_path / 'history.db'}")
        c.refresh(store)
        vms = records_for(store, "vm", key="id")
        assert {r["name"]: r["state"] for r in vms.search(cloud="lab")} == {"vm2": "suspended", "vm3": "running"}
        with pytest.raises(CloudError, match="exists already"):
            c.boot("vm2")
        with pytest.raises(CloudError, match="no VM 'vm9'"):
            c.machine("vm9", "start")
        assert c.machine("vm2", "delete")["state"] == "deleted"
        assert [r["name"] for r in c.list()] == ["vm3"]
        c.refresh(store)
        assert [r["name"] for r in vms.search(cloud="lab")] == ["vm3"]
        store.close()
    assert oct((home / "known_hosts").stat().st_mode & 0o777) == "0o600"


@pytest.fixture
def cloud_env(libvirtd, image, tmp_path):
    """A cluster (`cmq up`: one machine, 3 slots) whose inventory has cloud lab on the private libvirtd."""
    from tests.conftest import make_env, teardown

    env = make_env(tmp_path, machines=1, slots=3, first=211,
                   sections={"clouds": {"lab": {"type": "libvirt", "credentials": {"uri": libvirtd.uri}}}})
    (env.home / "clouds" / "images").mkdir(parents=True)
    (env.home / "clouds" / "images" / "small").symlink_to(image[1].parent)
    yield env
    teardown(env)
    libvirtd.destroy_all()


def test_cloud_commands_send_one_job_per_vm_and_say_what_failed(cloud_env):
    import json

    r = cloud_env.run("cloud", "boot", "lab", "vm[7-8]", timeout=180)
    assert r.code == 0, r.err
    assert [ln.split()[:3] for ln in r.out.splitlines()[1:]] == [["vm7", "lab", "running"], ["vm8", "lab", "running"]]
    r = cloud_env.run("cloud", "suspend", "vm7")
    assert r.code == 0, r.err
    listed = json.loads(cloud_env.run("cloud", "list", "lab", "--output=json", check=True).out)
    assert {v["name"]: v["state"] for v in listed} == {"vm7": "suspended", "vm8": "running"}
    jobs = [j for j in cloud_env.run("jobs", "--json", check=True).json() if j["kind"] == "cloud"]
    assert sorted(j["command"] for j in jobs) == ["cloud lab: boot vm7", "cloud lab: boot vm8",
                                                  "cloud lab: suspend vm7"]
    assert {j["state"] for j in jobs} == {"succeeded"}
    again = cloud_env.run("cloud", "boot", "lab", "vm8")
    assert again.code == 1 and "exists already" in again.err and "Traceback" not in again.err
    r = cloud_env.run("cloud", "delete", "vm[7-8]")
    assert r.code == 0, r.err
    assert json.loads(cloud_env.run("cloud", "list", "--output=json", check=True).out) == []
    bad = cloud_env.run("cloud", "start", "vm[1-")
    assert bad.code == 2 and bad.err.startswith("cmq: NAMES:")


def test_a_vm_booted_with_join_runs_jobs_as_a_machine_until_it_is_deleted(cloud_env, monkeypatch):
    import json

    r = cloud_env.run("cloud", "boot", "lab", "vm9", "--join", "--slots=2", timeout=180)
    assert r.code == 0, r.err
    assert "joined: vm9 (label lab)" in r.err
    assert (cloud_env.config.parent / "cmq.clouds.yaml").stat().st_mode & 0o777 == 0o600
    ran = cloud_env.run("submit", "--on", "vm9", "--wait", "uname -n; echo $((6 * 7))", timeout=120)
    assert ran.code == 0, ran.err
    assert ran.out.split() == ["vm9", "42"]
    machines = {m["name"]: m for m in json.loads(cloud_env.run("machines", "--json", check=True).out)}
    assert machines["vm9"]["worker"] == "consuming"
    from cmqueue import Cloud
    from cmqueue.config.inventory import load

    monkeypatch.setenv("CMQ_HOME", str(cloud_env.home))
    with Cloud("lab", inventory=load(cloud_env.config)).vm("vm9") as vm:
        assert vm.record["state"] == "running"
        result = vm.run("echo from $(uname -n)", timeout=60)
        assert (result.exit_code, result.stdout) == (0, "from vm9\n")
    shell = cloud_env.run("cloud", "ssh", "vm9", "--", "echo", "it's", "vm9")
    assert shell.code == 0 and shell.out.strip() == "it's vm9", shell.err
    busy = cloud_env.run("submit", "--on", "vm9", "sleep 600")
    assert busy.code == 0, busy.err
    refused = cloud_env.run("cloud", "delete", "vm9")
    assert refused.code == 2 and "unfinished jobs need the VMs" in refused.err
    assert [r["name"] for r in json.loads(cloud_env.run("cloud", "list", "--output=json", check=True).out)] == ["vm9"]
    r = cloud_env.run("cloud", "delete", "vm9", "--force")
    assert r.code == 0, r.err
    assert "no longer machines: vm9" in r.err
    assert not (cloud_env.config.parent / "cmq.clouds.yaml").exists()
    machines = json.loads(cloud_env.run("machines", "--json", check=True).out)
    assert "vm9" not in [m["name"] for m in machines]


def test_the_cloud_demo_boots_joins_uses_suspends_resumes_and_deletes_two_vms(libvirtd, image, tmp_path):
    """`cmq cloud demo` (its own private libvirtd, beside the module's): the whole story."""
    import sys

    home = tmp_path / "home"
    (home / "cloud-demo" / "clouds" / "images").mkdir(parents=True)
    (home / "cloud-demo" / "clouds" / "images" / "small").symlink_to(image[1].parent)
    env = {**os.environ, "CMQ_HOME": str(home)}
    env.pop("CMQ_CONFIG", None)
    r = subprocess.run([sys.executable, "-m", "cmqueue", "cloud", "demo"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "385" in r.stdout.split()
    for step in ("$ cmq cloud boot lab --count=2 --join", "joined: lab-1, lab-2 (label lab)",
                 "$ cmq cloud suspend lab-1", "$ cmq cloud delete 'lab-[1-2]'", "libvirtd stopped"):
        assert step in r.stderr
    assert "lab-1  lab    deleted" in r.stdout
    demo_daemon = home / "cloud-demo" / "libvirtd" / "libvirtd.pid"
    assert not demo_daemon.exists() or not os.path.exists(f"/proc/{demo_daemon.read_text().strip()}")
