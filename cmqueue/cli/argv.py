"""Reading a cmq command line before it is parsed: its command word and its global
options. Standard library only: :mod:`cmqueue.cli.client` imports it on every start."""

from __future__ import annotations

#: Global options that take a value (``--config FILE`` as well as ``--config=FILE``).
GLOBAL_VALUE_OPTIONS = ("-c", "--config", "--broker", "--history")

def command_word(argv: list[str]) -> str | None:
    """The command of a cmq command line (after the global options), if any."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in GLOBAL_VALUE_OPTIONS:
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            return word
    return None


def global_values(argv: list[str]) -> dict[str, str]:
    """The values of the global options before the command word: ``{"--config": FILE, ...}``
    (``-c`` counts as ``--config``)."""
    found: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        word = argv[i]
        name, eq, value = word.partition("=")
        name = "--config" if name == "-c" else name
        if name in GLOBAL_VALUE_OPTIONS and not eq and i + 1 < len(argv):
            found[name] = argv[i + 1]
            i += 2
            continue
        if name in GLOBAL_VALUE_OPTIONS and eq:
            found[name] = value
        i += 1
    return found
