"""How the files of a storage command are split into jobs (pure)."""

from __future__ import annotations

from cmqueue.storage.jobs import build, split
from cmqueue.storage.ops import Step


def steps(sizes):
    return [Step(source="", source_path=f"/f{i}", dest="s3", dest_path=f"f{i}", size=n) for i, n in enumerate(sizes)]


def test_split_balances_bytes_and_keeps_each_group_in_order():
    groups = split(steps([100, 1, 1, 1, 50, 50]), 2)
    assert sorted(sum(s.size for s in g) for g in groups) == [101, 102]
    for g in groups:
        assert [s.dest_path for s in g] == sorted((s.dest_path for s in g), key=lambda p: int(p[1:]))


def test_never_more_groups_than_files_and_every_file_once():
    groups = split(steps([1, 2, 3]), 8)
    assert len(groups) == 3
    assert sorted(s.dest_path for g in groups for s in g) == ["f0", "f1", "f2"]


def test_jobs_carry_their_steps_on_the_storage_queue():
    specs = build(steps([10, 20, 30]), 2, "put a -> s3:b", retries=2, sync=True)
    assert len(specs) == 2 and {s.queue for s in specs} == {"cmq.storage"}
    assert all(s.kind == "storage" and s.target == "storage" and s.retries == 2 for s in specs)
    assert sum(len(s.params["steps"]) for s in specs) == 3 and all(s.params["sync"] for s in specs)
    assert len({s.batch for s in specs}) == 1
