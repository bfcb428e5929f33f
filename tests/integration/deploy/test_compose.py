"""The compose stack end to end (.ci/compose-e2e): images built offline, the stack up on
a private docker engine, a map with a reduce from a container, from this machine and
through REST, a worker stopped and one killed with their jobs accounted for, and a
`down -v` of at most 3 s that leaves no volume."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, need


@pytest.mark.timeout(1500)
@pytest.mark.slow
def test_the_compose_stack_runs_a_map_survives_a_killed_worker_and_goes_down_quickly():
    if os.environ.get("CMQ_TESTS_CONTAINER"):
        pytest.skip("inside the tests container (docker-compose run tests): the stack needs the host's engine")
    need("root (a private docker engine, debootstrap)", os.geteuid() == 0)
    need("docker.io (dockerd)", shutil.which("dockerd") is not None)
    need("docker-compose", shutil.which("docker-compose") is not None)
    need("debootstrap", shutil.which("debootstrap") is not None)
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "REDIS_PASSWORD")}
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "compose-e2e")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    said = [line for line in proc.stdout.splitlines() if line.startswith(("compose-e2e:", "build-offline:"))]
    assert proc.returncode == 0 and "compose-e2e: passed" in said, "\n".join(said) + "\n" + proc.stderr[-4000:]
    for step in ("map from a container: sum of squares 1..4 = 30", "map from this machine: sum of 2..4 = 9",
                 "map through the REST API: sum of 4 and 5 = 9", "then every job of the batch succeeded"):
        assert any(step in line for line in said), step
