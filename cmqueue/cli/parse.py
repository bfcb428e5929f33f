"""Parsing a command line against a docopt usage text, with errors a person can act on:
one line, naming the word that is wrong and, where one is close, what was meant.

Also the rule for commands that take a shell command (``submit``, ``map``): cmq's own
options go before the command. A word after it that is exactly one of cmq's options is
refused rather than silently passed to the command (or silently obeyed); ``--`` before
the command passes every later word to it as it is.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from docopt import DocoptExit, Option, docopt, parse_docstring_sections, parse_options

from ..core.errors import UsageError


def split_triple_colon(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Split ``argv`` at the first ``:::`` (GNU parallel's argument separator)."""
    if ":::" in argv:
        i = argv.index(":::")
        return argv[:i], argv[i + 1:]
    return argv, None


def leading_options(argv: list[str], takes_value: set[str]) -> tuple[list[str], list[str], bool]:
    """Split ``argv`` into the options before the first positional word and the rest;
    the flag says whether ``--`` ended the options (the rest is then verbatim).

    ``submit`` needs this: everything from COMMAND on belongs to the command, even words
    that look like options (``cmq submit ls -l``).
    """
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return argv[:i], argv[i + 1:], True
        if not word.startswith("-") or word == "-":
            break
        i += 2 if word in takes_value else 1
    return argv[:i], argv[i:], False


def options_of(doc: str) -> list[Option]:
    """The options a usage text declares (its Options sections)."""
    sections = parse_docstring_sections(doc)
    return [*parse_options(sections.before_usage), *parse_options(sections.after_usage)]


def option_names(doc: str) -> set[str]:
    """Every spelling of every option of ``doc`` (``-b``, ``--gather``...)."""
    return {n for o in options_of(doc) for n in (o.short, o.longer) if n}


def value_options(doc: str) -> set[str]:
    """The spellings of the options of ``doc`` that take a value."""
    return {n for o in options_of(doc) if o.argcount for n in (o.short, o.longer) if n}


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean `X`?)`` for the closest candidate, or ''."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def own_options_after_command(words: list[str], doc: str) -> list[str]:
    """The words of a shell command (or of its ::: arguments) that are exactly one of
    the cmq command's long options (``--on``, ``--on=m1``, ``--wait``)."""
    names = {n for n in option_names(doc) if n.startswith("--")}
    return [w for w in words if w.split("=", 1)[0] in names]


def refuse_trailing_options(command: str, words: list[str], after: list[str] | None, doc: str) -> None:
    """UsageError when a cmq option follows the shell command (see the module's rule)."""
    for where, found in (("after the command", own_options_after_command(words, doc)),
                         ("after :::", own_options_after_command(after or [], doc))):
        if found:
            word = found[0]
            hint = ("put it before the command, or pass it to the command after `--`: "
                    f"`cmq {command} [options] -- COMMAND... {word}`" if where == "after the command" else
                    "put it before the command (arguments that look like options: --each=FILE)")
            raise UsageError(f"{command}: {word} {where} is an option of cmq {command}; {hint}")


def _usage_lines(doc: str, command: str) -> list[list[str]]:
    usage = parse_docstring_sections(doc).usage_body
    return [line.split()[2:] for line in usage.splitlines() if line.split()[:2] == ["cmq", command]]


def _subcommands(doc: str, command: str) -> set[str]:
    return {t[0] for t in _usage_lines(doc, command) if t and re.fullmatch(r"[a-z][a-z-]*", t[0])}


#: True while a line of ``cmq shell`` runs: help is then ``help [COMMAND]``, not ``cmq ... --help``.
IN_SHELL: ContextVar[bool] = ContextVar("in_cmq_shell", default=False)


def help_hint(command: str = "cmq") -> str:
    """Where the usage of ``command`` is (``cmq`` itself: the list of commands), said as
    it is asked for where the user types: ``see `cmq submit --help``` or, in ``cmq shell``,
    ``type `help submit```."""
    if IN_SHELL.get():
        return "type `help`" if command == "cmq" else f"type `help {command}`"
    return "see `cmq --help`" if command == "cmq" else f"see `cmq {command} --help`"


_help = help_hint


def _positional(argv: list[str], doc: str) -> list[str]:
    takes = value_options(doc)
    words, skip = [], False
    for w in argv:
        if skip:
            skip = False
        elif w == "--":
            break
        elif w.startswith("-") and w != "-":
            skip = w in takes
        else:
            words.append(w)
    return words


def _unknown_option(name: str, known: set[str], command: str) -> str:
    return f"{command}: unknown option {name}{did_you_mean(name, known)}; {_help(command)}"


def explain(exc: DocoptExit, doc: str, command: str, argv: list[str]) -> str:
    """One line for a command line (``argv``, after the command's name) that does not
    match ``doc``: the unknown option or subcommand with a did-you-mean, else the usage
    line that was meant."""
    known = option_names(doc)
    for item in exc.left or []:
        if isinstance(item, Option):
            name = item.longer or item.short or "?"
            if name not in known:
                return _unknown_option(name, known, command)
            return f"{command}: {name} given twice or where it does not belong; {_help(command)}"
    for word in argv:
        if word == "--":
            break
        if word.startswith("-") and word != "-" and word.split("=", 1)[0] not in known:
            return _unknown_option(word.split("=", 1)[0], known, command)
    words = _positional(argv, doc)
    subs = _subcommands(doc, command)
    if subs and words and words[0] not in subs:
        return (f"{command}: unknown subcommand {words[0]!r}{did_you_mean(words[0], subs)}; "
                f"one of: {', '.join(sorted(subs))}")
    lines = _usage_lines(doc, command)
    if subs and words:
        lines = [t for t in lines if t and t[0] == words[0]] or lines
    elif subs:
        lines = [t for t in lines if not t or t[0] not in subs] or lines
    usage = " | ".join(" ".join(["cmq", command, *t]) for t in lines[:2])
    return f"{command}: missing or unexpected arguments; usage: {usage}"


def refuse_abbreviations(doc: str, argv: list[str], command: str) -> None:
    """UsageError for a long option that is only the start of one of ``doc``'s options
    (``--al`` for ``--all``): docopt would take it as that option, and a command must
    never do something other than what was typed. Words after ``--`` are not options."""
    known = {n for n in option_names(doc) if n.startswith("--")}
    takes = value_options(doc)
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word == "--":
            return
        name = word.split("=", 1)[0]
        if not name.startswith("--") or name == "--":
            continue
        if name in known:
            skip = name in takes and "=" not in word
            continue
        meant = sorted(k for k in known if k.startswith(name))
        if meant:
            where = "" if command == "cmq" else f"{command}: "
            raise UsageError(f"{where}unknown option {name}: options are taken only as spelled "
                             f"(did you mean `{meant[0]}`?); {_help(command)}")


def parse(doc: str, argv: list[str], command: str, **kw: Any) -> dict[str, Any]:
    """docopt ``argv`` (the command's name first) against ``doc``; a UsageError with
    one line (see :func:`explain`) when it does not match. Options are taken only as
    spelled (see :func:`refuse_abbreviations`)."""
    refuse_abbreviations(doc, argv[1:], command)
    try:
        return dict(docopt(doc, argv=argv, **kw))
    except DocoptExit as e:
        raise UsageError(explain(e, doc, command, argv[1:])) from None
