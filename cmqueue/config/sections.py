"""The named sections of the inventory (``storage:``, ``clouds:``): a mapping of names,
each to a mapping of fields; the checks they share, with errors naming file and field."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError

#: What a name in a named section may be.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def named_mappings(data: Any, path: Path, section: str, noun: str, hint: str) -> Iterator[tuple[str, str, dict]]:
    """(name, ``file: section.name`` for messages, fields) of each entry of ``data``, in
    order; ``noun`` names the entries ("service"), ``hint`` says what their mapping needs."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: {section}: must be a mapping of {noun} names")
    for name, raw in data.items():
        name = str(name)
        where = f"{path.name}: {section}.{name}"
        if not NAME.match(name):
            raise ConfigError(f"{where}: {noun} names use letters, digits, '.', '_' and '-'")
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: must be a mapping with {hint}")
        yield name, where, raw
