"""`cmq shell`: every cmq command without the ``cmq`` prefix, in one process.

Interactive on a terminal (prompt_toolkit): history kept between sessions in
``<home>/shell_history`` (0600), completion of commands, subcommands, options, machine
names, job ids and vdir paths, and the vdir's working directory in the prompt (``cd`` and
``pwd`` are the vdir's). From a file or a pipe (``cmq shell < script``) it runs each line
in turn and exits with the status of the last command that failed (0 when none did).
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .common import Args

#: Words the shell itself understands.
BUILTINS = ("cd", "pwd", "exit", "quit", "help")
#: Commands whose free arguments are job ids (or batch ids).
JOB_COMMANDS = ("status", "logs", "cancel", "wait")
#: Options whose value is a hostlist of machines.
MACHINE_OPTIONS = ("--on",)
#: Seconds the names completion offers (machines, jobs, vdir entries) are kept.
NAMES_TTL = 5.0


def split_line(line: str) -> list[str]:
    """A command line's words as a POSIX shell splits them (``#`` starts a comment)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def usage_of(command: str) -> str:
    """The usage text of ``command`` (its docstring), or ''."""
    from .main import command as command_function

    func = command_function(command)
    return (func.__doc__ or "") if func else ""


def options_in(usage: str) -> list[str]:
    """The long options a usage text names (``--output``, ``--recursive``), in order."""
    from .common import GLOBAL_OPTIONS

    seen: dict[str, None] = {}
    for found in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", usage + GLOBAL_OPTIONS):
        seen.setdefault(found, None)
    return list(seen)


def subcommands_in(command: str, usage: str) -> list[str]:
    """The literal words that follow ``cmq COMMAND`` in the usage patterns (``mkdir``,
    ``token``, ``list``), in order."""
    seen: dict[str, None] = {}
    section = usage.split("Usage:", 1)[-1].split("\n\n", 1)[0]
    for line in section.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "cmq" or words[1] != command:
            continue
        for word in words[2:]:
            for part in re.split(r"[()|\[\]]", word):
                if re.fullmatch(r"[a-z][a-z-]*", part) and part != "options":
                    seen.setdefault(part, None)
    return list(seen)


class Names:
    """What completion offers besides words of the usage: machines, recent job ids, and
    vdir entries, each read when asked and kept NAMES_TTL seconds."""

    def __init__(self, global_argv: list[str]) -> None:
        self.global_argv = global_argv
        self._cache: dict[str, tuple[float, Any]] = {}

    def _settings(self) -> Any:
        from ..config.settings import resolve
        from .argv import global_values

        given = global_values(self.global_argv)
        return resolve(given.get("--config"), broker=given.get("--broker"), history=given.get("--history"),
                       check_keys=False)

    def _kept(self, key: str, read: Callable[[], Any]) -> Any:
        now = time.monotonic()
        found = self._cache.get(key)
        if found and now - found[0] < NAMES_TTL:
            return found[1]
        try:
            value = read()
        except Exception:  # noqa: BLE001 - completion offers what it can; a broken inventory offers nothing
            value = []
        self._cache[key] = (now, value)
        return value

    def machines(self) -> list[str]:
        """The machines of the inventory."""
        return self._kept("machines", lambda: list(self._settings().inventory.machines))

    def jobs(self) -> list[str]:
        """The ids of the newest jobs and their batches, newest first."""
        def read() -> list[str]:
            from ..history import open_store

            store = open_store(self._settings().history)
            try:
                records = store.jobs(last=50)
            finally:
                store.close()
            ids: dict[str, None] = {}
            for r in reversed(records):
                ids.setdefault(r.id, None)
                if r.spec.batch:
                    ids.setdefault(r.spec.batch, None)
            return list(ids)

        return self._kept("jobs", read)

    def vdir(self, typed: str) -> list[str]:
        """Vdir entries that complete ``typed`` (directories end with ``/``)."""
        folder, _, _ = typed.rpartition("/")

        def read() -> list[str]:
            from ..history import open_store
            from ..storage.ops import Providers
            from ..storage.vdir import VirtualDirectory
            from ..storage.vdir_store import backend_for

            settings = self._settings()
            store = open_store(settings.history)
            providers = Providers(settings.inventory)
            try:
                v = VirtualDirectory(backend_for(store), providers, settings.home)
                dirs, files = v.ls(folder + "/" if folder else (None if not typed.startswith("/") else "/"))
                prefix = folder + "/" if folder or typed.startswith("/") else ""
                return ([prefix + d.rsplit("/", 1)[-1] + "/" for d in dirs]
                        + [prefix + f["path"].rsplit("/", 1)[-1] for f in files])
            finally:
                providers.close()
                store.close()

        return self._kept(f"vdir:{folder}:{typed.startswith('/')}", read)

    def cwd(self) -> str:
        """The vdir's working directory."""
        from ..storage.vdir import CWD_FILE

        try:
            path = (self._settings().home / CWD_FILE).read_text().strip()
        except Exception:  # noqa: BLE001 - the prompt shows / when nothing is set
            return "/"
        return path or "/"


def completions(words: list[str], current: str, names: Names) -> list[str]:
    """What may come at ``current`` after the complete ``words`` of a line."""
    from .main import COMMAND_MODULES

    if not words:
        return [w for w in (*COMMAND_MODULES, *BUILTINS) if w not in ("recorder", "launcher")]
    command = words[0]
    if command == "cd":
        return [p for p in names.vdir(current) if p.endswith("/")]
    usage = usage_of(command)
    if current.startswith("-"):
        for option in MACHINE_OPTIONS:
            if current.startswith(option + "="):
                head, _, last = current.rpartition(",")
                start = head + "," if head else option + "="
                return [start + m for m in names.machines()]
        return options_in(usage)
    if words[-1] in MACHINE_OPTIONS:
        return names.machines()
    subs = subcommands_in(command, usage)
    if len(words) == 1 and subs:
        return subs
    if command in JOB_COMMANDS:
        return names.jobs()
    if command == "vdir":
        return names.vdir(current)
    if command in ("machines", "put", "get", "cache"):
        return [*subs, *names.machines()]
    return subs


class Shell:
    """Runs command lines as `cmq` runs its arguments, with ``global_argv`` (``--config``,
    ``--broker``, ``--debug``) before each."""

    def __init__(self, global_argv: list[str], history: Path) -> None:
        self.global_argv = list(global_argv)
        self.history = history
        self.names = Names(self.global_argv)
        self.failed = 0

    def run_line(self, line: str) -> int | None:
        """Run one line; its exit status, or None when it asks to leave."""
        from .main import main as cmq

        try:
            words = split_line(line)
        except ValueError as e:
            print(f"cmq: {e}", file=sys.stderr)
            return 2
        if not words:
            return 0
        head = words[0]
        if head in ("exit", "quit"):
            return None
        if head == "help":
            words = [*words[1:], "--help"] if len(words) > 1 else ["--help"]
        elif head == "cd":
            words = ["vdir", "cd", *words[1:]]
        elif head == "pwd":
            words = ["vdir", "pwd"]
        elif head == "cmq":
            words = words[1:]
        from .parse import IN_SHELL

        inside = IN_SHELL.set(True)               # errors point at `help`, not `cmq --help`
        try:
            code = cmq([*self.global_argv, *words])
        except SystemExit as e:                   # --help and --version exit through docopt
            code = e.code if isinstance(e.code, int) else 0
        except KeyboardInterrupt:
            print("cmq: interrupted", file=sys.stderr)
            code = 130
        finally:
            IN_SHELL.reset(inside)
        sys.stdout.flush()
        if code:
            self.failed = code
        return code

    def script(self, lines: Iterable[str]) -> int:
        """Run every line; the status of the last command that failed (0: none did)."""
        for line in lines:
            if self.run_line(line) is None:
                break
        return self.failed

    def interactive(self, input: Any = None, output: Any = None) -> int:
        """Prompt for lines until ``exit`` or end of input (Ctrl-D); 0."""
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        from ..core.files import private_dir

        private_dir(self.history.parent)
        if not self.history.exists():
            self.history.touch(mode=0o600)
        session: PromptSession = PromptSession(history=FileHistory(str(self.history)),
                                               completer=ShellCompleter(self.names), complete_while_typing=False,
                                               input=input, output=output)
        while True:
            try:
                line = session.prompt(f"cmq:{self.names.cwd()}> ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                return 0
            if self.run_line(line) is None:
                return 0


def _completer_base() -> type:
    from prompt_toolkit.completion import Completer

    return Completer


class ShellCompleter(_completer_base()):  # type: ignore[misc]
    """prompt_toolkit's view of :func:`completions`."""

    def __init__(self, names: Names) -> None:
        self.names = names

    def get_completions(self, document: Any, complete_event: Any) -> Iterator[Any]:
        from prompt_toolkit.completion import Completion

        before = document.text_before_cursor
        current = "" if not before or before[-1].isspace() else before.split()[-1]
        try:
            words = split_line(before[: len(before) - len(current)])
        except ValueError:
            return
        for option in completions(words, current, self.names):
            if option.startswith(current) and option != current:
                yield Completion(option, start_position=-len(current))


def run(global_argv: list[str], history: Path, stdin: IO[str] | None = None) -> int:
    """`cmq shell`: interactive on a terminal, else the lines of standard input."""
    stream = stdin or sys.stdin
    shell = Shell(global_argv, history)
    if stream.isatty():
        return shell.interactive()
    return shell.script(stream)


def cmd_shell(args: Args) -> int:
    """Run cmq commands without the `cmq` prefix: at a prompt, or from standard input.

Usage:
  cmq shell [options]

At a terminal: completion (Tab) of commands, subcommands, options, machine names, job
ids and vdir paths; history kept between sessions (~/.cloudmesh/cmq/shell_history,
0600; Ctrl-R searches it); the prompt shows the vdir's working directory, which `cd`
and `pwd` use. `help [COMMAND]` shows a usage; `exit`, `quit` or Ctrl-D leave.

From a pipe or a file (`cmq shell < script.cmq`), each line runs in turn (`#` starts a
comment); the exit status is that of the last command that failed, 0 when none did.

Examples:
  cmq shell
  printf 'machines\\nsubmit --all --wait uname -n\\n' | cmq shell
"""
    from ..config.settings import home_dir

    global_argv: list[str] = []
    if args.get("--config"):
        global_argv += ["--config", args["--config"]]
    for key in ("--broker", "--history"):
        if args.get(key):
            global_argv += [f"{key}={args[key]}"]
    if args.get("--debug"):
        global_argv.append("--debug")
    return run(global_argv, home_dir() / "shell_history")


COMMANDS: dict[str, Any] = {"shell": cmd_shell}
