"""The pure parts of `cmq vagrant`: options, the rendered Vagrantfile, inventory entries
from `vagrant ssh-config`, and vagrant's reason for failing."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmqueue.clouds.vagrant import ClusterPaths, ClusterSpec, machine_entry, machines_text, render, vagrant_reason
from cmqueue.core.errors import UsageError, VagrantError

PATHS = ClusterPaths(Path("/srv/c/cmq.yaml"))


@pytest.mark.parametrize("field, value, option", [
    ("count", 0, "N"), ("count", -2, "N"), ("slots", 0, "--slots"), ("memory", "lots", "--memory"),
    ("provider", "Vir Box", "--provider"), ("mode", "agents", "--mode"), ("accel", "hvf", "--accel"),
    ("box", "a box", "--box"), ("box", 'x"; system("id")', "--box"),
])
def test_a_bad_option_is_refused_naming_it(field, value, option):
    with pytest.raises(UsageError, match=f"^cmq vagrant up: {option}"):
        ClusterSpec(**{"count": 2, field: value}).check()


def test_the_files_live_beside_the_inventory():
    assert PATHS.root == Path("/srv/c/cmq.vagrant")
    assert PATHS.vagrantfile == Path("/srv/c/cmq.vagrant/Vagrantfile")
    assert PATHS.machines == Path("/srv/c/cmq.vagrant.yaml")


def test_render_lists_the_vms_and_picks_software_emulation_for_tcg():
    text = render(ClusterSpec(count=3, box="cmq/bookworm", memory=768, accel="tcg"), PATHS)
    assert 'VMS = ["vm1", "vm2", "vm3"]' in text
    assert 'config.vm.box = "cmq/bookworm"' in text
    assert 'libvirt.driver = "qemu"' in text and 'libvirt.cpu_model = "qemu64"' in text
    assert "libvirt.memory = 768" in text and "vb.memory = 768" in text
    assert "$" not in text.replace("#{name}", "")     # every placeholder was filled


def test_render_with_kvm_leaves_the_cpu_to_libvirt():
    text = render(ClusterSpec(count=1, accel="kvm"), PATHS)
    assert 'libvirt.driver = "kvm"' in text and "cpu_model" not in text


SSH_CONFIG = {
    "Host": "vm1", "HostName": "192.168.121.4", "User": "vagrant", "Port": "22",
    "UserKnownHostsFile": "/dev/null", "StrictHostKeyChecking": "no", "PasswordAuthentication": "no",
    "IdentityFile": "/srv/c/cmq.vagrant/.vagrant/machines/vm1/libvirt/private_key",
    "IdentitiesOnly": "yes", "LogLevel": "FATAL",
}


def test_an_entry_checks_the_pinned_host_key_not_vagrants_settings():
    entry = machine_entry("vm1", SSH_CONFIG, ClusterSpec(count=1, slots=3, mode="ssh"), PATHS)
    assert entry["host"] == "192.168.121.4" and "port" not in entry
    assert entry["user"] == "vagrant" and entry["identity"].endswith("vm1/libvirt/private_key")
    assert entry["slots"] == 3 and entry["mode"] == "ssh" and entry["labels"] == ["vagrant"]
    assert entry["ssh_options"] == {"HostKeyAlias": "vm1", "UserKnownHostsFile": "/srv/c/cmq.vagrant/known_hosts"}
    assert "StrictHostKeyChecking" not in str(entry)


def test_an_entry_keeps_a_forwarded_port_and_the_workdir():
    conf = {**SSH_CONFIG, "HostName": "127.0.0.1", "Port": "2222"}
    entry = machine_entry("vm2", conf, ClusterSpec(count=2, workdir="/data/jobs"), PATHS)
    assert entry["port"] == 2222 and entry["workdir"] == "/data/jobs" and entry["mode"] == "agent"


def test_an_ssh_config_without_an_address_is_an_error_naming_the_vm():
    conf = {k: v for k, v in SSH_CONFIG.items() if k != "HostName"}
    with pytest.raises(VagrantError, match="^vm1: .* no HostName"):
        machine_entry("vm1", conf, ClusterSpec(count=1), PATHS)


def test_the_companion_file_parses_as_an_inventory(tmp_path):
    from cmqueue.config.inventory import parse

    entry = machine_entry("vm1", SSH_CONFIG, ClusterSpec(count=1), PATHS)
    inv = parse(machines_text({"vm1": entry}), tmp_path / "cmq.vagrant.yaml")
    vm = inv.machine("vm1")
    assert vm.host == "192.168.121.4" and vm.mode == "agent" and ("HostKeyAlias", "vm1") in vm.ssh_options


def test_vagrants_reason_is_the_message_after_its_last_progress_line():
    output = "\n".join([
        "==> vm1: Starting domain.",
        "==> vm1: Removing domain...",
        "/usr/lib/ruby/vendor_ruby/fog/libvirt/requests/compute/vm_action.rb:7:in `create': "
        "Call to virDomainCreateWithFlags failed: internal error: qemu unexpectedly closed the monitor "
        "(Libvirt::Error)",
        "\tfrom /usr/lib/ruby/vendor_ruby/fog/libvirt/requests/compute/vm_action.rb:7:in `vm_action'",
        "\tfrom /usr/share/rubygems-integration/all/gems/vagrant-2.3.4/lib/vagrant/machine.rb:248",
    ])
    assert vagrant_reason(output) == ("Call to virDomainCreateWithFlags failed: internal error: "
                                      "qemu unexpectedly closed the monitor (Libvirt::Error)")
    plain = "Bringing machine 'vm1' up with 'x' provider...\n\nThe provider 'x' could not be found, but was\nrequested."
    assert vagrant_reason(plain) == "The provider 'x' could not be found, but was requested."
    assert vagrant_reason("") == "no reason given"


def test_vagrants_reason_is_its_first_paragraph_whole():
    output = ("==> vm1: Waiting for machine to boot. This may take a few minutes...\n"
              "Timed out while waiting for the machine to boot. This means that\n"
              "Vagrant was unable to communicate with the guest machine within\n"
              "the configured (\"config.vm.boot_timeout\" value) time period.\n"
              "\n"
              "If you look above, you should be able to see the error(s) that\n"
              "Vagrant had when attempting to connect to the machine.\n")
    assert vagrant_reason(output) == ("Timed out while waiting for the machine to boot. This means that "
                                      "Vagrant was unable to communicate with the guest machine within "
                                      "the configured (\"config.vm.boot_timeout\" value) time period.")


def test_a_paragraph_that_ends_with_a_colon_goes_on_to_the_next():
    output = ("The provider 'virtualbox' that was requested to back the machine\n"
              "'vm1' is reporting that it isn't usable on this system. The\n"
              "reason is shown below:\n\n"
              "Vagrant could not detect VirtualBox! Make sure VirtualBox is properly installed.\n\n"
              "Other text.\n")
    assert vagrant_reason(output).endswith("reason is shown below: Vagrant could not detect VirtualBox! "
                                           "Make sure VirtualBox is properly installed.")
