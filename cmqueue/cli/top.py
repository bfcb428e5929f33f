"""`cmq top`: machines, slots, queue depths and running jobs, live on a terminal or as lines
into a pipe."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from . import output
from .common import Args, number_option, open_cluster


def cmd_top(args: Args) -> int:
    """Watch the cluster: machines with slots used and free, queue depths per machine and
label, the jobs running now; refreshed in place until q, Esc or Ctrl-C.

Usage:
  cmq top [options] [--interval=S] [--once] [--json]

Options:
  --interval=S   seconds between refreshes [default: 1]
  --once         print one snapshot and exit
  --json         print one snapshot as JSON and exit

Without a terminal (into a pipe or a file) it prints a snapshot every interval as plain
lines, each headed by the time, until the reader goes away or it is interrupted.
"""
    from rich.live import Live

    from ..fleet.snapshot import snapshot

    interval = number_option(args, "--interval")
    with open_cluster(args, check_keys=False) as c:
        if args["--json"]:
            output.print_json(snapshot(c))
            return 0
        if args["--once"]:
            output.out.print(output.top_view(snapshot(c)))
            return 0
        if not output.out.is_terminal:
            return _top_lines(c, snapshot, interval)
        # Keys first: the terminal is in cbreak mode before the first screen shows.
        with _keys() as pressed, \
                Live(output.top_view(snapshot(c)), console=output.out, refresh_per_second=4, screen=False) as live:
            while pressed(interval) not in ("q", "Q", "\x1b"):
                live.update(output.top_view(snapshot(c)))
        return 0


def _top_lines(c, snapshot: Callable[[Any], dict[str, Any]], interval: float) -> int:
    """`cmq top` without a terminal: a snapshot every ``interval`` seconds, as plain lines
    headed by the time, flushed at once; ends quietly on Ctrl-C (a closed pipe ends it
    as for every command: quietly, exit 141)."""
    try:
        while True:
            output.out.print(f"-- {time.strftime('%Y-%m-%d %H:%M:%S')}", markup=False)
            output.out.print(output.top_view(snapshot(c)))
            output.out.file.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0


@contextmanager
def _keys():
    """A function that waits up to S seconds for a key on the terminal and returns it
    ('' when none); the terminal is in cbreak mode meanwhile. Without a terminal it only
    waits."""
    import select
    import termios
    import tty

    fd = sys.stdin.fileno() if sys.stdin and sys.stdin.isatty() else None
    if fd is None:
        yield lambda timeout: time.sleep(timeout) or ""
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        def pressed(timeout: float) -> str:
            ready, _, _ = select.select([fd], [], [], timeout)
            return os.read(fd, 1).decode(errors="replace") if ready else ""

        yield pressed
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


COMMANDS: dict[str, Callable[[Args], int]] = {
    "top": cmd_top,
}
