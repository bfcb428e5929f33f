"""`cmq machines`: list the machines of the inventory, or probe them (`cmq machines check`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import output
from .common import Args, load_settings


def cmd_machines(args: Args) -> int:
    """List the machines of the inventory, or probe them.

Usage:
  cmq machines [options] [--json] [--long]
  cmq machines check [options] [--json] [NAMES]
  cmq machines facts [options] [--json] [--cached | --max-age=S] [--timeout=S] [NAMES]
  cmq machines join [options] NAME
  cmq machines leave [options] NAME

Options:
  --json   print JSON
  --long   a row per machine, however many (past 16, alike machines share a row)
  --cached       facts: show the stored facts, gather nothing
  --max-age=S    facts: gather only those older than S seconds (or never gathered)
  --timeout=S    facts: wait at most S seconds for the machines' answers (default: the
                 setting facts_timeout, 60); the jobs of those that did not answer are
                 cancelled

`check` probes the machines in parallel over ssh: reachable, host key accepted, latency
and slots. NAMES is a hostlist (node[1-3],gpu1); default: every enabled machine.
Exits 1 if any probed machine is unreachable.

`facts` gathers, in parallel, each machine's cpus, mem_gb, disk_free_gb (in its workdir),
os (ID of /etc/os-release), kernel, python (3.11.2), load (1 minute) and the inventory's
own probes (`facts: {gpu: nvidia-smi -L | wc -l}`, at the top or in a machine; each runs
at most settings.facts_probe_timeout seconds), as one job per machine pinned to it (so
agents are reached too). They are stored in the history with their time, and `cmq
submit --where` chooses machines by them. A probe that fails gives null; a machine that
does not answer gets a row that says so, and the exit code is 1.

`join` makes a machine with `mode: agent` run its own worker: over ssh it installs
cmqueue there from a wheelhouse built here, writes the worker's config (0600) and starts
`cmq worker NAME` under systemd or a pidfile supervisor, in <workdir>/.cmq/agent/. The
worker reaches the broker through an ssh tunnel from here, which `cmq up` reopens; or,
with `broker_access: tls` in its entry and the broker started by `cmq up --tls`, on TLS
at settings: broker_bind with the CA and a client certificate of its own (0600).
`leave` stops that worker, removes its config (and key) and closes the tunnel.
"""
    if args["check"]:
        return _machines_check(args)
    if args["facts"]:
        from .facts import machines_facts

        return machines_facts(args)
    if args["join"] or args["leave"]:
        from ..fleet.agents import Agents

        agents = Agents(load_settings(args))
        name = args["NAME"]
        if args["leave"]:
            agents.leave(name)
            output.err.print(f"machine {name}: left (worker stopped, config removed, tunnel closed)",
                             markup=False)
            return 0
        info = agents.join(name)
        way = (f"broker on TLS at {info['address']}" if info.get("access") == "tls"
               else f"broker through an ssh tunnel to its 127.0.0.1:{info['port']}")
        output.err.print(f"machine {name}: joined; worker pid {info['pid']} under {info['supervisor']}, {way}",
                         markup=False)
        return 0
    from ..fleet.snapshot import machine_rows

    settings = load_settings(args, check_keys=False)
    rows = machine_rows(settings)
    output.print_group_primary(settings)
    if args["--json"]:
        output.print_json(rows)
        return 0
    for r in rows:
        remote = r["mode"] in ("ssh", "agent")
        r["where"] = r["host"] + (f":{r['port']}" if r["port"] else "") if remote else "-"
        if r["user"] and remote:
            r["where"] = f"{r['user']}@{r['where']}"
        if r["mode"] == "agent" and not r["joined"]:
            r["worker"] = "not joined (`cmq machines join`)"
    title = None
    if len(rows) > output.FOLD_MACHINES and not args["--long"]:
        enabled = [r for r in rows if r["enabled"]]
        states = Counter(r["worker"] for r in enabled)
        title = (f"{len(rows)} machines, {sum(r['slots'] for r in enabled)} slots enabled: "
                 + ", ".join(f"{n} {state}" for state, n in states.most_common())
                 + " (alike machines folded; --long for a row each)")
        rows = output.fold_rows(rows, "name", ("mode", "slots", "labels", "workdir", "worker", "enabled", "user"))
        for r in rows:
            if r["count"] > 1:
                r["where"] = f"({r['count']} hosts)"
    columns = ("machine", "mode", "host", "slots", "labels", "workdir", "worker")
    cells = [(r["name"] if r["enabled"] else f"{r['name']} (disabled)", r["mode"], r["where"], str(r["slots"]),
              ",".join(r["labels"]), r["workdir"], r["worker"]) for r in rows]
    if not output.stdout_is_terminal():
        output.plain_rows([columns, *cells], title=title)
        return 0
    from rich.text import Text

    t = output.Table(title=title, show_edge=False, header_style="bold", title_justify="left")
    for col in columns:
        t.add_column(col)
    for row, r in zip(cells, rows, strict=True):
        t.add_row(*(Text(cell, style="" if r["enabled"] or i else "bright_black") for i, cell in enumerate(row)))
    output.out.print(t)
    return 0


def _machines_check(args: Args) -> int:
    from ..machine.runner import Runner, control_dir

    settings = load_settings(args)
    inv = settings.inventory
    machines = inv.select(args["NAMES"]) if args["NAMES"] else inv.enabled()

    def probe(m) -> dict[str, Any]:
        row = {"machine": m.name, "mode": m.mode, "slots": m.slots, "reachable": False,
               "host_key": "-", "latency_ms": None, "error": ""}
        if m.mode == "agent":
            row["error"] = "agent: runs its own worker"
            return row
        runner = Runner(m, control_dir(), settings.log_dir / "jobs" / m.name)
        try:
            ok, took, why = runner.probe()
        finally:
            runner.close()
        row.update(reachable=ok, latency_ms=round(took * 1000, 1), error=why if not ok else "")
        if m.mode == "ssh":
            row["host_key"] = ("ok" if ok else
                               "CHANGED" if "has CHANGED" in why else
                               "REJECTED" if "host key" in why.lower() else "?")
        return row

    with ThreadPoolExecutor(max_workers=min(32, max(1, len(machines)))) as pool:
        rows = list(pool.map(probe, machines))
    if args["--json"]:
        output.print_json(rows)
    else:
        t = output.Table(show_edge=False, header_style="bold")
        for col in ("machine", "reachable", "host key", "latency", "slots", "error"):
            t.add_column(col)
        for r in rows:
            t.add_row(r["machine"], "[green]yes[/]" if r["reachable"] else "[red]no[/]", r["host_key"],
                      f"{r['latency_ms']} ms" if r["latency_ms"] is not None else "-", str(r["slots"]),
                      r["error"])
        output.out.print(t)
    return 0 if all(r["reachable"] or r["mode"] == "agent" for r in rows) else 1


COMMANDS: dict[str, Callable[[Args], int]] = {
    "machines": cmd_machines,
}
