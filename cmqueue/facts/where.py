"""The ``--where`` language: comparisons of facts, joined by ``and``, ``or``, ``not``. Pure.

Grammar (``or`` binds loosest; parentheses group)::

    any     := all ("or" all)*
    all     := neg ("and" neg)*
    neg     := "not" neg | "(" any ")" | compare
    compare := NAME OP value
    OP      := "==" | "!=" | "<" | "<=" | ">" | ">="
    value   := NUMBER | WORD | 'quoted' | "quoted"

The left of a comparison is a fact's name; the right is always a literal: a number when it
reads as one, else text (so ``os==debian`` compares with the text ``debian``). Numbers
compare as numbers, dotted versions (``python>=3.10``) part by part, other text as text;
a fact that is missing or null matches no comparison. Nothing is evaluated by Python's
``eval``: this module parses the text itself, and errors point at a column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..core.errors import UsageError
from ..core.scanning import Cursor, scan

_TOKEN = re.compile(r"""(?P<str>'[^']*'|"[^"]*")|(?P<op>==|!=|<=|>=|<|>|=|\(|\))|(?P<word>[^\s=!<>()'"]+)""")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_VERSION = re.compile(r"^\d+(\.\d+)+$")
KEYWORDS = ("and", "or", "not")
OPERATORS = ("==", "!=", "<", "<=", ">", ">=")


class WhereError(UsageError):
    """A wrong ``--where`` expression, pointing at a column: ``--where 'x>': column 3: ...``."""

    def __init__(self, text: str, column: int, message: str) -> None:
        super().__init__(f"--where {text!r}: column {column}: {message}")
        self.column = column


def number(text: str) -> int | float | None:
    """``text`` as an int or a float when it reads as a number, else None."""
    if not _NUMBER.match(text):
        return None
    value = float(text)
    return int(value) if value.is_integer() and re.match(r"^[+-]?\d+$", text) else value


def _version(value: Any) -> tuple[int, ...] | None:
    text = str(value)
    return tuple(int(p) for p in text.split(".")) if _VERSION.match(text) else None


@dataclass(frozen=True)
class Compare:
    """``name op value`` (``col``: 1-based column of the name)."""

    name: str
    op: str
    value: Any
    text: str
    col: int = 0

    def __str__(self) -> str:
        shown = self.text if (number(self.text) is not None or re.match(r"^[\w.+/:-]+$", self.text)) \
            else repr(self.text)
        return f"{self.name}{self.op}{shown}"

    def evaluate(self, facts: Mapping[str, Any]) -> bool:
        """Whether ``facts`` satisfy this comparison (a missing or null fact: no)."""
        have = facts.get(self.name)
        if have is None or isinstance(have, (dict, list)):
            return False
        want: Any = self.value
        if isinstance(have, bool):
            have = str(have).lower()
        if isinstance(have, (int, float)) and isinstance(want, (int, float)):
            pass
        elif (hv := _version(have)) is not None and (wv := _version(self.text)) is not None:
            have, want = hv, wv
        else:
            have, want = str(have), self.text
        return _COMPARE[self.op](have, want)


_COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


@dataclass(frozen=True)
class Not:
    """The negation of an expression."""

    item: Expr

    def __str__(self) -> str:
        return f"not {_paren(self.item, (And, Or))}"

    def evaluate(self, facts: Mapping[str, Any]) -> bool:
        """Whether ``facts`` do not satisfy the item."""
        return not self.item.evaluate(facts)


@dataclass(frozen=True)
class And:
    """All items hold."""

    items: tuple[Expr, ...]

    def __str__(self) -> str:
        return " and ".join(_paren(i, Or) for i in self.items)

    def evaluate(self, facts: Mapping[str, Any]) -> bool:
        """Whether ``facts`` satisfy every item."""
        return all(i.evaluate(facts) for i in self.items)


@dataclass(frozen=True)
class Or:
    """At least one item holds."""

    items: tuple[Expr, ...]

    def __str__(self) -> str:
        return " or ".join(str(i) for i in self.items)

    def evaluate(self, facts: Mapping[str, Any]) -> bool:
        """Whether ``facts`` satisfy at least one item."""
        return any(i.evaluate(facts) for i in self.items)


Expr = Compare | Not | And | Or


def _paren(node: Expr, looser: tuple[type, ...] | type) -> str:
    return f"({node})" if isinstance(node, looser) else str(node)


def names(node: Expr) -> list[str]:
    """The fact names ``node`` compares, in order of first appearance."""
    if isinstance(node, Compare):
        return [node.name]
    items = (node.item,) if isinstance(node, Not) else node.items
    return list(dict.fromkeys(n for i in items for n in names(i)))


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, column) tokens; kind is 'str', 'op', 'word', 'kw' or 'end'."""
    out = []
    for m in scan(text, _TOKEN, lambda column, what: WhereError(text, column, what), quotes="'\""):
        kind = m.lastgroup or "word"
        word = m.group(kind)
        if kind == "word" and word in KEYWORDS:
            kind = "kw"
        out.append((kind, word, m.start() + 1))
    out.append(("end", "", len(text) + 1))
    return out


class _Parser(Cursor):
    def __init__(self, text: str, known: list[str] | None) -> None:
        super().__init__(_tokens(text))
        self.text = text
        self.known = known

    def fail(self, col: int, message: str) -> WhereError:
        return WhereError(self.text, col, message)

    def any(self) -> Expr:
        items = [self.all()]
        while self.peek()[:2] == ("kw", "or"):
            self.take()
            items.append(self.all())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def all(self) -> Expr:
        items = [self.neg()]
        while self.peek()[:2] == ("kw", "and"):
            self.take()
            items.append(self.neg())
        return items[0] if len(items) == 1 else And(tuple(items))

    def neg(self) -> Expr:
        kind, word, col = self.take()
        if (kind, word) == ("kw", "not"):
            return Not(self.neg())
        if (kind, word) == ("op", "("):
            inner = self.any()
            k, w, c = self.take()
            if (k, w) != ("op", ")"):
                found = "the end" if k == "end" else repr(w)
                raise self.fail(c, f"expected ')' to close the '(' at column {col}, found {found}")
            return inner
        if kind == "end":
            raise self.fail(col, "empty expression" if self.i == 1 else "expected a comparison, found the end")
        if kind != "word" or not _NAME.match(word):
            raise self.fail(col, f"expected a fact's name (such as cpus), found {word!r}")
        if self.known is not None and word not in self.known:
            raise self.fail(col, f"unknown fact {word!r} (known: {', '.join(self.known)})")
        return self.compare(word, col)

    def compare(self, name: str, col: int) -> Compare:
        kind, op, c = self.take()
        if op == "=" and kind == "op":
            raise self.fail(c, "'=' is not a comparison; use '=='")
        if kind != "op" or op not in OPERATORS:
            found = "the end" if kind == "end" else repr(op)
            raise self.fail(c, f"expected a comparison ({' '.join(OPERATORS)}) after {name!r}, found {found}")
        kind, word, c = self.take()
        if kind == "str":
            return Compare(name, op, word[1:-1], word[1:-1], col)
        if kind in ("word", "kw"):
            value = number(word)
            return Compare(name, op, word if value is None else value, word, col)
        found = "the end" if kind == "end" else repr(word)
        raise self.fail(c, f"expected a value after {op!r}, found {found}")


def parse(text: str, known: Iterable[str] | None = None) -> Expr:
    """The tree of ``text``. With ``known``, a name that is not among them is an error
    (that lists them in their order).
    WhereError (a usage error, exit 2) names the column."""
    p = _Parser(text, list(dict.fromkeys(known)) if known is not None else None)
    node = p.any()
    kind, word, col = p.peek()
    if kind != "end":
        if word == ")":
            raise p.fail(col, "')' without a matching '('")
        raise p.fail(col, f"expected 'and', 'or' or the end, found {word!r}")
    return node
