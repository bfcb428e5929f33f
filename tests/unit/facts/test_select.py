"""Where jobs go once --where chose machines, what the messages say, and the inventory's
`facts:` probes as the configuration reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmqueue.config.inventory import parse
from cmqueue.core.errors import ConfigError
from cmqueue.facts.gather import known_names
from cmqueue.facts.select import NoMatchError, Selection, placement
from cmqueue.submit.specs import build_specs

INVENTORY = """
facts: {answer: echo 42}
machines:
  m1: {host: a, labels: [cpu], facts: {gpu: nvidia-smi -L | wc -l}}
  m2: {host: b, labels: [cpu]}
  m3: {host: c, labels: [big]}
  m4: {host: d, enabled: false}
"""


@pytest.fixture
def inv():
    return parse(INVENTORY, Path("cmq.yaml"))


def chose(matched, considered=("m1", "m2", "m3")):
    return Selection(expr="cpus>=1", considered=list(considered), matched=list(matched))


def test_all_enabled_go_to_any_a_labels_machines_to_the_label_else_a_spread(inv):
    assert placement(inv, chose(["m1", "m2", "m3"])).targets() == ["any"]
    assert placement(inv, chose(["m2", "m1"])).targets() == ["label:cpu"]
    assert placement(inv, chose(["m3"])).targets() == ["label:big"]
    spread = placement(inv, chose(["m1", "m3"]))
    assert sorted(spread.spread) == ["m1", "m3"] and spread.label is None and not spread.machines
    assert placement(inv, chose(["m1", "m2"]), label="cpu").targets() == ["label:cpu"]
    assert placement(inv, chose(["m1"]), label="cpu").spread == ["m1"]
    assert placement(inv, chose(["m1", "m3"]), pinned=True).machines == ["m1", "m3"]


def test_a_spread_pins_each_job_to_one_machine_in_turn(inv):
    where = placement(inv, chose(["m1", "m3"]))
    _, specs = build_specs("echo {}", where, args=["a", "b", "c", "d", "e"])
    targets = [s.target for s in specs]
    assert len(specs) == 5 and set(targets) == {"machine:m1", "machine:m3"}
    assert all(a != b for a, b in zip(targets, targets[1:], strict=False))      # in turn
    assert {s.queue for s in specs} == {"cmq.m.m1", "cmq.m.m3"}


def test_nothing_matching_is_a_usage_error_that_says_each_machines_value(inv):
    sel = Selection(expr="cpus>=4096", considered=["m1", "m2", "m3"], matched=[],
                    facts={"m1": {"ts": 1, "facts": {"cpus": 2}}, "m2": {"ts": 1, "facts": {"cpus": 2}},
                           "m3": {"ts": 1, "facts": {"cpus": None}}},
                    errors={}, names=["cpus"])
    with pytest.raises(NoMatchError) as info:
        placement(inv, sel)
    assert info.value.exit_code == 2
    assert str(info.value) == "no machine matches --where 'cpus>=4096'; m1,m2: cpus=2; m3: cpus=null"
    sel.considered.append("m4")
    sel.errors["m4"] = "no answer within 5 s"
    assert str(sel.why()).endswith("; m4: no facts (no answer within 5 s)")
    assert sel.summary() == "where cpus>=4096: none (0 of 4)"


def test_the_inventorys_probes_merge_and_their_names_are_checked(inv):
    assert inv.probes(inv.machine("m1")) == {"answer": "echo 42", "gpu": "nvidia-smi -L | wc -l"}
    assert inv.probes(inv.machine("m2")) == {"answer": "echo 42"}
    assert known_names(inv)[-2:] == ["answer", "gpu"] and known_names(inv)[0] == "cpus"
    for text, words in [("facts: {cpus: nproc}", "facts.cpus: cpus is a built-in fact"),
                        ("facts: {'9x': echo}", "facts.9x: a fact's name uses letters"),
                        ("facts: {and: echo}", "facts.and: a fact's name"),
                        ("facts: {gpu: ''}", "facts.gpu: must be a non-empty string"),
                        ("machines: {m1: {facts: [a]}}", "machines.m1.facts: must be a mapping")]:
        with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
            parse(text, Path("cmq.yaml"))
