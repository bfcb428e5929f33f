"""GNU parallel style replacement strings in a command template.

``{}`` the argument, ``{.}`` without extension, ``{/}`` basename, ``{//}`` dirname,
``{/.}`` basename without extension, ``{#}`` the job's sequence number (1-based).
Arguments are shell-quoted where they are inserted, so no argument can break out of the
command. A template with no replacement string gets the argument appended, as in
GNU parallel.
"""

from __future__ import annotations

import os
import re
import shlex

_TOKEN = re.compile(r"\{(|\.|/|//|/\.|#)\}")


def _value(token: str, arg: str, seq: int) -> str:
    if token == "#":
        return str(seq)
    if token == "":
        return arg
    if token == ".":
        root, ext = os.path.splitext(arg)
        return root if ext else arg
    if token == "/":
        return os.path.basename(arg)
    if token == "//":
        return os.path.dirname(arg) or "."
    if token == "/.":
        return os.path.splitext(os.path.basename(arg))[0]
    raise ValueError(token)


def has_placeholder(template: str) -> bool:
    """Whether ``template`` contains a replacement string."""
    return bool(_TOKEN.search(template))


def render(template: str, arg: str, seq: int) -> str:
    """``template`` with every replacement string filled from ``arg`` (quoted)."""
    if not has_placeholder(template):
        return f"{template} {shlex.quote(arg)}"
    return _TOKEN.sub(lambda m: shlex.quote(_value(m.group(1), arg, seq)), template)


def render_path(template: str, arg: str, seq: int) -> str:
    """``template`` (a file name, such as ``--put={}``) filled from ``arg``, unquoted."""
    return _TOKEN.sub(lambda m: _value(m.group(1), arg, seq), template)
