"""Tables, JSON and the live progress view of the command line (rich).

rich is imported on first use: a listing printed into a pipe, `--json` and `--help` never
load it (it costs tens of milliseconds, more than such a command's own work).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core.defaults import FAILURE_TAIL_LINES
from ..core.hostlist import fold
from ..core.models import JobRecord, JobStatus, short_id

if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.table import Table

def console(name: str) -> Console:
    """The rich Console on stdout (``out``) or stderr (``err``), made on first use (and
    kept as this module's attribute of that name, which a test may replace)."""
    made = globals().get(name)
    if made is None:
        from rich.console import Console

        made = globals()[name] = Console(stderr=name == "err", highlight=False, soft_wrap=True)
        made.on_broken_pipe = _reader_went_away       # type: ignore[method-assign]
    return made


def _reader_went_away() -> None:
    """A write to a reader that went away (`cmq jobs | head -1`): rich would exit 1 at once;
    raise BrokenPipeError instead, which every command ends on the same way, quietly with
    141 (see :func:`cmqueue.cli.main.main`)."""
    raise BrokenPipeError(32, "the reader went away")


def __getattr__(name: str) -> Any:
    """``output.out`` and ``output.err``: the consoles, made on first use; ``output.Table``:
    rich's Table, imported on first use."""
    if name in ("out", "err"):
        return console(name)
    if name == "Table":
        from rich.table import Table

        return Table
    raise AttributeError(name)


#: rich's colour markup as cmq writes it (``[green]...[/]``), removed when printing plain.
_MARKUP = re.compile(r"\[/?[a-z_ ]*\]")


def line(text: str, markup: bool = True) -> None:
    """Print one line on stdout: through rich on a terminal (colours), else plain, with
    the markup removed and rich never loaded."""
    if stdout_is_terminal():
        console("out").print(text, markup=markup)
        return
    made = globals().get("out")
    stream = made.file if made is not None else sys.stdout
    stream.write((_MARKUP.sub("", text) if markup else text) + "\n")
    stream.flush()


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal (without making a Console)."""
    made = globals().get("out")
    return made.is_terminal if made is not None else sys.stdout.isatty()


STATE_STYLE = {
    "queued": "cyan", "running": "yellow", "retrying": "magenta", "succeeded": "green",
    "failed": "red", "cancelled": "bright_black", "lost": "red",
}


def print_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def when(ts: float | None) -> str:
    """Local time of a timestamp, HH:MM:SS."""
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


def seconds(value: float | None) -> str:
    """A duration for humans."""
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s"


def state_text(state: JobStatus | str) -> str:
    """A state with its colour markup."""
    s = str(state)
    return f"[{STATE_STYLE.get(s, 'white')}]{s}[/]"


def _job_row(r: JobRecord) -> list[str]:
    return [short_id(r.id), r.state.value, r.machine or "-", "-" if r.exit_code is None else str(r.exit_code),
            when(r.started), seconds((r.ended - r.started) if r.started and r.ended else None),
            " ".join(r.spec.command.split()), " ".join((r.reason or "").split())]


JOB_COLUMNS = ("job", "state", "machine", "exit", "started", "took", "command", "reason")


def jobs_table(records: Sequence[JobRecord], title: str | None = None, width: int | None = None) -> Table:
    """Table of jobs: id, state, machine, exit, times, command, reason. Ids, states and
    times are never folded: the command and the reason are cut to fit ``width``."""
    rows = [_job_row(r) for r in records]
    fixed = [max(len(row[i]) for row in [list(JOB_COLUMNS), *rows]) for i in range(6)]
    rest = (width or console("out").width) - sum(fixed) - 3 * len(JOB_COLUMNS)
    longest_command = max([len(row[6]) for row in rows] + [len("command")])
    longest_reason = max([len(row[7]) for row in rows] + [len("reason")])
    command_width = max(7, min(longest_command, max(rest // 2, rest - longest_reason)))
    reason_width = max(6, rest - command_width)
    from rich.table import Table

    t = Table(title=title, show_edge=False, header_style="bold")
    for col, w in zip(JOB_COLUMNS[:6], fixed, strict=True):
        t.add_column(col, no_wrap=True, min_width=w)
    t.add_column("command", no_wrap=True, overflow="ellipsis", max_width=command_width)
    t.add_column("reason", no_wrap=True, overflow="ellipsis", max_width=reason_width)
    for row, r in zip(rows, records, strict=True):
        row[1] = state_text(r.state)
        t.add_row(*row)
    return t


#: Above this many rows a job list is printed as plain aligned lines: a rich table takes
#: about a millisecond a row to lay out (12 s for 10,000 jobs).
TABLE_ROWS = 300


def print_jobs(records: Sequence[JobRecord], on: Console | None = None) -> None:
    """Print a job list: on a terminal, a table fitted to its width (commands and reasons
    cut, ids and times never folded); otherwise, or for long lists, the same columns as
    plain aligned lines with nothing cut (for grep and pipes)."""
    on = on if on is not None else globals().get("out")
    stream = on.file if on is not None else sys.stdout
    terminal = on.is_terminal if on is not None else stdout_is_terminal()
    if terminal and len(records) <= TABLE_ROWS:
        target = on or console("out")
        target.print(jobs_table(records, width=target.width))
        return
    plain_rows([JOB_COLUMNS] + [tuple(_job_row(r)) for r in records], stream, caps={6: 50})


def plain_rows(rows: Sequence[Sequence[str]], stream: Any = None, caps: dict[int, int] | None = None,
               title: str | None = None) -> None:
    """Print ``rows`` (the first is the header) as plain aligned lines, for pipes and grep:
    nothing cut; column i is padded to at most ``caps[i]`` and the last column is not
    padded. ``title``, if any, is the first line."""
    stream = stream if stream is not None else sys.stdout
    caps = caps or {}
    last = len(rows[0]) - 1
    widths = [min(caps.get(i, 1 << 30), max(len(row[i]) for row in rows)) for i in range(last)]
    lines = [f"{title}"] if title else []
    lines += ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:last], widths, strict=True)), row[last]]).rstrip()
              for row in rows]
    stream.write("\n".join(lines) + "\n")
    stream.flush()


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def failures(records: Sequence[JobRecord], tail: bool = True) -> None:
    """Print each job that did not succeed: machine, exit code and (with ``tail``) the
    last lines of its stderr."""
    err = console("err")
    for r in records:
        if r.state == JobStatus.SUCCEEDED:
            continue
        head = (f"[red]✗[/] job {r.id} {state_text(r.state)} on {r.machine or '-'}"
                f" (exit {r.exit_code if r.exit_code is not None else '-'}): {r.spec.command}")
        err.print(head)
        if r.reason:
            err.print(f"    reason: {r.reason}", markup=False)
        lines = (r.result.stderr if r.result and tail else "").rstrip().splitlines()[-FAILURE_TAIL_LINES:]
        for line in lines:
            err.print(f"    | {line}", markup=False)


def _lines(text: str, tag: str) -> str:
    return "".join(f"{tag}{line}\n" for line in text.splitlines())


GATHER_RULE = "-" * 15


def print_outputs(records: Sequence[JobRecord], gather: bool = False) -> None:
    """What the finished jobs printed, in the order given, as clush shows it: one job's
    output as it is; several jobs' lines tagged with their machine (``node01: ...``;
    standard error on stderr, tagged ``node01 (stderr): ...``); with ``gather``, jobs with
    the same output under one header that folds their machines (``node[01-16] (16)``)."""
    done = [r for r in records if r.state.final and r.result is not None]
    if len(records) == 1 and done:
        _write(sys.stdout, done[0].result.stdout)
        _write(sys.stderr, done[0].result.stderr)
        return
    if not gather:
        for r in done:
            name = r.machine or "-"
            _write(sys.stdout, _lines(r.result.stdout, f"{name}: "))
            _write(sys.stderr, _lines(r.result.stderr, f"{name} (stderr): "))
        return
    groups: dict[tuple[str, str], list[JobRecord]] = {}
    for r in done:
        groups.setdefault((r.result.stdout, r.result.stderr), []).append(r)
    for (stdout, stderr), members in groups.items():
        names = fold([m.machine or "-" for m in members])
        _write(sys.stdout, f"{GATHER_RULE}\n{names} ({len(members)})\n{GATHER_RULE}\n")
        _write(sys.stdout, stdout if stdout.endswith("\n") or not stdout else stdout + "\n")
        _write(sys.stderr, _lines(stderr, f"{names} (stderr): "))


def _write(stream: Any, text: str) -> None:
    if text:
        stream.write(text)
        stream.flush()


class ProgressView:
    """Live view while waiting: one bar (done / failed / running, ETA) and a line per
    machine. When stderr is no terminal nothing is redrawn: one summary line is printed
    at the end instead."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        from rich.console import Group
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        err = console("err")
        self.total = total
        self.summary = enabled and not err.is_terminal
        enabled = enabled and err.is_terminal
        self.began = time.monotonic()
        self.progress = Progress(
            TextColumn("[bold]jobs"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(), console=err, transient=False,
        )
        self.task = self.progress.add_task("jobs", total=total, counts="")
        self.live = Live(Group(self.progress), console=err, refresh_per_second=8,
                         transient=False) if enabled else None
        self.latest: list[JobRecord] = []

    def __enter__(self) -> ProgressView:
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.update(self.latest)
            self.live.__exit__(*exc)
        elif self.summary and self.latest:
            states = Counter(r.state.value for r in self.latest)
            n = len(self.latest)
            console("err").print(f"{n} job{'s' if n != 1 else ''} in {seconds(time.monotonic() - self.began)}: "
                      + ", ".join(f"{n} {s}" for s, n in sorted(states.items())), markup=False)

    def update(self, records: list[JobRecord]) -> None:
        """Redraw from the current records."""
        self.latest = records
        if not self.live:
            return
        states = Counter(r.state for r in records)
        done = states[JobStatus.SUCCEEDED]
        bad = states[JobStatus.FAILED] + states[JobStatus.LOST]
        cancelled = states[JobStatus.CANCELLED]          # a step that never started is no failure
        running = states[JobStatus.RUNNING]
        counts = (f"[green]{done} done[/] [red]{bad} failed[/] "
                  + (f"[bright_black]{cancelled} cancelled[/] " if cancelled else "")
                  + f"[yellow]{running} running[/] "
                  f"[cyan]{states[JobStatus.QUEUED] + states[JobStatus.RETRYING]} queued[/]")
        self.progress.update(self.task, completed=done + bad + cancelled, counts=counts)
        per: dict[str, Counter] = {}
        for r in records:
            if r.machine:
                per.setdefault(r.machine, Counter())[r.state] += 1
        from rich.console import Group
        from rich.table import Table

        table = Table(show_edge=False, header_style="dim", box=None)
        for col in ("machine", "running", "done", "failed", "cancelled"):
            table.add_column(col, justify="right" if col != "machine" else "left")
        for name in sorted(per):
            c = per[name]
            table.add_row(name, str(c[JobStatus.RUNNING]), str(c[JobStatus.SUCCEEDED]),
                          str(c[JobStatus.FAILED] + c[JobStatus.LOST]), str(c[JobStatus.CANCELLED]))
        self.live.update(Group(self.progress, table))


class TransferView:
    """Live view of transfers: a bar per machine with bytes, rate and state (and, for a
    relayed copy, the machine that feeds it)."""

    def __init__(self, specs: Sequence[Any], client: Any, enabled: bool = True) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        err = console("err")
        self.client = client
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TextColumn("{task.fields[state]}"), TimeElapsedColumn(), console=err, transient=False,
            disable=not enabled,
        )
        self.names = {s.id: s.command if s.kind == "storage" else f"{s.kind} {s.target.partition(':')[2]}"
                      for s in specs}
        self.tasks = {s.id: self.progress.add_task(self.names[s.id], total=s.params.get("total") or None,
                                                   state="queued", start=False)
                      for s in specs}

    def __enter__(self) -> TransferView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.tick()
        self.progress.__exit__(*exc)

    def update(self, records: list[JobRecord]) -> None:
        """Show each transfer's state; a finished one fills its bar."""
        for r in records:
            task = self.tasks.get(r.id)
            if task is None:
                continue
            if r.state != JobStatus.QUEUED:
                self.progress.start_task(task)
            fields: dict[str, Any] = {"state": state_text(r.state)}
            if r.state == JobStatus.SUCCEEDED and r.result and r.result.data:
                size = r.result.data.get("bytes", 0)
                fields.update(total=size or 1, completed=size or 1)
            self.progress.update(task, **fields)

    def tick(self) -> None:
        """Refresh the byte counters the workers report."""
        if not self.enabled:
            return
        from ..queue.progress import read_progress

        try:
            found = read_progress(self.client, list(self.tasks))
        except Exception:  # noqa: BLE001 - a view never fails the command
            return
        for job, (moved, total, via) in found.items():
            fields: dict[str, Any] = {"description": f"{self.names[job]} from {via}"} if via else {}
            self.progress.update(self.tasks[job], completed=moved, total=total or None, **fields)


#: Past this many machines, `cmq machines` and `cmq top` fold alike rows into one.
FOLD_MACHINES = 16


def fold_rows(rows: list[dict[str, Any]], name: str, alike: Sequence[str]) -> list[dict[str, Any]]:
    """Rows that agree on every field of ``alike``, folded into one whose ``name`` field is
    the hostlist of their names (``m[1-60]``) and ``count`` how many; order of first seen."""
    groups: dict[tuple, dict[str, Any]] = {}
    names: dict[tuple, list[str]] = {}
    for row in rows:
        key = tuple(json.dumps(row.get(f), sort_keys=True, default=str) for f in alike)
        if key not in groups:
            groups[key] = dict(row)
            names[key] = []
        names[key].append(str(row[name]))
    out = []
    for key, row in groups.items():
        row[name] = fold(names[key])
        row["count"] = len(names[key])
        out.append(row)
    return out


def top_view(snap: dict[str, Any]) -> Group:
    """`cmq top`'s screen: machines, queues, running jobs."""
    from rich.console import Group
    from rich.table import Table

    rows = snap["machines"]
    title = "machines"
    if len(rows) > FOLD_MACHINES:
        title = (f"machines ({len(rows)}: {sum(m['slots'] for m in rows)} slots, {sum(m['used'] for m in rows)} "
                 f"used, {sum(m['queued'] for m in rows)} queued; alike machines folded)")
        rows = fold_rows(rows, "machine", ("state", "reason", "slots", "used", "free", "queued", "labels"))
    machines = Table(title=title, show_edge=False, header_style="bold", title_justify="left")
    for col in ("machine", "worker", "slots", "used", "free", "queued", "labels"):
        machines.add_column(col, justify="left" if col in ("machine", "worker", "labels") else "right")
    for m in rows:
        worker = m["state"] + (f" ({m['reason']})" if m["reason"] else "")
        colour = "green" if m["state"] == "consuming" else "yellow" if m["state"] == "ready" else "red"
        machines.add_row(m["machine"], f"[{colour}]{worker}[/]", str(m["slots"]), str(m["used"]), str(m["free"]),
                         str(m["queued"]), ",".join(m["labels"]))
    queues = Table(title="queues", show_edge=False, header_style="bold", title_justify="left")
    queues.add_column("queue")
    queues.add_column("waiting", justify="right")
    for q in snap["queues"]:
        queues.add_row(q["queue"], str(q["waiting"]))
    running = Table(title=f"running ({len(snap['running'])})", show_edge=False, header_style="bold",
                    title_justify="left")
    for col in ("job", "machine", "for", "command"):
        running.add_column(col, overflow="ellipsis", no_wrap=True)
    for r in snap["running"][:30]:
        running.add_row(r["job"], r["machine"] or "-", seconds(r["for"]), r["command"])
    return Group(machines, queues, running)


class CountView:
    """A transient bar on a terminal while things become ready ("machines ready 12/64");
    nothing when stderr is no terminal."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> CountView:
        err = console("err")
        if err.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn(f"[bold]{self.what}"), BarColumn(),
                                     TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                     console=err, transient=True)
            self.task = self.progress.add_task(self.what, total=None)
            self.progress.start()
        return self

    def update(self, done: int, total: int) -> None:
        """``done`` of ``total`` are ready."""
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def print_machine_states(states: dict[str, str]) -> int:
    """Print `cmq up`'s machine states on stderr, machines with the same state folded into
    one line (``worker m[1-64]: consuming``); returns how many are neither consuming nor
    served by another controller."""
    by_state: dict[str, list[str]] = {}
    for name, state in states.items():
        by_state.setdefault(state, []).append(name)
    for state, names in by_state.items():
        console("err").print(f"worker {fold(names)}: {state}", markup=False)
    return sum(len(names) for state, names in by_state.items()
               if not state.startswith(("consuming", "served by another worker")))


def print_group_primary(settings: Any) -> None:
    """On stderr, the primary a Sentinel group broker has now (nothing for one Redis)."""
    from ..core.redact import redact_url
    from ..queue.broker import describe

    said = describe(settings.broker) if settings.broker else ""
    if said:
        console("err").print(f"broker {redact_url(settings.broker)}{said}", markup=False)
