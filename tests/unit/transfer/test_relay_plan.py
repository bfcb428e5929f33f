"""Relay plans: who feeds whom for each mode, zones kept apart, the way around a machine
that failed, and what --relay accepts."""

from __future__ import annotations

import pytest

from cmqueue.core.errors import UsageError
from cmqueue.transfer import relay_plan
from cmqueue.transfer.relay_plan import CONTROLLER, RELAY_MIN_BYTES


def test_a_chain_feeds_each_machine_from_the_one_before():
    assert relay_plan.plan(["a", "b", "c"], "chain") == {"a": CONTROLLER, "b": "a", "c": "b"}


def test_a_tree_feeds_up_to_k_from_each_machine():
    feeders = relay_plan.plan([f"m{i}" for i in range(1, 8)], "tree:2")
    assert feeders == {"m1": CONTROLLER, "m2": "m1", "m3": "m1", "m4": "m2", "m5": "m2", "m6": "m3", "m7": "m3"}
    assert relay_plan.children(feeders, "m2") == ["m4", "m5"]


def test_each_zone_gets_its_own_copy_from_the_controller():
    zones = {"a1": "east", "b1": "west", "a2": "east", "b2": "west"}
    assert relay_plan.plan(["a1", "b1", "a2", "b2"], "chain", zones) == {
        "a1": CONTROLLER, "a2": "a1", "b1": CONTROLLER, "b2": "b1"}


def test_off_feeds_everyone_from_the_controller():
    assert relay_plan.plan(["a", "b"], "off") == {"a": CONTROLLER, "b": CONTROLLER}


def test_auto_relays_a_large_file_to_several_machines_only():
    assert relay_plan.choose("auto", 8, RELAY_MIN_BYTES, True) == "chain"
    assert relay_plan.choose("auto", relay_plan.AUTO_CHAIN_MAX + 1, RELAY_MIN_BYTES, True) == "tree:2"
    assert relay_plan.choose("auto", 8, RELAY_MIN_BYTES - 1, True) == "off"
    assert relay_plan.choose("auto", 1, 1 << 30, True) == "off"
    assert relay_plan.choose("tree:3", 8, 10, True) == "tree:3"
    assert relay_plan.choose("chain", 8, 1 << 30, False) == "off"        # a directory goes directly


def test_around_a_lost_machine_to_its_nearest_live_ancestor():
    feeders = relay_plan.plan(["a", "b", "c", "d"], "chain")
    assert relay_plan.reroute(feeders, "d", {"c"}) == "b"
    assert relay_plan.reroute(feeders, "d", {"c", "b", "a"}) == CONTROLLER
    assert relay_plan.reroute(feeders, "b", set()) == "a"


@pytest.mark.parametrize("mode", ["tree", "tree:0", "tree:65", "ring", "", "chain:2", "TREE:2"])
def test_a_mode_that_is_not_one_is_a_usage_error(mode):
    with pytest.raises(UsageError, match="is not a relay mode: use auto, off, chain or tree:K"):
        relay_plan.check_mode(mode)
