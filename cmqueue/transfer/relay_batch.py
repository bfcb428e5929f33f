"""A relayed put: the machines' jobs of one batch share one relay.

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
import threading
import time
from pathlib import Path
from typing import Any

from ..config.inventory import Machine
from ..queue.progress import ProgressReporter
from .machine_copy import Transfer, TransferResult
from .relay import CopyOutcome, Relay

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


def _key(batch: str, what: str) -> str:
    return f"cmq:relay:{batch}:{what}"


def put(transfer: Transfer, client: Any, batch: str, relay: dict[str, Any], machines: dict[str, Machine],
        src: Path, dst: str, progress: ProgressReporter, *, connect_timeout: int, stall: float) -> TransferResult:
    """:meth:`Transfer.put` of ``src`` to this machine, relayed with the batch's other
    machines along ``relay`` ({"feeders": {machine: feeder}, "jobs": {machine: job id}})."""
    name = transfer.machine.name
    src = Path(src)
    target = transfer.target_of(src, dst)
    t0 = time.monotonic()
    leader = bool(client.eval(_LEAD, 2, _key(batch, "lead"), _key(batch, "alive"), name, ALIVE_TTL, KEYS_TTL))
    if leader:
        outcome = _lead(client, batch, relay, machines, src, dst, connect_timeout, stall).get(name)
    else:
        outcome = _wait(client, batch, name)
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


def _lead(client: Any, batch: str, relay: dict[str, Any], machines: dict[str, Machine], src: Path,
          dst: str, connect_timeout: int, stall: float) -> dict[str, CopyOutcome]:
    """Run the batch's relay and publish every machine's outcome."""
    feeders: dict[str, str] = relay["feeders"]
    jobs: dict[str, str] = relay.get("jobs", {})
    size = src.stat().st_size
    targets = {m: (machines[m], Transfer(machines[m]).target_of(src, dst)) for m in feeders if m in machines}
    reporters = {m: ProgressReporter(client, job, size) for m, job in jobs.items()}

    def on_progress(machine: str, have: int, feeder: str) -> None:
        r = reporters.get(machine)
        if r is not None:
            r.via = feeder
            r(have)

    stop = threading.Event()
    keeper = threading.Thread(target=_keep_alive, args=(client, batch, stop), name="cmq-relay-lead", daemon=True)
    keeper.start()
    outcomes: dict[str, CopyOutcome] = {}
    try:
        outcomes = Relay(src, targets, feeders, on_progress=on_progress, connect_timeout=connect_timeout,
                         stall=stall).run()
    finally:
        missing = {m: CopyOutcome(machine=m, error="not in this worker's inventory") for m in feeders
                   if m not in outcomes}
        outcomes.update(missing)
        pipe = client.pipeline(transaction=False)
        for m, o in outcomes.items():
            pipe.rpush(_key(batch, f"out:{m}"), json.dumps(o.to_dict()))
            pipe.expire(_key(batch, f"out:{m}"), KEYS_TTL)
        pipe.delete(_key(batch, "alive"))
        pipe.execute()
        stop.set()
        keeper.join(ALIVE_TTL)
        for r in reporters.values():
            r.close()
    return outcomes


def _keep_alive(client: Any, batch: str, stop: threading.Event) -> None:
    while not stop.wait(ALIVE_TTL / 3):
        try:
            client.expire(_key(batch, "alive"), ALIVE_TTL)
        except Exception as e:  # noqa: BLE001 - the broker may be away a moment; the next renewal may reach it
            log.warning("relay: cannot renew the leader's key: %s", e)


def _wait(client: Any, batch: str, name: str) -> CopyOutcome | None:
    """This machine's outcome, once the leader writes it; None when the leader is gone
    without writing it."""
    key = _key(batch, f"out:{name}")
    while True:
        got = client.blmove(key, key, LOOK_EVERY, "LEFT", "RIGHT")   # read, and leave it for a retry
        if got is None and not client.exists(_key(batch, "alive")):
            got = client.lindex(key, 0)       # it may have come just before the key went
            if got is None:
                return None
        if got is not None:
            return CopyOutcome.from_dict(json.loads(got))

