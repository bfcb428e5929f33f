"""Which queues a machine's worker consumes, and where each kind of target goes (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmqueue.config.inventory import Machine, load
from cmqueue.core.errors import ConfigError
from cmqueue.queue.routing import queue_for_target, worker_queues


def test_host_jobs_go_to_the_host_queue_and_machines_here_take_them():
    assert queue_for_target("storage") == queue_for_target("cloud") == "cmq.host"
    node = Machine(name="n1", host="10.0.0.1", labels=("cpu",))
    assert worker_queues(node) == ["cmq.m.n1", "cmq.l.cpu", "cmq.any", "cmq.host"]


def test_an_agent_and_a_machine_that_says_no_do_not_take_host_jobs():
    agent = Machine(name="a1", host="10.0.0.2", mode="agent")
    vm = Machine(name="vm1", host="127.0.0.1", labels=("lab",), host_jobs=False)
    assert "cmq.host" not in worker_queues(agent)
    assert worker_queues(vm) == ["cmq.m.vm1", "cmq.l.lab", "cmq.any"]


def test_host_jobs_in_the_inventory_is_true_or_false(tmp_path):
    path: Path = tmp_path / "cmq.yaml"
    path.write_text("machines:\n  vm1: {host: 127.0.0.1, host_jobs: false}\n")
    assert load(path, check_keys=False).machines["vm1"].host_jobs is False
    path.write_text("machines:\n  vm1: {host: 127.0.0.1, host_jobs: sometimes}\n")
    with pytest.raises(ConfigError, match="machines.vm1.host_jobs: must be true or false"):
        load(path, check_keys=False)
