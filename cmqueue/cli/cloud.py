"""`cmq cloud`: the clouds of the inventory (libcloud compute drivers) and their VMs."""

from __future__ import annotations

import sys
import time
from typing import Any

from ..core.errors import UsageError
from . import output
from .common import Args, load_settings, need_a_worker, number_option, output_format, print_rows, refuse_unfinished

#: Seconds `boot --join` waits for the workers to serve the new machines.
JOIN_WAIT = 60.0
#: The actions that go to the queue, one job per VM.
QUEUED = ("boot", "start", "stop", "suspend", "resume", "reboot", "delete")


def cmd_cloud(args: Args) -> int:
    """The clouds of the inventory (libcloud compute drivers) and their virtual machines.

Usage:
  cmq cloud [options] config list [--output=OUTPUT]
  cmq cloud [options] list [CLOUD] [--output=OUTPUT]
  cmq cloud [options] refresh [CLOUD]
  cmq cloud [options] boot CLOUD [--count=N] [--image=IMAGE] [--size=SIZE] [--join] [--slots=S] [NAMES]
  cmq cloud [options] (start|suspend|resume|reboot) NAMES [--cloud=CLOUD]
  cmq cloud [options] stop NAMES [--cloud=CLOUD] [--grace=SECONDS]
  cmq cloud [options] delete NAMES [--cloud=CLOUD] [--force]
  cmq cloud [options] ssh NAME [--cloud=CLOUD] [COMMAND...]
  cmq cloud [options] demo [--vms=N]

Options:
  --output=OUTPUT    table, json or csv [default: table]
  --count=N          VMs to boot when no NAMES are given (named CLOUD-1, CLOUD-2, ...) [default: 1]
  --image=IMAGE      the image to boot (default: the cloud's default.image)
  --size=SIZE        the size (flavor) to boot (default: the cloud's default.size)
  --cloud=CLOUD      the cloud of NAMES (default: the only cloud of the inventory)
  --join             the VMs become machines (label: their cloud) once they answer
  --slots=S          jobs each joined VM runs at once [default: 1]
  --force            delete VMs that have unfinished jobs
  --grace=SECONDS    how long a VM has to shut down cleanly on its power button
                     before it is powered off (libvirt; 0: at once) [default: 30]
  --vms=N            VMs the demo boots [default: 2]

Clouds are named in the inventory's clouds: section, in the order shown:
  clouds:
    lab: {type: libvirt, credentials: {uri: "qemu:///system"}, default: {size: small}}
    aws: {type: ec2, credentials: {key: AKIA..., secret: TBD, region: eu-west-1}}
type is a libcloud compute driver (libvirt, openstack, ec2, gce, ...). A credential TBD
is asked for on the terminal, hidden, when the cloud is opened (so not in a queued
action: give it in the inventory, which must then be 0600); secrets are shown masked.

With --join the booted VMs are written to <inventory>.clouds.yaml beside the inventory,
which cmq reads with it: each an ssh machine whose host key is the one pinned at boot,
served by the running workers within seconds; `delete` removes them from it, and
refuses while jobs for them are queued or running, unless --force. `ssh NAME` opens a
shell on a VM (or runs COMMAND there) with its pinned host key.

NAMES is a hostlist (vm[1-4],db1). boot and the actions go to the queue as one job per
VM, all at once as far as the workers' slots go; each is in the history (`cmq status`).
Workers on this host run them (`cmq up`). `list` asks the cloud; `refresh` records
what it says in the history store's database (flattened records of kind vm).
On a libvirt cloud cmq defines each VM itself: QEMU in software emulation, user-mode
network with its ssh port forwarded on 127.0.0.1, its ssh host key pinned from its
console before the first connection (~/.cloudmesh/cmq/clouds/known_hosts).

`demo` runs a whole local cloud, each step a cmq command shown as it runs: a private
libvirtd (own mount namespace and socket; needs root, libvirtd and QEMU), N VMs booted
with --join, a map with a reduce across them, one suspended and resumed, all deleted,
everything stopped. It lives in $CMQ_HOME/cloud-demo; nothing of yours is touched.

Examples:
  cmq cloud demo
  cmq cloud config list
  cmq cloud boot lab --count=2
  cmq cloud suspend lab-[1-2]
  cmq cloud list lab --output=json
"""
    if args["demo"]:
        from ..clouds.demo import run_cloud_demo

        vms = number_option(args, "--vms", int)
        if vms is None or not 1 <= vms <= 16:
            raise UsageError(f"--vms={args['--vms']}: from 1 to 16")
        return run_cloud_demo(vms)
    settings = load_settings(args, check_keys=False)
    clouds = settings.inventory.clouds
    if args["config"]:
        return _config_list(settings, output_format(args))
    if args["list"] or args["refresh"]:
        names = [args["CLOUD"]] if args["CLOUD"] else list(clouds)
        for name in names:
            _known(clouds, name)
        return _list(settings, names, output_format(args), record=bool(args["refresh"]))
    if args["ssh"]:
        return _ssh(settings, _known(clouds, args["--cloud"]) if args["--cloud"] else _only(clouds), args["NAME"],
                    args["COMMAND"])
    action = next(a for a in QUEUED if args[a])
    if action == "boot":
        cloud = _known(clouds, args["CLOUD"])
        count = number_option(args, "--count", int)
        if count is None or count < 1:
            raise UsageError(f"--count={args['--count']}: must be 1 or more")
        vms = _names(args["NAMES"]) if args["NAMES"] else [f"{cloud}-{i}" for i in range(1, count + 1)]
        params = {k: args[f"--{k}"] for k in ("image", "size") if args[f"--{k}"]}
        slots = number_option(args, "--slots", int)
        if slots is None or slots < 1:
            raise UsageError(f"--slots={args['--slots']}: must be 1 or more")
        taken = [n for n in vms if n in settings.inventory.machines]
        if args["--join"] and taken:
            raise UsageError(f"--join: {', '.join(taken)} already name machines of the inventory")
    else:
        cloud = _known(clouds, args["--cloud"]) if args["--cloud"] else _only(clouds)
        vms, params = _names(args["NAMES"]), {}
        if action == "stop":
            grace = number_option(args, "--grace", float)
            if grace is None or grace < 0:
                raise UsageError(f"--grace={args['--grace']}: seconds, 0 or more")
            params["grace"] = grace
        if action == "delete" and not args["--force"]:
            refuse_unfinished(args, [n for n in vms if n in settings.inventory.machines], "delete", label=cloud)
    done = _queued(settings, cloud, vms, action, params)
    if action == "boot" and args["--join"]:
        _join(settings, cloud, done, slots)
    if action == "delete":
        from ..clouds import joined

        left = joined.remove(settings.inventory.path, [r["name"] for r in done])
        if left:
            output.err.print(f"no longer machines: {', '.join(left)}", markup=False, highlight=False)
    return 0


def _known(clouds: dict[str, Any], name: str) -> str:
    if name not in clouds:
        raise UsageError(f"no cloud {name!r} in the inventory (clouds: {', '.join(clouds) or 'none'})")
    return name


def _only(clouds: dict[str, Any]) -> str:
    if len(clouds) != 1:
        raise UsageError(f"which cloud? give --cloud=CLOUD (clouds: {', '.join(clouds) or 'none'})")
    return next(iter(clouds))


def _names(text: str) -> list[str]:
    from ..core.hostlist import HostlistError, expand_list

    try:
        names = expand_list(text)
    except HostlistError as e:
        raise UsageError(f"NAMES: {e}") from None
    if len(set(names)) != len(names):
        raise UsageError(f"NAMES: {text} names a VM twice")
    return names


def _config_list(settings: Any, fmt: str) -> int:
    rows = []
    for cloud in settings.inventory.clouds.values():
        shown = cloud.public()
        if fmt == "json":
            rows.append(shown)
            continue
        rows.append({"name": shown["name"], "type": shown["type"],
                     "credentials": " ".join(f"{k}={v}" for k, v in shown["credentials"].items()),
                     "default": " ".join(f"{k}={v}" for k, v in shown["default"].items())})
    print_rows(rows, ["name", "type", "credentials", "default"], fmt)
    return 0


def _list(settings: Any, names: list[str], fmt: str, record: bool) -> int:
    from ..clouds.cloud import Cloud

    rows: list[dict[str, Any]] = []
    store = None
    if record:
        from ..history import open_store

        store = open_store(settings.history)
    try:
        for name in names:
            with Cloud(name, inventory=settings.inventory) as cloud:
                rows += cloud.refresh(store) if store is not None else cloud.list()
    finally:
        if store is not None:
            store.close()
    if record:
        output.err.print(f"{len(rows)} VM(s) recorded", markup=False, highlight=False)
    print_rows(rows, ["name", "cloud", "state", "ssh", "provider"], fmt)
    return 0


def _ssh(settings: Any, cloud: str, name: str, command: list[str]) -> int:
    """ssh to VM ``name`` of ``cloud`` on its forwarded port, its pinned host key checked."""
    import os

    from ..clouds.cloud import Cloud
    from ..clouds.drivers import CloudError

    with Cloud(cloud, inventory=settings.inventory) as c:
        record = next((r for r in c.list() if r["name"] == name), None)
        if record is None or not record.get("ssh"):
            raise CloudError(f"cloud {cloud}: no VM {name!r} that cmq can reach by ssh")
        user, _, address = record["ssh"].partition("@")
        host, _, port = address.rpartition(":")
        argv = ["ssh", "-o", f"UserKnownHostsFile={c.known_hosts}", "-o", f"HostKeyAlias={name}",
                "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-i", str(c.key), "-p", port,
                "--", f"{user}@{host}"]
    command = command[1:] if command[:1] == ["--"] else command
    if command:
        import shlex

        argv.append(" ".join(shlex.quote(w) for w in command))
    sys.stdout.flush()
    os.execvp("ssh", argv)
    return 0


def _join(settings: Any, cloud: str, records: list[dict[str, Any]], slots: int) -> None:
    """Make the booted VMs machines, and wait until the workers serve them."""
    from ..api.cluster import Cluster
    from ..clouds import joined
    from ..clouds.cloud import Cloud
    from ..core.errors import ServiceError
    from ..fleet.machine_state import read_states

    c = Cloud(cloud, inventory=settings.inventory)
    entries = {r["name"]: joined.machine_entry(r, c.key, c.known_hosts, slots) for r in records if r.get("ssh")}
    joined.add(settings.inventory.path, entries)
    deadline = time.monotonic() + JOIN_WAIT
    with Cluster(settings) as cluster:
        while True:
            states = read_states(cluster.redis, entries)
            if all(states.get(n, {}).get("state") == "consuming" for n in entries):
                break
            if time.monotonic() > deadline:
                late = [n for n in entries if states.get(n, {}).get("state") != "consuming"]
                raise ServiceError(f"joined {', '.join(entries)}, but no worker serves {', '.join(late)} yet "
                                   f"after {JOIN_WAIT:.0f} s: is `cmq up` running? (`cmq machines` shows them)")
            time.sleep(0.2)
    output.err.print(f"joined: {', '.join(entries)} (label {cloud})", markup=False, highlight=False)


def _queued(settings: Any, cloud: str, vms: list[str], action: str,
            params: dict[str, Any]) -> list[dict[str, Any]]:
    """Send one job per VM and wait for them; print a table of the VMs after it; their
    records."""
    from ..api.cluster import Cluster
    from ..clouds import jobs
    from ..core.errors import JobFailedError
    from ..core.models import JobStatus

    jobs.refuse_asked(settings.inventory.clouds[cloud])
    specs = jobs.build(cloud, vms, action, params)
    with Cluster(settings) as c:
        need_a_worker(c)
        c.send_specs(specs)
        records = c.wait([s.id for s in specs])
    done = [r.result.data for r in records if r.state == JobStatus.SUCCEEDED and r.result and r.result.data]
    print_rows(done, ["name", "cloud", "state", "ssh"], "table")
    sys.stdout.flush()
    bad = [r for r in records if r.state != JobStatus.SUCCEEDED]
    if bad:
        output.failures(bad)
        raise JobFailedError(f"{len(bad)} of {len(records)} {action} job(s) failed (`cmq status` shows them)", bad)
    return done


COMMANDS: dict[str, Any] = {"cloud": cmd_cloud}
