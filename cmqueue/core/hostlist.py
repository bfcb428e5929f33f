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


_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")


def _ranges(numbers: list[str]) -> str:
    values = sorted(set(numbers), key=int)
    parts: list[str] = []
    start = prev = values[0]
    for v in values[1:] + [None]:
        if v is not None and int(v) == int(prev) + 1:
            prev = v
            continue
        parts.append(start if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ",".join(parts)


def fold(names: list[str]) -> str:
    """The shortest hostlist for ``names`` (the inverse of :func:`expand_list`):
    ``["n01", "n02", "n03", "gpu"]`` gives ``"n[01-03],gpu"``. Groups keep the order of
    their first name; zero padding is kept (numbers of another width form their own group)."""
    groups: dict[tuple[str, int], list[str]] = {}
    order: list[tuple[str, int] | str] = []
    by_prefix: dict[str, list[str]] = {}
    for name in names:
        m = _TRAILING_NUMBER.match(name)
        if m:
            by_prefix.setdefault(m.group(1), []).append(m.group(2))
    padded = {p for p, nums in by_prefix.items() if any(len(d) > 1 and d.startswith("0") for d in nums)}
    seen: set[str] = set()
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        m = _TRAILING_NUMBER.match(name)
        if not m:
            order.append(name)
            continue
        prefix, digits = m.groups()
        key = (prefix, len(digits) if prefix in padded else 0)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(digits)
    out = []
    for item in order:
        if isinstance(item, str):
            out.append(item)
            continue
        nums = groups[item]
        out.append(f"{item[0]}{nums[0]}" if len(nums) == 1 else f"{item[0]}[{_ranges(nums)}]")
    return ",".join(out)
