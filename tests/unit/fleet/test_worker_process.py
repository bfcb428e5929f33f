"""Which machines a worker process serves (cmqueue.fleet.worker_process.chooser)."""

from cmqueue.config.inventory import load
from cmqueue.fleet.worker_process import chooser


def _inventory(tmp_path):
    path = tmp_path / "cmq.yaml"
    path.write_text("machines:\n"
                    "  b2: {}\n  a1: {}\n  c3: {}\n  d4: {enabled: false}\n"
                    "  e5: {mode: agent}\n  f6: {mode: local, workdir: /tmp}\n  g7: {}\n")
    return load(path, check_keys=False)


def names(machines):
    return [m.name for m in machines]


def test_a_worker_serves_every_enabled_ssh_and_local_machine_but_no_agent(tmp_path):
    assert names(chooser(None, None)(_inventory(tmp_path))) == ["a1", "b2", "c3", "f6", "g7"]


def test_parts_split_the_machines_by_name_evenly_and_without_overlap(tmp_path):
    inv = _inventory(tmp_path)
    parts = [names(chooser(None, (i, 2))(inv)) for i in (1, 2)]
    assert parts == [["a1", "c3", "g7"], ["b2", "f6"]]
    three = [names(chooser(None, (i, 3))(inv)) for i in (1, 2, 3)]
    assert sorted(sum(three, [])) == ["a1", "b2", "c3", "f6", "g7"] and all(three)


def test_named_machines_limit_the_choice_and_unknown_names_wait_for_the_inventory(tmp_path):
    inv = _inventory(tmp_path)
    assert names(chooser(["g7", "b2", "z9", "e5"], None)(inv)) == ["b2", "g7"]
