"""Which staged inputs a batch shares between machines (the ones relays carry), and how
many machines may need each."""

from __future__ import annotations

import os

from cmqueue.submit.specs import Placement, build_specs
from cmqueue.transfer.relay_plan import RELAY_MIN_BYTES


def test_a_large_input_of_jobs_on_several_machines_is_shared(tmp_path):
    big, small = tmp_path / "big.bin", tmp_path / "small.txt"
    big.write_bytes(os.urandom(RELAY_MIN_BYTES))
    small.write_text("x")
    _, specs = build_specs("true", Placement(machines=["m1", "m2", "m3"]), puts=[str(big), str(small)],
                           results=tmp_path / "r")
    shared = [s.params.get("shared") for s in specs]
    sha = next(sha for _, sha, size, _ in specs[0].params["inputs"] if size == RELAY_MIN_BYTES)
    assert shared == [{sha: 3}] * 3               # the small input is not relayed


def test_jobs_on_one_machine_share_nothing_and_unpinned_jobs_count_once_each(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(RELAY_MIN_BYTES))
    _, pinned = build_specs("true {}", Placement(machines=["m1"]), args=["a", "b"], puts=[str(big)],
                            results=tmp_path / "r")
    assert all("shared" not in s.params for s in pinned)
    _, anywhere = build_specs("true {}", Placement(), args=["a", "b", "c", "d"], puts=[str(big)],
                              results=tmp_path / "r")
    assert {tuple(s.params["shared"].values()) for s in anywhere} == {(4,)}
