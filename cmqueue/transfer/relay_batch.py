"""Relays run by jobs: the machines' jobs of one batch share one relay (for a put, and
for a job input that several machines need at once).

`cmq put --relay=chain FILE 'm[1-8]:in/'` sends one transfer job per machine, as without
relays, so that each copy has its record, its progress and its retries. The first of the
batch's jobs to start leads: it runs the relay (:mod:`cmqueue.transfer.relay`) to every
machine of the plan, writes each machine's outcome and progress (with its feeder) to the
broker, and keeps a short-lived key alive while it runs. Every other job of the batch
waits for its own machine's outcome and reports it. A copy the relay could not verify is
copied directly by its own job, over the controller's link; so are the copies still
waiting when the leader's process dies (its key expires) and a lead job run again.
"""

from __future__ import annotations

import json
import logging
import posixpath
import threading
import time
from pathlib import Path
from typing import Any

from ..config.inventory import Machine
from ..core import defaults
from ..queue.progress import ProgressReporter
from . import relay_plan
from .machine_copy import Transfer, TransferResult
from .relay import CopyOutcome, Relay
from .staging import cache_dir

log = logging.getLogger("cmq.transfer")

#: Seconds the leader's key lives without being renewed (it renews it every third).
ALIVE_TTL = 15
#: Seconds the batch's keys stay in the broker.
KEYS_TTL = 24 * 3600
#: Seconds between two looks at the leader while a job waits for its outcome.
LOOK_EVERY = 5

# Become the batch's leader once (KEYS[1], for a day) and mark it alive (KEYS[2]).
_LEAD = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then
  redis.call('set', KEYS[2], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""


def _key(base: str, what: str) -> str:
    return f"{base}:{what}"


def put(transfer: Transfer, client: Any, batch: str, relay: dict[str, Any], machines: dict[str, Machine],
        src: Path, dst: str, progress: ProgressReporter, *, connect_timeout: int, stall: float) -> TransferResult:
    """:meth:`Transfer.put` of ``src`` to this machine, relayed with the batch's other
    machines along ``relay`` ({"feeders": {machine: feeder}, "jobs": {machine: job id}})."""
    name = transfer.machine.name
    src = Path(src)
    target = transfer.target_of(src, dst)
    t0 = time.monotonic()
    base = f"cmq:relay:{batch}"
    try:
        if _elect(client, base, name):
            feeders: dict[str, str] = relay["feeders"]
            targets = {m: (machines[m], Transfer(machines[m]).target_of(src, dst)) for m in feeders if m in machines}
            outcome = lead(client, base, feeders, targets, src, connect_timeout=connect_timeout, stall=stall,
                           jobs=relay.get("jobs", {})).get(name)
        else:
            outcome = wait(client, base, name)
    except Exception as e:  # noqa: BLE001 - the broker away, a bug: the copy goes directly all the same
        log.warning("%s: the relay of %s failed: %s", name, src, e)
        outcome = CopyOutcome(machine=name, error=f"{type(e).__name__}: {e}")
    if outcome is not None and outcome.ok and outcome.shared_with:
        progress(outcome.bytes)
        return TransferResult(machine=name, direction="put", source=str(src), dest=target, bytes=outcome.bytes,
                              files=1, seconds=time.monotonic() - t0, method=f"shared with {outcome.shared_with}",
                              verified=f"sha256 on {outcome.shared_with} (the same disk)")
    if outcome is not None and outcome.ok:
        progress.via = outcome.fed_by
        progress(outcome.bytes)
        return TransferResult(machine=name, direction="put", source=str(src), dest=target, bytes=outcome.bytes,
                              files=1, seconds=time.monotonic() - t0, method="relay",
                              verified="sha256 on the machine", fed_by=outcome.fed_by)
    why = outcome.error if outcome is not None else "the relay's leader went away"
    log.warning("%s: relayed copy of %s failed (%s): copying it directly", name, src, why)
    progress.via = "controller"
    moved = transfer.put(src, dst, progress=progress)
    moved.fed_by, moved.note = "controller", f"relay failed: {why}"
    return moved


def _elect(client: Any, base: str, name: str) -> bool:
    """Whether ``name`` is the first to lead ``base`` (then its key is alive)."""
    return bool(client.eval(_LEAD, 2, _key(base, "lead"), _key(base, "alive"), name, ALIVE_TTL, KEYS_TTL))


def lead(client: Any, base: str, feeders: dict[str, str], targets: dict[str, tuple[Machine, str]], src: Path, *,
         connect_timeout: int, stall: float, jobs: dict[str, str] | None = None,
         readonly: bool = False, sha256: str | None = None) -> dict[str, CopyOutcome]:
    """Run the relay of ``src`` to ``targets`` ({machine: (machine, path there)}) along
    ``feeders`` and publish every machine's outcome under ``base``; ``jobs`` ({machine: job
    id}) get the machines' progress; ``sha256`` is what every copy must be (default: the
    source's now)."""
    size = src.stat().st_size
    reporters = {m: ProgressReporter(client, job, size) for m, job in (jobs or {}).items()}

    def on_progress(machine: str, have: int, feeder: str) -> None:
        r = reporters.get(machine)
        if r is not None:
            r.via = feeder
            r(have)

    stop = threading.Event()
    keeper = threading.Thread(target=_keep_alive, args=(client, base, stop), name="cmq-relay-lead", daemon=True)
    keeper.start()
    outcomes: dict[str, CopyOutcome] = {}
    try:
        outcomes = Relay(src, targets, feeders, on_progress=on_progress, connect_timeout=connect_timeout,
                         stall=stall, readonly=readonly, sha256=sha256).run()
    except Exception as e:  # noqa: BLE001 - every machine hears why, and copies directly
        log.exception("relay of %s failed", src)
        outcomes = {m: CopyOutcome(machine=m, error=f"the relay failed: {type(e).__name__}: {e}") for m in feeders}
    finally:
        stop.set()                       # first: a publish that fails must not keep the lead alive
        keeper.join(ALIVE_TTL)
        outcomes.update({m: CopyOutcome(machine=m, error="not in this worker's inventory") for m in feeders
                         if m not in outcomes})
        try:
            publish(client, base, outcomes)
        except Exception as e:  # noqa: BLE001 - the waiting jobs see the lead gone and copy directly
            log.warning("relay: cannot publish the outcomes of %s: %s", src, e)
        for r in reporters.values():
            r.close()
    return outcomes


def publish(client: Any, base: str, outcomes: dict[str, CopyOutcome]) -> None:
    """Write each machine's outcome for the jobs that wait for it; the lead is over."""
    pipe = client.pipeline(transaction=False)
    for m, o in outcomes.items():
        pipe.rpush(_key(base, f"out:{m}"), json.dumps(o.to_dict()))
        pipe.expire(_key(base, f"out:{m}"), KEYS_TTL)
    pipe.delete(_key(base, "alive"))
    pipe.execute()


def _keep_alive(client: Any, base: str, stop: threading.Event) -> None:
    while not stop.wait(ALIVE_TTL / 3):
        try:
            client.expire(_key(base, "alive"), ALIVE_TTL)
        except Exception as e:  # noqa: BLE001 - the broker may be away a moment; the next renewal may reach it
            log.warning("relay: cannot renew the leader's key: %s", e)


def wait(client: Any, base: str, name: str) -> CopyOutcome | None:
    """Machine ``name``'s outcome, once the leader writes it; None when the leader is gone
    without writing it."""
    key = _key(base, f"out:{name}")
    while True:
        got = client.blmove(key, key, LOOK_EVERY, "LEFT", "RIGHT")   # read, and leave it for a retry
        if got is None and not client.exists(_key(base, "alive")):
            got = client.lindex(key, 0)       # it may have come just before the key went
            if got is None:
                return None
        if got is not None:
            return CopyOutcome.from_dict(json.loads(got))


# Join the relay of one input (KEYS: closed, members, bell) as machine ARGV[1]: -1 when
# it is over, 0 when this machine is in it already (another job of it joined), else 1.
_JOIN = """
if redis.call('exists', KEYS[1]) == 1 then return -1 end
if redis.call('sismember', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('sadd', KEYS[2], ARGV[1])
redis.call('expire', KEYS[2], ARGV[2])
redis.call('rpush', KEYS[3], ARGV[1])
redis.call('expire', KEYS[3], ARGV[2])
return 1
"""
# Close the relay of one input to more machines (KEYS: closed, members): its members.
_CLOSE = """
redis.call('set', KEYS[1], '1', 'EX', ARGV[1])
return redis.call('smembers', KEYS[2])
"""


def stage_input(transfer: Transfer, client: Any, batch: str, sha: str, local: Path, cached: str, sharing: int,
                machines: dict[str, Machine], *, connect_timeout: int, stall: float,
                gather: float = defaults.RELAY_GATHER) -> CopyOutcome | None:
    """Relay input ``sha`` (the local file ``local``) into the input caches of the
    machines whose jobs of ``batch`` need it now: this machine's copy lands at ``cached``.
    ``sharing`` machines (jobs, where the batch's jobs are not pinned) use the input. The
    first machine to ask leads: it waits up to ``gather`` seconds for the others (no
    longer once as many machines as could need it asked), then relays to them. Every copy
    must have the SHA-256 ``sha`` (what the file was at submit). None when this machine
    missed the relay or it failed (the input is copied as before)."""
    try:
        return _stage_input(transfer, client, batch, sha, local, cached, sharing, machines,
                            connect_timeout=connect_timeout, stall=stall, gather=gather)
    except Exception as e:  # noqa: BLE001 - the broker away, a bug: the input is copied directly all the same
        log.warning("%s: the relay of input %s failed: %s", transfer.machine.name, local, e)
        return None


def _stage_input(transfer: Transfer, client: Any, batch: str, sha: str, local: Path, cached: str, sharing: int,
                 machines: dict[str, Machine], *, connect_timeout: int, stall: float,
                 gather: float) -> CopyOutcome | None:
    name = transfer.machine.name
    base = f"cmq:relay:{batch}:{sha[:16]}"
    keys = (_key(base, "closed"), _key(base, "members"), _key(base, "bell"))
    joined = int(client.eval(_JOIN, 3, *keys, name, KEYS_TTL))
    if joined == -1:
        return None
    if joined == 0 or not _elect(client, base, name):
        return wait(client, base, name)
    reachable = [m for m in machines.values() if m.enabled and m.mode == "ssh"]
    expected = min(sharing, len(reachable))
    deadline = time.monotonic() + gather
    while int(client.scard(keys[1])) < expected and (left := deadline - time.monotonic()) > 0:
        client.blpop(keys[2], timeout=left)
    members = {m.decode() if isinstance(m, bytes) else m for m in client.eval(_CLOSE, 2, *keys[:2], KEYS_TTL)}
    order = [m for m in machines if m in members]
    if len(order) < 2:                    # no one else needs it now: no relay to run
        publish(client, base, {m: CopyOutcome(machine=m, error="no other machine needed it") for m in order})
        return None
    feeders = relay_plan.plan(order, "chain", {m: machines[m].zone for m in order})
    targets = {m: (machines[m], cached if m == name else posixpath.join(cache_dir(machines[m]), sha))
               for m in order}
    return lead(client, base, feeders, targets, local, connect_timeout=connect_timeout, stall=stall,
                readonly=True, sha256=sha).get(name)

