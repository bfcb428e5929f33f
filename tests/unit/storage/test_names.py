"""Storage names and SERVICE:PATH addresses (pure)."""

from __future__ import annotations

import pytest

from cmqueue.storage.names import BadNameError, basename, check_name, join, object_name, split_address


@pytest.mark.parametrize("path, name", [("a", "a"), ("/a/b.txt", "a/b.txt"), ("a/b/", "a/b"), ("-x", "-x"),
                                        ("with space é", "with space é")])
def test_a_path_becomes_a_plain_relative_name(path, name):
    assert object_name(path) == name
    assert check_name(name) == name


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "a//b", "./a", "a/./b", "a\0b", "a\\b", "x" * 1025])
def test_names_that_escape_or_are_odd_are_refused(bad):
    with pytest.raises(BadNameError):
        object_name(bad)


def test_the_root_is_a_name_only_where_allowed():
    assert object_name("/", allow_root=True) == ""
    with pytest.raises(BadNameError, match="root"):
        object_name("/")


def test_join_and_basename():
    assert join("", "a.txt") == "a.txt" and join("d/e", "a.txt") == "d/e/a.txt"
    assert basename("d/e/a.txt") == "a.txt"
    with pytest.raises(BadNameError):
        join("d", "../a")


@pytest.mark.parametrize("text, default, expected", [
    ("box:a/b", None, ("box", "a/b")), ("a/b", "box", ("box", "a/b")), ("./x:y", None, (None, "./x:y")),
    ("s3:", None, ("s3", "")), ("C:\\x", None, ("C", "\\x")),
])
def test_addresses(text, default, expected):
    assert split_address(text, default) == expected
