"""Hostlist expressions: ``node[01-04]``, ``n[1,3,5-7]``, ``rack[1-2]-n[1-3]``.

Zero padding follows the lower bound (``[01-10]`` gives 01..10). Several brackets give
their product, left to right. The same expression in a machine's name and its ``host``
expand in step (``node[1-4]`` with host ``10.0.0.1[1-4]``).
"""

from __future__ import annotations

import itertools
import re

_BRACKET = re.compile(r"\[([^\[\]]*)\]")


class HostlistError(ValueError):
    """A hostlist expression cannot be expanded (the message says why)."""


def _expand_range(body: str) -> list[str]:
    items: list[str] = []
    for part in body.split(","):
        part = part.strip()
        if not part:
            raise HostlistError(f"empty item in [{body}]")
        if "-" in part:
            lo, _, hi = part.partition("-")
            if not (lo.isdigit() and hi.isdigit()):
                raise HostlistError(f"range {part!r} in [{body}] is not numeric")
            a, b = int(lo), int(hi)
            if b < a:
                raise HostlistError(f"range {part!r} in [{body}] runs backwards")
            if b - a > 100_000:
                raise HostlistError(f"range {part!r} in [{body}] is too large")
            width = len(lo) if lo.startswith("0") else 0
            items.extend(str(i).zfill(width) for i in range(a, b + 1))
        else:
            items.append(part)
    return items


def expand(expr: str) -> list[str]:
    """Expand one hostlist expression into the list of names it denotes, in order."""
    if "[" not in expr and "]" not in expr:
        return [expr]
    pieces = _BRACKET.split(expr)
    literal = pieces[0::2]
    if any("[" in s or "]" in s for s in literal):
        raise HostlistError(f"unbalanced brackets in {expr!r}")
    ranges = [_expand_range(body) for body in pieces[1::2]]
    out = []
    for combo in itertools.product(*ranges):
        name = literal[0]
        for value, lit in zip(combo, literal[1:], strict=True):
            name += value + lit
        out.append(name)
    return out


def expand_list(text: str) -> list[str]:
    """Expand a comma separated list of expressions (commas inside brackets are kept)."""
    names: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            if current.strip():
                names.extend(expand(current.strip()))
            current = ""
        else:
            current += ch
    if current.strip():
        names.extend(expand(current.strip()))
    return names
