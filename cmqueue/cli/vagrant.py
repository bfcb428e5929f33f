"""The ``cmq vagrant`` command: a cluster of Vagrant VMs as machines vm1..vmN."""

from __future__ import annotations

import time
from typing import Any

from ..clouds.vagrant import LABEL, ClusterSpec, VagrantCluster
from ..config.settings import config_path
from ..core.errors import CmqError, VagrantError
from . import output
from .common import Args, load_settings, number_option, refuse_unfinished


def cmd_vagrant(args: Args) -> int:
    """Boot N Vagrant VMs and use them as machines vm1..vmN; show, halt or destroy them.

Usage:
  cmq vagrant up [options] N
  cmq vagrant status [options] [--json]
  cmq vagrant halt [options] [--force]
  cmq vagrant destroy [options] [--force]

Options:
  --box=B            the Vagrant box [default: debian/bookworm64]
  --slots=S          jobs each VM runs at once [default: 2]
  --provider=P       libvirt, virtualbox or another installed provider [default: libvirt]
  --mode=M           agent (each VM runs its own worker) or ssh (workers here run
                     jobs on the VMs over ssh) [default: agent]
  --memory=MB        memory of each VM [default: 1024]
  --cpus=C           virtual CPUs of each VM [default: 1]
  --timeout=SECONDS  how long a VM may take to boot and answer ssh [default: 600]
  --workdir=DIR      the jobs' directory on the VMs [default: ~/.cmq]
  --accel=A          libvirt: kvm, tcg (software emulation) or auto (kvm when
                     /dev/kvm is usable) [default: auto]
  --json             print JSON
  --force            halt or destroy VMs that have unfinished jobs

`up` renders <inventory>.vagrant/Vagrantfile beside the inventory, runs `vagrant up`,
reads `vagrant ssh-config` of each VM, pins its ssh host keys, and writes the VMs to
<inventory>.vagrant.yaml, which cmq reads with the inventory (label `vagrant`). In
agent mode it then joins each VM (`cmq machines join`). Run again, it starts halted
VMs and rewrites their addresses. If a VM fails to come up, the ones that did are listed
and `cmq vagrant destroy` removes them.
`halt` shuts the VMs down and disables them in the inventory until the next `up`.
`destroy` destroys the VMs and removes their files and inventory entries.
Both refuse while jobs for the VMs are queued or running (their machine, their
queues, or the label `vagrant` when only VMs carry it), unless --force.
"""
    cluster = VagrantCluster(config_path(args.get("--config")), echo=_echo)
    if args["up"]:
        try:
            count = int(args["N"])
        except ValueError:
            count = args["N"]
        spec = ClusterSpec(
            count=count, box=args["--box"], slots=number_option(args, "--slots", int),
            provider=args["--provider"], mode=args["--mode"], memory=number_option(args, "--memory", int),
            cpus=number_option(args, "--cpus", int), boot_timeout=number_option(args, "--timeout", int),
            accel=args["--accel"], workdir=args["--workdir"],
        ).check()
        load_settings(args, check_keys=False)        # the inventory must load before any VM boots
        started = time.monotonic()
        entries = cluster.up(spec)
        output.err.print(f"{len(entries)} VMs up and pinned in {time.monotonic() - started:.0f} s", markup=False)
        if spec.mode == "agent":
            started = time.monotonic()
            _join(args, list(entries))
            output.err.print(f"joined in {time.monotonic() - started:.0f} s", markup=False)
        _print_status(args, cluster)
        return 0
    if args["status"]:
        _print_status(args, cluster)
        return 0
    if not args["--force"]:
        refuse_unfinished(args, list(cluster.entries()), "halt" if args["halt"] else "destroy", label=LABEL)
    if args["halt"]:
        cluster.halt()
        output.err.print("VMs halted; they stay in the inventory, disabled, until `cmq vagrant up`",
                         markup=False)
        return 0
    names = cluster.entries()
    _forget_agents(args, list(names))
    removed = cluster.destroy()
    output.err.print(f"destroyed; removed from the inventory: {', '.join(removed) or '(none)'}", markup=False)
    return 0


def _echo(line: str) -> None:
    """One line of vagrant's progress, on stderr as vagrant printed it."""
    output.err.print(line, markup=False, highlight=False, soft_wrap=True)


def _join(args: Args, names: list[str]) -> None:
    """Join the VMs as agents, all at once (their bootstraps run in parallel)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..fleet.agents import Agents

    agents = Agents(load_settings(args))

    def join(name: str) -> tuple[str, dict[str, Any] | CmqError]:
        try:
            return name, agents.join(name)
        except CmqError as e:
            return name, e

    failed = []
    with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        for name, info in pool.map(join, names):
            if isinstance(info, CmqError):
                failed.append(f"{name}: join failed: {info}")
            else:
                output.err.print(f"{name}: joined; worker pid {info['pid']} under {info['supervisor']}",
                                 markup=False)
    if failed:
        retry = " ".join(f"`cmq machines join {n.split(':')[0]}`" for n in failed)
        raise VagrantError(f"{'; '.join(failed)}; the VMs run and are in the inventory: {retry} tries again")


def _forget_agents(args: Args, names: list[str]) -> None:
    """Close the tunnels of the cluster's joined agents before their VMs go away."""
    if not names:
        return
    from ..fleet.services import Services

    services = Services(load_settings(args, check_keys=False))
    joined = services.records().get("agents") or {}
    for name in names:
        if name in joined:
            services.stop_tunnel(name)


def _print_status(args: Args, cluster: Any) -> None:
    from ..fleet.services import Services

    entries = cluster.entries()
    states = cluster.states()
    joined: dict[str, Any] = {}
    if entries:
        joined = Services(load_settings(args, check_keys=False)).records().get("agents") or {}
    rows = []
    for name in sorted(set(states) | set(entries), key=lambda n: (len(n), n)):
        e = entries.get(name, {})
        rows.append({
            "name": name, "state": states.get(name, "-"), "host": e.get("host"),
            "port": e.get("port", 22) if e else None, "mode": e.get("mode"), "slots": e.get("slots"),
            "in_inventory": bool(e) and e.get("enabled", True), "joined": name in joined,
        })
    if args.get("--json"):
        output.print_json(rows)
        return
    if not rows:
        output.err.print(f"no Vagrant cluster beside {cluster.paths.inventory}; `cmq vagrant up N` makes one",
                         markup=False)
        return
    t = output.Table(show_edge=False, header_style="bold")
    for col in ("vm", "state", "address", "mode", "slots", "in inventory", "joined"):
        t.add_column(col)
    for r in rows:
        address = f"{r['host']}:{r['port']}" if r["host"] else "-"
        t.add_row(r["name"], r["state"], address, r["mode"] or "-", str(r["slots"] or "-"),
                  "yes" if r["in_inventory"] else "no",
                  ("yes" if r["joined"] else "no") if r["mode"] == "agent" else "-")
    output.out.print(t)


COMMANDS = {"vagrant": cmd_vagrant}
