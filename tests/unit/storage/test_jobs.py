"""How the files of a storage command are split into jobs (pure)."""

from __future__ import annotations

import os
from pathlib import Path

from cmqueue.config.inventory import Inventory
from cmqueue.storage.config import StorageConfig
from cmqueue.storage.jobs import build, split, useful_parallel
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
    assert len(specs) == 2 and {s.queue for s in specs} == {"cmq.host"}
    assert all(s.kind == "storage" and s.target == "storage" and s.retries == 2 for s in specs)
    assert sum(len(s.params["steps"]) for s in specs) == 3 and all(s.params["sync"] for s in specs)
    assert len({s.batch for s in specs}) == 1


def test_copies_between_this_host_and_its_folders_go_as_one_job_per_cpu_at_most(monkeypatch):
    inv = Inventory(path=Path("cmq.yaml"), machines={}, storage={
        "box": StorageConfig(name="box", type="local", directory="/srv"),
        "s3": StorageConfig(name="s3", type="s3", container="b")})
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    to_box = [Step(source="", source_path=f"/f{i}", dest="box", dest_path=f"f{i}") for i in range(100)]
    from_box = [Step(source="box", source_path=f"f{i}", dest="", dest_path=f"/g{i}") for i in range(100)]
    assert useful_parallel(to_box, 8, inv) == 2 and useful_parallel(from_box, 8, inv) == 2
    assert useful_parallel(to_box, 1, inv) == 1
    assert useful_parallel(steps([1] * 100), 8, inv) == 8                  # an object store: as asked
    assert useful_parallel([*to_box, *steps([1])], 8, inv) == 8


def test_a_local_file_gone_since_the_command_looked_fails_the_job_naming_it(tmp_path):
    """A storage job on a folder service (no server): the missing file ends the job failed,
    for good, with its path; the files before it stay moved."""
    from types import SimpleNamespace

    from cmqueue.storage.config import StorageConfig
    from cmqueue.storage.jobs import run

    (tmp_path / "box").mkdir()
    (tmp_path / "a.txt").write_text("here")
    inventory = SimpleNamespace(storage={"box": StorageConfig(name="box", type="local",
                                                             directory=str(tmp_path / "box"))})
    gone = tmp_path / "gone.txt"
    todo = [Step(source="", source_path=str(tmp_path / "a.txt"), dest="box", dest_path="a.txt", size=4),
            Step(source="", source_path=str(gone), dest="box", dest_path="gone.txt", size=4)]
    (spec,) = build(todo, 1, "put", retries=2)
    result = run(spec, inventory, "local")
    assert result.exit_code is None
    assert result.reason == f"storage: {gone}: No such file or directory"
    assert result.data["final"] is True
    assert (tmp_path / "box" / "a.txt").read_text() == "here"
    assert not (tmp_path / "box" / "gone.txt").exists()
