"""Facts in every history backend: the latest per machine, with its time."""

from __future__ import annotations


def test_facts_keep_the_latest_per_machine_with_its_time(history_store):
    store = history_store
    assert store.facts() == {}
    store.set_facts("m1", 10.0, {"cpus": 2, "os": "debian", "gpu": None})
    store.set_facts("m2", 11.0, {"cpus": 4, "mem_gb": 7.5})
    store.set_facts("m1", 20.0, {"cpus": 8, "os": "alpine", "gpu": 1})
    assert store.facts() == {"m1": {"ts": 20.0, "facts": {"cpus": 8, "os": "alpine", "gpu": 1}},
                             "m2": {"ts": 11.0, "facts": {"cpus": 4, "mem_gb": 7.5}}}
    assert store.facts(["m2", "m9"]) == {"m2": {"ts": 11.0, "facts": {"cpus": 4, "mem_gb": 7.5}}}
    assert store.facts([]) == {}
