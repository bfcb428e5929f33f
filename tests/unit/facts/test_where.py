"""The --where language: parsing, errors at a column, evaluation on facts."""

from __future__ import annotations

import pytest

from cmqueue.core.errors import UsageError
from cmqueue.facts.where import WhereError, names, parse

FACTS = {"cpus": 8, "mem_gb": 16.4, "os": "debian", "kernel": "6.1.0-18-amd64", "python": "3.11.2",
         "load": 0.25, "gpu": None, "site": "lab a"}


@pytest.mark.parametrize(("text", "expected"), [
    ("cpus>=4", True), ("cpus>8", False), ("cpus==8", True), ("cpus!=8", False), ("cpus<=8", True),
    ("mem_gb>=8 and os==debian", True), ("mem_gb>=8 and os==ubuntu", False),
    ("os==ubuntu or cpus<16", True), ("not os==debian", False), ("not (os==ubuntu or cpus<4)", True),
    ("python>=3.10", True), ("python<3.9", False), ("python==3.11.2", True),
    ("site=='lab a'", True), ('site!="lab a"', False), ("load<0.5", True),
    ("gpu>=0", False), ("gpu!=1", False), ("not gpu>=1", True),
    ("os>=debian", True), ("cpus==eight", False),
    ("os==ubuntu or os==debian and cpus>100", False), ("(os==ubuntu or os==debian) and cpus>1", True),
])
def test_expressions_evaluate_on_facts(text, expected):
    assert parse(text, known=FACTS).evaluate(FACTS) is expected


def test_and_binds_tighter_than_or_and_the_tree_prints_back():
    tree = parse("os==a or os==debian and not cpus<4")
    assert str(tree) == "os==a or os==debian and not cpus<4"
    assert str(parse("(os==a or os==b) and cpus>=2")) == "(os==a or os==b) and cpus>=2"
    assert names(tree) == ["os", "cpus"]
    assert str(parse("site=='lab a'")) == "site=='lab a'"


@pytest.mark.parametrize(("text", "column", "words"), [
    ("", 1, "empty expression"),
    ("cpus>", 6, "expected a value after '>'"),
    ("cpus", 5, "expected a comparison"),
    ("cpus=4", 5, "use '=='"),
    ("cpus>=4 and", 12, "found the end"),
    ("(cpus>=4", 9, "expected ')' to close the '(' at column 1"),
    ("cpus>=4)", 8, "')' without a matching '('"),
    ("cpus>=4 os==x", 9, "expected 'and', 'or' or the end"),
    ("4<=cpus", 1, "expected a fact's name"),
    ("cpus>=4 and gpus>1", 13, "unknown fact 'gpus' (known: cpus, mem_gb, os, kernel, python, load, gpu, site)"),
    ("os=='debian", 5, "a quote that is not closed"),
    ("cpus>!4", 6, "unexpected character '!'"),
])
def test_errors_name_the_column_and_are_usage_errors(text, column, words):
    with pytest.raises(WhereError) as info:
        parse(text, known=FACTS)
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2
    assert info.value.column == column
    assert words in str(info.value)
    assert str(info.value).startswith(f"--where {text!r}: column {column}: ")


def test_nothing_is_evaluated_as_python():
    with pytest.raises(WhereError):
        parse("__import__('os').system('true')", known=FACTS)
    assert parse("os=='__import__(1)'").evaluate(FACTS) is False
