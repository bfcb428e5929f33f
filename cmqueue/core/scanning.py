"""Splitting a one-line expression into tokens: what the workflow language and the
``--where`` language share (their grammars differ; their scanning does not)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator


def scan(text: str, pattern: re.Pattern[str], fail: Callable[[int, str], Exception],
         quotes: str = "") -> Iterator[re.Match[str]]:
    """The matches of ``pattern`` that cover ``text``, blanks between them skipped. A
    line break or text that ``pattern`` does not match raises ``fail(column, what)``
    (1-based column; ``what`` says what is wrong there: for one of ``quotes``, that it
    is not closed)."""
    if "\n" in text:
        raise fail(text.index("\n") + 1, "an expression is one line")
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return
        m = pattern.match(text, pos)
        if not m or m.end() == pos:
            raise fail(pos + 1, "a quote that is not closed" if text[pos] in quotes
                       else f"unexpected character {text[pos]!r}")
        yield m
        pos = m.end()


class Cursor:
    """A recursive-descent parser's place in its tokens: (kind, text, column) tuples
    ending with an 'end' token."""

    def __init__(self, tokens: list[tuple[str, str, int]]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        """The next token, left in place."""
        return self.toks[self.i]

    def take(self) -> tuple[str, str, int]:
        """The next token, taken."""
        tok = self.toks[self.i]
        self.i += 1
        return tok
