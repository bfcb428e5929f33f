"""Flattened records of any dict (the seed's VM database), one contract over SQLite and
MongoDB (the mongo_url fixture of tests/conftest.py)."""

from __future__ import annotations

import pytest

from cmqueue.clouds.records import flatten, records_for


def test_flatten_joins_nested_keys_and_keeps_lists_as_json():
    vm = {"name": "vm1", "state": "running", "data": {"image": "bookworm", "flavor": {"ram": 512}},
          "ips": ["10.0.0.5"], "odd key!": True, "gone": None}
    assert flatten(vm) == {"name": "vm1", "state": "running", "data_image": "bookworm", "data_flavor_ram": 512,
                           "ips": '["10.0.0.5"]', "odd_key_": True, "gone": None}


@pytest.fixture
def store(history_store):
    return history_store


def test_records_make_their_own_columns_and_are_found_by_any_flattened_field(store):
    vms = records_for(store, "vm")
    vms.add([{"name": "vm1", "cloud": "lab", "state": "running", "data": {"image": "bookworm"}},
             {"name": "vm2", "cloud": "lab", "state": "stopped"}])
    vms.add([{"name": "vm3", "cloud": "aws", "state": "running", "extra": {"zone": "eu-1a"}}])
    assert [r["name"] for r in vms.search(state="running")] == ["vm1", "vm3"]
    assert vms.search(data={"image": "bookworm"}) == [{"name": "vm1", "cloud": "lab", "state": "running",
                                                        "data_image": "bookworm"}]
    assert vms.get("vm3")["extra_zone"] == "eu-1a"
    assert vms.search(colour="red") == []                 # a field no record has
    assert [r["name"] for r in vms.search()] == ["vm1", "vm2", "vm3"]


def test_a_record_replaces_the_one_with_its_name_and_delete_says_how_many(store):
    vms = records_for(store, "vm")
    vms.add([{"name": "vm1", "state": "running"}, {"name": "vm2", "state": "running"}])
    vms.add([{"name": "vm1", "state": "suspended"}])
    assert vms.get("vm1")["state"] == "suspended" and len(vms.search()) == 2
    assert vms.delete(state="running") == 1
    assert [r["name"] for r in vms.search()] == ["vm1"]
    assert vms.delete(colour="red") == 0
    assert records_for(store, "cloud").search() == []     # another kind, another table


def test_a_record_without_its_key_is_refused(store):
    with pytest.raises(ValueError, match="needs a 'name'"):
        records_for(store, "vm").add([{"state": "running"}])
