"""`cmq cloud config list`: the clouds of the inventory, in order, secrets masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml


def cmq(*args, home):
    env = {**os.environ, "CMQ_HOME": str(home)}
    env.pop("CMQ_BROKER", None)
    return subprocess.run([sys.executable, "-m", "cmqueue", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_config_list_shows_the_clouds_in_order_with_secrets_masked(tmp_path):
    inv = tmp_path / "cmq.yaml"
    inv.write_text(yaml.safe_dump({
        "machines": {"here": {"mode": "local"}},
        "clouds": {"lab": {"type": "libvirt", "credentials": {"uri": "qemu:///session"},
                           "default": {"image": "bookworm"}},
                   "aws": {"type": "ec2", "credentials": {"key": "AKIAXYZ", "secret": "very-secret",
                                                          "region": "eu-west-1"}},
                   "os": {"type": "openstack", "credentials": {"username": "me", "password": "TBD"}}}},
        sort_keys=False))
    inv.chmod(0o600)
    table = cmq("--config", str(inv), "cloud", "config", "list", home=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["name", "lab", "aws", "os"]
    assert "uri=qemu:///session" in lines[1] and "image=bookworm" in lines[1]
    as_json = json.loads(cmq("--config", str(inv), "cloud", "config", "list", "--output=json", home=tmp_path).stdout)
    assert as_json[1]["credentials"] == {"key": "***", "secret": "***", "region": "eu-west-1"}
    assert as_json[2]["credentials"]["password"] == "(asked on the terminal)"
    everything = table.stdout + table.stderr + json.dumps(as_json)
    assert "very-secret" not in everything and "AKIAXYZ" not in everything


def test_a_bad_cloud_is_one_line_naming_the_field_exit_2(tmp_path):
    inv = tmp_path / "cmq.yaml"
    inv.write_text("machines: {here: {mode: local}}\nclouds: {lab: {type: libvirt, flavour: big}}\n")
    r = cmq("--config", str(inv), "cloud", "config", "list", home=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "cmq: cmq.yaml: clouds.lab.flavour: unknown field; known: type, credentials, default"]


def test_an_action_on_a_cloud_with_tbd_credentials_is_refused_before_anything_is_queued(tmp_path):
    inv = tmp_path / "cmq.yaml"
    aws = {"type": "ec2", "credentials": {"key": "AKIA", "secret": "TBD"}}
    inv.write_text(yaml.safe_dump({"machines": {"here": {"mode": "local"}}, "clouds": {"aws": aws}}))
    r = cmq("--config", str(inv), "cloud", "suspend", "web1", home=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "cmq: cloud aws has credentials TBD (secret), which a worker cannot ask for; give them in the inventory "
        "(which must then be 0600) to act on its VMs"]


def test_a_cloud_that_refuses_the_credentials_is_one_line_exit_3_without_the_secret(tmp_path):
    from tests.support.ec2_double import Ec2Double

    with Ec2Double() as ec2:
        ec2.errors["*"] = (401, "AuthFailure", "AWS was not able to validate the provided access credentials")
        creds = {"key": "AKIAEXAMPLE", "secret": "s3cr3t-value", "region": "us-east-1", "host": "127.0.0.1",
                 "port": ec2.port, "secure": False}
        inv = tmp_path / "cmq.yaml"
        inv.write_text(yaml.safe_dump({"machines": {"here": {"mode": "local"}},
                                       "clouds": {"aws": {"type": "ec2", "credentials": creds}}}))
        inv.chmod(0o600)
        r = cmq("--config", str(inv), "cloud", "list", "aws", home=tmp_path)
    assert r.returncode == 3
    assert r.stderr.strip().splitlines() == [
        f"cmq: cloud aws (127.0.0.1:{ec2.port}): the credentials were refused: AuthFailure: AWS was not able to "
        "validate the provided access credentials"]
    assert "s3cr3t" not in r.stdout + r.stderr and "AKIAEXAMPLE" not in r.stdout + r.stderr


def test_stop_takes_a_grace_in_seconds(tmp_path):
    inv = tmp_path / "cmq.yaml"
    inv.write_text(yaml.safe_dump({"machines": {"here": {"mode": "local"}}, "clouds": {"lab": {"type": "libvirt"}}}))
    r = cmq("--config", str(inv), "cloud", "stop", "vm1", "--grace=-1", home=tmp_path)
    assert (r.returncode, r.stderr.strip()) == (2, "cmq: --grace=-1: seconds, 0 or more")
