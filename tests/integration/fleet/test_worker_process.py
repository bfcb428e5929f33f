"""One worker process drives many machines; several controllers share one fleet through
the machines' leases; machines join a running worker (cmqueue.fleet.worker_process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import redis
import yaml

from tests.conftest import make_env, teardown, wait_for, worker_pid


def _served_by(cenv, machines: list[str], pid: int) -> bool:
    try:
        return all(worker_pid(cenv, m) == pid for m in machines)
    except (TypeError, ValueError):
        return False


def test_one_process_serves_every_machine_with_its_own_slot_cap(tmp_path):
    cenv = make_env(tmp_path, machines=3, slots=2, first=191, settings={"worker_processes": 1})
    try:
        pid = worker_pid(cenv, "m1")
        assert _served_by(cenv, ["m1", "m2", "m3"], pid)
        # 12 jobs of 0.5 s over 3 machines x 2 slots: all three take work, none runs more than 2.
        r = cenv.run("submit", "--wait", "--json",
                     "echo $CMQ_MACHINE $(date +%s.%N); sleep 0.5; echo $(date +%s.%N) # {}", ":::",
                     *map(str, range(12)), check=True)
        spans: dict[str, list[tuple[float, float]]] = {}
        for rec in r.json():
            name, start, end = rec["stdout"].split()
            spans.setdefault(name, []).append((float(start), float(end)))
        assert set(spans) == {"m1", "m2", "m3"}
        for name, runs in spans.items():
            peak = max(sum(1 for s, e in runs if s <= t < e) for t, _ in runs)
            assert peak <= 2, (name, runs)
        # Stopped, it ends its machines' pending polls at once (they would answer only at
        # the polling interval, 5 s) instead of waiting them out.
        broker = redis.Redis.from_url(cenv.redis.url)
        assert [c for c in broker.client_list() if c["name"].startswith("cmq-worker-") and "b" in c["flags"]]
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: _gone(pid), timeout=30, what="the worker to stop")
        assert broker.info("commandstats")["cmdstat_client|unblock"]["calls"] >= 1
    finally:
        teardown(cenv)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_second_controller_takes_over_the_machines_of_one_that_dies(tmp_path):
    cenv = make_env(tmp_path, machines=2, slots=2, first=194, settings={"worker_processes": 1})
    log = open(tmp_path / "controller-b.log", "wb")
    standby = subprocess.Popen([sys.executable, "-m", "cmqueue", "worker", "--machines=m[1-2]", "--name=b"],
                               env=cenv.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        first = worker_pid(cenv, "m1")
        wait_for(lambda: "standing by" in (tmp_path / "controller-b.log").read_text(), timeout=60,
                 what="the second controller to stand by")
        assert _served_by(cenv, ["m1", "m2"], first)      # the first one keeps them meanwhile
        sub = cenv.run("submit", "--json", "sleep 2; echo {}", ":::", *map(str, range(8)), check=True).json()
        wait_for(lambda: any(r["state"] == "running" for r in cenv.run("status", "--json", sub["batch"]).json()),
                 timeout=60, what="jobs running under the first controller")
        os.kill(first, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: _served_by(cenv, ["m1", "m2"], standby.pid), timeout=60,
                 what="the second controller to take both machines over")
        took = time.monotonic() - killed
        # Taken over when the lease runs out (15 s), not by some later sweep: three lease
        # times leave room for a loaded machine's late heartbeats.
        assert took < 3 * 15, took
        done = cenv.run("wait", "--timeout=120", sub["batch"], timeout=180)
        assert done.code == 0, done.out + done.err
        rows = cenv.run("status", "--json", sub["batch"], check=True).json()
        assert {r["state"] for r in rows} == {"succeeded"}, rows
        r = cenv.run("submit", "--wait", "--all", "echo on $CMQ_MACHINE", check=True)
        assert r.out == "m1: on m1\nm2: on m2\n"
    finally:
        standby.kill()
        standby.wait(timeout=30)
        log.close()
        teardown(cenv)


def test_a_machine_added_to_the_inventory_joins_the_running_worker(tmp_path):
    cenv = make_env(tmp_path, machines=3, slots=1, first=197, settings={"worker_processes": 1},
                    machine_fields={"m3": {"enabled": False}})
    try:
        pid = worker_pid(cenv, "m1")
        inv = yaml.safe_load(cenv.config.read_text())
        inv["machines"]["m3"]["enabled"] = True
        cenv.config.write_text(yaml.safe_dump(inv, sort_keys=False))
        wait_for(lambda: _served_by(cenv, ["m3"], pid), timeout=60, what="m3 to join the running worker")
        r = cenv.run("submit", "--wait", "--on=m3", "echo on $CMQ_MACHINE", check=True)
        assert r.out == "on m3\n"
        assert worker_pid(cenv, "m1") == pid
    finally:
        teardown(cenv)


def test_a_machine_taken_out_of_the_inventory_is_let_go_without_waiting_out_its_poll(tmp_path):
    cenv = make_env(tmp_path, machines=3, slots=1, first=231, settings={"worker_processes": 1})
    broker = redis.Redis.from_url(cenv.redis.url)
    try:
        pid = worker_pid(cenv, "m1")
        assert _served_by(cenv, ["m1", "m2", "m3"], pid)
        unblocked = broker.info("commandstats").get("cmdstat_client|unblock", {}).get("calls", 0)
        inv = yaml.safe_load(cenv.config.read_text())
        inv["machines"]["m3"]["enabled"] = False
        cenv.config.write_text(yaml.safe_dump(inv, sort_keys=False))
        log = cenv.home / "logs" / "worker-w1.log"
        wait_for(lambda: "m3: no longer served by this worker" in log.read_text(), timeout=60,
                 what="the worker to let m3 go")
        # Its channel's pending poll was ended (it would answer only at the polling
        # interval), and the other machines' polls, ended with it, went on.
        assert broker.info("commandstats")["cmdstat_client|unblock"]["calls"] > unblocked
        r = cenv.run("submit", "--wait", "--on=m2", "echo on $CMQ_MACHINE", check=True)
        assert r.out == "on m2\n" and worker_pid(cenv, "m1") == pid
    finally:
        broker.close()
        teardown(cenv)

