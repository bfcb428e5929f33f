"""Staging plans and remote paths: pure functions, checked before anything is sent."""

from __future__ import annotations

import pytest

from cmqueue.core.errors import MissingError, UsageError
from cmqueue.transfer.machine_copy import TransferError, parse_manifest, remote_path, sha256_file
from cmqueue.transfer.staging import Hasher, parse_get, parse_put, plan


def test_put_and_get_specs():
    assert parse_put("data.csv") == ("data.csv", "")
    assert parse_put("data.csv:in/d.csv") == ("data.csv", "in/d.csv")
    assert parse_get("out/r.txt") == ("out/r.txt", "")
    assert parse_get("r.txt:/tmp/{job}.txt") == ("r.txt", "/tmp/{job}.txt")
    for bad in ("../x", "/etc/passwd", "a/../../b", "~/x", ""):
        with pytest.raises(UsageError, match="must be a relative path inside the job's directory"):
            parse_get(bad)


def test_plan_hashes_inputs_once_and_places_outputs(tmp_path):
    (tmp_path / "d" / "s").mkdir(parents=True)
    (tmp_path / "d" / "s" / "x").write_text("x")
    (tmp_path / "a.txt").write_text("a")
    hasher = Hasher()
    p = plan("J1", str(tmp_path / "a.txt"), 1, ["{}", f"{tmp_path / 'd'}:data"], ["o.txt"], False,
             tmp_path / "res", hasher, many=True)
    assert [i[0] for i in p.inputs] == ["a.txt", "data/s/x"]
    assert p.inputs[0][1:3] == [sha256_file(tmp_path / "a.txt"), 1]
    assert p.outputs == [["o.txt", str(tmp_path / "res" / "J1" / "o.txt")]]
    with pytest.raises(UsageError, match="put {job} in it"):
        plan("J1", None, 1, [], ["o.txt:fixed.txt"], False, tmp_path, hasher, many=True)
    with pytest.raises(MissingError, match="nope: no such file or directory"):
        plan("J1", None, 1, [str(tmp_path / "nope")], [], False, tmp_path, hasher, many=False)
    with pytest.raises(UsageError, match="must be a relative path"):
        plan("J1", None, 1, [f"{tmp_path / 'a.txt'}:../up.txt"], [], False, tmp_path, hasher, many=False)


def test_remote_paths_are_under_the_workdir_unless_absolute():
    assert remote_path("~/.cmq", "in/x") == ".cmq/in/x"
    assert remote_path("/srv/w", "in/x") == "/srv/w/in/x"
    assert remote_path("~/.cmq", "~/x") == "x"
    assert remote_path("~/.cmq", "/abs") == "/abs"
    assert remote_path("~/.cmq", "") == ".cmq"
    with pytest.raises(TransferError, match="~user paths are not supported"):
        remote_path("~/.cmq", "~bob/x")


def test_manifest_parsing():
    text = "ab" * 32 + "  ./a b.txt\n" + "cd" * 32 + "  ./sub/c\n"
    assert parse_manifest(text) == {"./a b.txt": "ab" * 32, "./sub/c": "cd" * 32}
