"""The workflow expression parser: precedence, errors at a column, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmqueue.workflow.expr import ExpressionError, Name, Par, Seq, Sum, names, parse


def n(x):
    return Name(x)


def strip(node):
    """The tree without columns (for comparisons)."""
    if isinstance(node, Name):
        return Name(node.name)
    return type(node)(tuple(strip(i) for i in node.items))


def test_the_example_and_precedence():
    tree = strip(parse("(a | b | c); d; a + b + c + d"))
    assert tree == Seq((Par((n("a"), n("b"), n("c"))), n("d"), Sum((n("a"), n("b"), n("c"), n("d")))))
    assert strip(parse("a | b + c")) == Par((n("a"), Sum((n("b"), n("c")))))
    assert strip(parse("a; b | c")) == Seq((n("a"), Par((n("b"), n("c")))))
    assert strip(parse("(a; b) | c")) == Par((Seq((n("a"), n("b"))), n("c")))
    assert strip(parse("((a))")) == n("a")
    assert names(parse("(a | b); a + c")) == ["a", "b", "c"]


@pytest.mark.parametrize("text, message", [
    ("", "expression:1:1: empty expression"),
    ("   ", "expression:1:4: empty expression"),
    ("a |", "expression:1:4: expected a task name after '|', found the end"),
    ("(a | | b)", "expression:1:6: expected a task name after '|', found '|'"),
    ("a ; ; b", "expression:1:5: expected a task name after ';', found ';'"),
    ("a +", "expression:1:4: expected a task name after '+', found the end"),
    ("((a)", "expression:1:5: expected ')' to close the '(' at column 1, found the end"),
    ("a)", "expression:1:2: ')' without a matching '('"),
    ("a b", "expression:1:3: expected ';', '|', '+' or the end, found 'b'"),
    ("()", "expression:1:2: empty parentheses"),
    ("a & b", "expression:1:3: unexpected character '&'"),
])
def test_syntax_errors_point_at_the_column(text, message):
    with pytest.raises(ExpressionError) as e:
        parse(text)
    assert str(e.value) == message
    assert e.value.exit_code == 2


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab ;|+()\n$x_-.1é", max_size=30) | st.text(max_size=30))
def test_any_input_parses_or_is_a_syntax_error(text):
    try:
        tree = parse(text)
    except ExpressionError as e:
        assert str(e).startswith("expression:1:")
        return
    # Printing the tree and parsing it again gives the same tree.
    assert strip(parse(str(tree))) == strip(tree)
