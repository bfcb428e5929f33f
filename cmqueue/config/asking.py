"""Secrets written ``TBD`` in the inventory: asked for on the terminal, hidden, once per
process, never stored or printed."""

from __future__ import annotations

import getpass
import sys

from ..core.errors import ConfigError

#: The value of a secret that is asked for on the terminal.
ASK = "TBD"
#: What was typed in this process, by the field it answers (``file: section.name.field``).
_asked: dict[str, str] = {}


def ask_hidden(field: str, prompt: str, otherwise: str = "") -> str:
    """The secret for ``field`` (named as in messages: ``cmq.yaml: clouds.aws.credentials.secret``),
    asked with ``prompt`` the first time; ConfigError without a terminal (``otherwise``
    says what to do instead) or when nothing is typed."""
    if field in _asked:
        return _asked[field]
    if not sys.stdin.isatty():
        raise ConfigError(f"{field}: is TBD, to be asked for on a terminal, and there is none"
                          + (f"; {otherwise}" if otherwise else ""))
    value = getpass.getpass(prompt)
    if not value:
        raise ConfigError(f"{field}: nothing was typed")
    _asked[field] = value
    return value
