"""The folder provider's own rules (no server needed): symbolic links, modes, directories
in the way. The shared contract is in tests/integration/storage/test_contract.py."""

from __future__ import annotations

import os
import stat

import pytest

from cmqueue.storage.base import NotFoundError, StorageError
from cmqueue.storage.config import StorageConfig
from cmqueue.storage.local import LocalProvider


@pytest.fixture
def box(tmp_path):
    (tmp_path / "box").mkdir()
    return LocalProvider(StorageConfig(name="box", type="local", directory=str(tmp_path / "box")))


def test_a_link_in_the_folder_that_leads_out_is_never_read(box, tmp_path):
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", tmp_path / "box" / "out.txt")
    with pytest.raises(StorageError, match="leads out"):
        box.get_file("out.txt", tmp_path / "got.txt")
    with pytest.raises(StorageError, match="leads out"):
        box.copy_within("out.txt", "copy.txt")
    assert not (tmp_path / "got.txt").exists() and not (tmp_path / "box" / "copy.txt").exists()


def test_a_link_that_stays_inside_is_followed(box, tmp_path):
    (tmp_path / "box" / "real.txt").write_text("inside")
    os.symlink("real.txt", tmp_path / "box" / "alias.txt")
    box.get_files([("alias.txt", tmp_path / "got" / "alias.txt")])
    assert (tmp_path / "got" / "alias.txt").read_text() == "inside"


def test_files_get_the_mode_the_umask_allows_as_cp_gives_them(box, tmp_path):
    (tmp_path / "a.txt").write_text("a")
    old = os.umask(0o022)
    try:
        box.put_file(tmp_path / "a.txt", "d/a.txt")
        box.get_file("d/a.txt", tmp_path / "back" / "a.txt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "box" / "d" / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "back" / "a.txt").stat().st_mode) == 0o644


def test_a_directory_in_the_way_is_said_and_nothing_is_left(box, tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "box" / "taken").mkdir()
    with pytest.raises(StorageError, match="box.*taken: is a directory"):
        box.put_file(tmp_path / "a.txt", "taken")
    box.put_file(tmp_path / "a.txt", "a.txt")
    (tmp_path / "here").mkdir()
    with pytest.raises(StorageError, match="here: is a directory"):
        box.get_file("a.txt", tmp_path / "here")
    assert sorted(os.listdir(tmp_path / "box")) == ["a.txt", "taken"]
    assert os.listdir(tmp_path / "here") == [] and os.listdir(tmp_path / "box" / "taken") == []


def test_a_missing_file_is_not_found_on_either_side(box, tmp_path):
    with pytest.raises(NotFoundError):
        box.get_file("absent.txt", tmp_path / "x.txt")
    with pytest.raises(NotFoundError, match="absent-local.txt"):
        box.put_file(tmp_path / "absent-local.txt", "x.txt")
