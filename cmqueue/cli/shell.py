"""`cmq shell`: the cmq commands at a prompt, or from a script on standard input."""

from __future__ import annotations

from typing import Any

from .commands import Args


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
    from ..config import home_dir
    from ..shell import run

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
