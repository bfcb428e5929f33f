import shlex
import subprocess

from cmqueue.config.inventory import Machine
from cmqueue.machine.ssh import job_argv, master_argv, ssh_argv, with_env

M = Machine(name="n1", host="10.0.0.1", port=2222, user="ubuntu", identity="/k/id",
            ssh_options=(("ProxyJump", "bastion"),))


def test_argv_has_batchmode_master_and_strict_host_keys():
    argv = ssh_argv(M, ["true"], control="/run/c/n1-0")
    assert argv[0] == "ssh"
    joined = " ".join(argv)
    for opt in ("BatchMode=yes", "ControlMaster=auto", "ControlPath=/run/c/n1-0", "StrictHostKeyChecking=yes",
                "ProxyJump=bastion", "-p 2222", "-l ubuntu", "-i /k/id"):
        assert opt in joined
    assert "StrictHostKeyChecking=no" not in joined
    assert argv[-3:] == ["--", "10.0.0.1", "true"]


def test_accept_new_is_the_only_relaxation():
    m = Machine(name="n", host="h", host_key_policy="accept-new")
    assert "StrictHostKeyChecking=accept-new" in ssh_argv(m, ["true"])
    m = Machine(name="n", host="h", host_key_policy="ask")
    assert not any(a.startswith("StrictHostKeyChecking") for a in ssh_argv(m, ["true"]))


def test_remote_words_are_quoted_once_each():
    hostile = "$(touch /tmp/x); \"'\n"
    argv = ssh_argv(M, ["printf", "%s", hostile])
    assert shlex.split(argv[-1]) == ["printf", "%s", hostile]


def test_master_argv_opens_in_background():
    argv = master_argv(M, "/run/c/n1-0")
    assert "-f" in argv and "-N" in argv and "ControlMaster=yes" in argv


def test_wrapper_runs_in_workdir_and_keeps_exit_code(tmp_path):
    r = subprocess.run(job_argv(str(tmp_path / "w"), "j1", "pwd; exit 7"), capture_output=True, text=True)
    assert r.returncode == 7
    assert r.stdout.strip() == str(tmp_path / "w")
    assert not (tmp_path / "w" / ".cmq" / "run" / "j1.pid").exists()


def test_env_values_are_quoted(tmp_path):
    cmd = with_env('printf %s "$V"', {"V": "a b; $(echo no)"})
    r = subprocess.run(job_argv(str(tmp_path), "j2", cmd), capture_output=True, text=True)
    assert r.stdout == "a b; $(echo no)"


def test_control_paths_differ_when_the_connection_differs(tmp_path):
    from dataclasses import replace

    from cmqueue.machine.ssh import control_path

    a = control_path(tmp_path, M, 0)
    assert a == control_path(tmp_path, replace(M), 0)
    assert a != control_path(tmp_path, replace(M, port=2223), 0)
    assert a != control_path(tmp_path, replace(M, ssh_options=(("UserKnownHostsFile", "/x"),)), 0)
    assert a != control_path(tmp_path, M, 1)


def test_inventory_ssh_options_override_the_keepalive_and_timeout_defaults():
    # ssh keeps the first value of an option, so a default given first would win.
    m = Machine(name="n", host="h", ssh_options=(("serveraliveinterval", "2"), ("ConnectTimeout", "3")))
    argv = ssh_argv(m, ["true"])
    opts = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert "serveraliveinterval=2" in opts and "ServerAliveInterval=15" not in opts
    assert "ConnectTimeout=3" in opts and not any(o.startswith("ConnectTimeout=1") for o in opts)
    assert "ServerAliveCountMax=3" in opts


def test_each_cmq_home_has_its_own_ssh_master_directory(monkeypatch, tmp_path):
    from cmqueue.machine.runner import control_dir

    monkeypatch.setenv("CMQ_HOME", str(tmp_path / "a"))
    a = control_dir()
    monkeypatch.setenv("CMQ_HOME", str(tmp_path / "b"))
    b = control_dir()
    assert a != b and a.parent == b.parent and len(str(a)) < 40     # short: socket paths are limited
