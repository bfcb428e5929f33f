"""The workflow expression language: parse text into a tree. Pure.

Grammar (``;`` binds loosest, ``+`` tightest; parentheses group)::

    sequence := parallel (";" parallel)*
    parallel := sum ("|" sum)*
    sum      := atom ("+" atom)*
    atom     := NAME | "(" sequence ")"
    NAME     := [A-Za-z_][A-Za-z0-9_.-]*

``a ; b`` runs a, then b. ``a | b`` runs a and b in parallel. ``a + b`` runs what has not
run yet of a and b (in parallel), then adds their results. Within one expression a name
denotes one run of its task: a name seen again reuses that run.

A small recursive-descent parser: the grammar has four rules and no ambiguity, errors
must point at a column with a message in our words, and a dependency buys nothing here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.errors import UsageError
from ..core.scanning import Cursor, scan

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)|(?P<op>[;|+()]))")
_WHAT = {";": "';'", "|": "'|'", "+": "'+'", "(": "'('", ")": "')'"}


class ExpressionError(UsageError):
    """A syntax error, pointing at a column: ``expression:1:7: expected ...``."""

    def __init__(self, column: int, message: str) -> None:
        super().__init__(f"expression:1:{column}: {message}")
        self.column = column


@dataclass(frozen=True)
class Name:
    """A task name (``col``: 1-based column in the expression)."""

    name: str
    col: int = 0

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Seq:
    """Run items one after the other."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return "; ".join(_paren(i, Seq) for i in self.items)


@dataclass(frozen=True)
class Par:
    """Run items in parallel."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " | ".join(_paren(i, (Seq, Par)) for i in self.items)


@dataclass(frozen=True)
class Sum:
    """Run what has not run yet of the items, then add their results."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " + ".join(_paren(i, (Seq, Par, Sum)) for i in self.items)


Node = Name | Seq | Par | Sum


def _paren(node: Node, looser: type | tuple[type, ...]) -> str:
    return f"({node})" if isinstance(node, looser) else str(node)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, column) tokens; kind is 'name', 'op' or 'end'."""
    out = []
    for m in scan(text, _TOKEN, ExpressionError):
        kind = "name" if m.group("name") else "op"
        out.append((kind, m.group(kind), m.start(kind) + 1))
    out.append(("end", "", len(text) + 1))
    return out


class _Parser(Cursor):
    def __init__(self, text: str) -> None:
        super().__init__(_tokens(text))

    def sequence(self) -> Node:
        items = [self.parallel(after=None)]
        while self.peek()[1] == ";" and self.peek()[0] == "op":
            self.take()
            items.append(self.parallel(after=";"))
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def parallel(self, after: str | None) -> Node:
        items = [self.sum(after)]
        while self.peek()[:2] == ("op", "|"):
            self.take()
            items.append(self.sum("|"))
        return items[0] if len(items) == 1 else Par(tuple(items))

    def sum(self, after: str | None) -> Node:
        items = [self.atom(after)]
        while self.peek()[:2] == ("op", "+"):
            self.take()
            items.append(self.atom("+"))
        return items[0] if len(items) == 1 else Sum(tuple(items))

    def atom(self, after: str | None) -> Node:
        kind, word, col = self.take()
        if kind == "name":
            return Name(word, col)
        if (kind, word) == ("op", "("):
            if self.peek()[:2] == ("op", ")"):
                raise ExpressionError(self.peek()[2], "empty parentheses")
            inner = self.sequence()
            k, w, c = self.take()
            if (k, w) != ("op", ")"):
                found = "the end" if k == "end" else repr(w)
                raise ExpressionError(c, f"expected ')' to close the '(' at column {col}, found {found}")
            return inner
        where = f" after {_WHAT[after]}" if after else ""
        found = "the end" if kind == "end" else repr(word)
        if kind == "end" and after is None:
            raise ExpressionError(col, "empty expression")
        raise ExpressionError(col, f"expected a task name{where}, found {found}")


def parse(text: str) -> Node:
    """The tree of ``text``; ExpressionError (a usage error, exit 2) names the column."""
    p = _Parser(text)
    node = p.sequence()
    kind, word, col = p.peek()
    if kind != "end":
        if word == ")":
            raise ExpressionError(col, "')' without a matching '('")
        raise ExpressionError(col, f"expected ';', '|', '+' or the end, found {word!r}")
    return node


def names(node: Node) -> list[str]:
    """Task names in order of first appearance."""
    seen: dict[str, None] = {}

    def walk(n: Node) -> None:
        if isinstance(n, Name):
            seen.setdefault(n.name, None)
        else:
            for i in n.items:
                walk(i)

    walk(node)
    return list(seen)
