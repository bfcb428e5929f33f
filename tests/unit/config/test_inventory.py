import os
from pathlib import Path

import pytest

from cmqueue.config.inventory import load, parse
from cmqueue.core.errors import ConfigError, InsecureFileError, UnknownMachineError

P = Path("cmq.yaml")


def test_example_inventory_parses_with_defaults_and_expansion():
    inv = parse("""
defaults: {user: ubuntu, slots: 1, workdir: ~/.cmq}
machines:
  node[01-04]: {host: "10.0.0.1[1-4]", slots: 4, labels: [cpu]}
  gpu1: {host: gpu1.example.org, port: 2222, slots: 2, labels: [gpu]}
  here: {mode: local, slots: 2}
  vm1: {mode: agent, slots: 2}
""", P)
    assert list(inv.machines) == ["node01", "node02", "node03", "node04", "gpu1", "here", "vm1"]
    n3 = inv.machine("node03")
    assert (n3.host, n3.slots, n3.user, n3.labels) == ("10.0.0.13", 4, "ubuntu", ("cpu",))
    assert inv.machine("gpu1").port == 2222
    assert inv.machine("here").mode == "local"
    assert inv.labels == {"cpu": ["node01", "node02", "node03", "node04"], "gpu": ["gpu1"]}


def test_a_range_in_workdir_expands_in_step_with_the_name():
    inv = parse("machines: {'node[01-02]': {workdir: '/w/node[01-02]'}, solo: {workdir: '/data/[x]'}}", P)
    assert [inv.machine(n).workdir for n in ("node01", "node02")] == ["/w/node01", "/w/node02"]
    assert inv.machine("solo").workdir == "/data/[x]"          # one machine: the path as written


def test_host_defaults_to_the_machine_name():
    inv = parse("machines: {web1: {}}", P)
    assert inv.machine("web1").host == "web1"


@pytest.mark.parametrize("text, message", [
    ("machines: {node3: {slots: four}}", "cmq.yaml: machines.node3.slots: must be a positive integer, got 'four'"),
    ("machines: {n1: {slots: 0}}", "machines.n1.slots: must be a positive integer, got 0"),
    ("machines: {n1: {mode: telnet}}", "machines.n1.mode: must be one of ssh, local, agent"),
    ("machines: {n1: {colour: red}}", "machines.n1.colour: unknown field"),
    ("machines: {n1: {port: 70000}}", "machines.n1.port: must be at most 65535"),
    ("machines: {'n[1-2]': {host: 'h[1-3]'}}", "machines.n[1-2].host: expands to 3 hosts"),
    ("machines: {'n[1-2]': {workdir: '/w/[1-3]'}}", "machines.n[1-2].workdir: expands to 3 values"),
    ("machines: {n1: {labels: ['a b']}}", "machines.n1.labels[0]: not a valid label name"),
    ("machines: {n1: {ssh_options: {StrictHostKeyChecking: 'no'}}}", "host_key_policy: accept-new"),
    ("machines: {n1: {host_key_policy: off}}", "machines.n1.host_key_policy: must be one of"),
    ("machines: {n1: {env: {'1x': y}}}", "machines.n1.env: not a valid variable name"),
    ("machines: [a, b]", "machines: must be a mapping"),
    ("colour: red", "colour: unknown section"),
    ("machines: {n1: {}}\nbroker: http://x", "broker: must be a redis://, rediss://, unix:// or sentinel:// URL"),
    ("settings: {visibility_timeout: -1}", "settings.visibility_timeout: must be a positive number"),
    ("machines:\n  n1: {slots: 2\n", "cmq.yaml: line "),
])
def test_errors_name_the_file_and_field(text, message):
    with pytest.raises(ConfigError) as e:
        parse(text, P)
    assert message in str(e.value)
    assert str(e.value).startswith("cmq.yaml")


def test_select_unknown_machine_lists_known_ones():
    inv = parse("machines: {a: {}, b: {}}", P)
    with pytest.raises(UnknownMachineError, match="unknown machine 'c'.*machines: a, b"):
        inv.select("a,c")


def test_label_with_no_machine_is_an_error():
    inv = parse("machines: {a: {labels: [x]}}", P)
    with pytest.raises(UnknownMachineError, match="no enabled machine has label 'y'"):
        inv.with_label("y")


def test_masters_keep_sessions_under_max_sessions():
    inv = parse("machines: {a: {slots: 8}, b: {slots: 9}, c: {slots: 30, max_sessions: 20}}", P)
    assert inv.machine("a").masters == 1
    assert inv.machine("b").masters == 2
    assert inv.machine("c").masters == 2


def test_config_with_a_password_must_be_private(tmp_path):
    f = tmp_path / "cmq.yaml"
    f.write_text("broker: redis://:secret@127.0.0.1:6379/0\nmachines: {a: {}}\n")
    os.chmod(f, 0o644)
    with pytest.raises(InsecureFileError, match="chmod 600"):
        load(f)
    os.chmod(f, 0o600)
    assert load(f).broker.startswith("redis://")


def test_config_without_secrets_may_be_readable(tmp_path):
    f = tmp_path / "cmq.yaml"
    f.write_text("machines: {a: {}}\n")
    os.chmod(f, 0o644)
    assert list(load(f).machines) == ["a"]


def test_missing_or_public_identity_is_refused(tmp_path):
    f = tmp_path / "cmq.yaml"
    key = tmp_path / "id"
    f.write_text(f"machines: {{a: {{identity: {key}}}}}\n")
    with pytest.raises(ConfigError, match="machines.a.identity: cannot read"):
        load(f)
    key.write_text("k")
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError, match="accessible by group/others"):
        load(f)
    os.chmod(key, 0o600)
    assert load(f).machine("a").identity == str(key)
    os.chmod(key, 0o644)
    assert load(f, check_keys=False)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="inventory not found"):
        load(tmp_path / "nope.yaml")


def test_the_shipped_example_inventory_is_valid():
    example = Path(__file__).resolve().parents[3] / "config" / "cmq.example.yaml"
    inv = parse(example.read_text(), example)
    assert inv.machine("node04").host == "10.0.0.14"
    assert not inv.machine("old1").enabled


def test_cache_capacity_and_transfer_method():
    inv = parse("""
defaults: {cache: 2GiB}
machines:
  a: {}
  b: {cache: 500M, transfer: tar}
  c: {cache: 1.5K}
  d: {cache: 1024}
""", P)
    assert [inv.machine(n).cache for n in "abcd"] == [2 << 30, 500 << 20, 1536, 1024]
    assert (inv.machine("a").transfer, inv.machine("b").transfer) == ("auto", "tar")


def test_a_zone_groups_machines_for_relays():
    inv = parse("""
defaults: {zone: rack1}
machines:
  a: {}
  b: {zone: rack2}
  c: {zone: 7}
""", P)
    assert [inv.machine(n).zone for n in "abc"] == ["rack1", "rack2", "7"]


@pytest.mark.parametrize("text, message", [
    ("machines: {n1: {zone: ''}}", "machines.n1.zone: must be a name"),
    ("machines: {n1: {zone: [a]}}", "machines.n1.zone: must be a name"),
    ("machines: {n1: {cache: lots}}", "machines.n1.cache: must be a size such as 10GiB"),
    ("machines: {n1: {cache: true}}", "machines.n1.cache: must be a size such as 10GiB"),
    ("machines: {n1: {transfer: ftp}}", "machines.n1.transfer: must be one of auto, rsync, tar"),
])
def test_bad_cache_or_transfer_is_named(text, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse(text, P)


@pytest.mark.parametrize("text, message", [
    ("machines: {n1: {slot: 2}}", "machines.n1.slot: unknown field (did you mean 'slots'?"),
    ("machine: {n1: {}}", "machine: unknown section (did you mean 'machines'?"),
    ("settings: {visibility_timout: 3}\nmachines: {}", "settings.visibility_timout: unknown setting "
     "(did you mean 'visibility_timeout'?"),
    ("machines: {n1: {colour: red}}", "machines.n1.colour: unknown field (known:"),
])
def test_unknown_keys_suggest_the_closest_known_one(text, message):
    with pytest.raises(ConfigError) as e:
        parse(text, P)
    assert message in str(e.value)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ['broker: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        lines.append(f"x{i}: &a{i} [" + ",".join([f"*{'a' if i == 1 else 'a' + str(i - 1)}"] * 9) + "]")
    lines.append("machines: {n1: {labels: *a8}}")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines))
    # Refused while counting, before 9**9 values are built (the test's time limit would end that).
    with pytest.raises(ConfigError, match="bomb.yaml: more than 100000 values once its aliases"):
        load(path, check_keys=False)


def test_anchors_for_shared_settings_still_work():
    inv = parse("defaults: &d {slots: 2}\nmachines:\n  a: *d\n  b: {<<: *d, labels: [x]}\n", P)
    assert (inv.machine("a").slots, inv.machine("b").slots, inv.machine("b").labels) == (2, 2, ("x",))


def test_machines_of_the_vagrant_companion_file_are_added_after_the_inventorys_own(tmp_path):
    main = tmp_path / "cmq.yaml"
    main.write_text("machines:\n  m1: {host: a}\n")
    (tmp_path / "cmq.vagrant.yaml").write_text("machines:\n  vm1: {host: 192.168.121.4, slots: 3}\n")
    inv = load(main, check_keys=False)
    assert list(inv.machines) == ["m1", "vm1"] and inv.machine("vm1").slots == 3


def test_a_companion_machine_named_as_one_of_the_inventory_is_refused_naming_both(tmp_path):
    main = tmp_path / "cmq.yaml"
    main.write_text("machines:\n  vm1: {host: a}\n")
    (tmp_path / "cmq.vagrant.yaml").write_text("machines:\n  vm1: {host: b}\n")
    with pytest.raises(ConfigError, match=r"^cmq.vagrant.yaml: machines.vm1: also defined in cmq.yaml"):
        load(main, check_keys=False)


def test_a_companion_file_with_other_sections_is_refused(tmp_path):
    main = tmp_path / "cmq.yaml"
    main.write_text("machines: {}\n")
    (tmp_path / "cmq.vagrant.yaml").write_text("broker: redis://x\nmachines: {}\n")
    with pytest.raises(ConfigError, match=r"^cmq.vagrant.yaml: may hold only a 'machines:' section"):
        load(main, check_keys=False)
