"""`cmq up --ha`: a Sentinel group on loopback to try a failover on one machine, followed by
every command; `cmq down` stops exactly it; a named group is used, never started."""

from __future__ import annotations

import json
import os
import signal
import stat

import psutil
import pytest
import redis

from tests.conftest import wait_for
from tests.integration.fleet.test_services import cmq, local_setup  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(300)


def _members(home) -> dict:
    return json.loads((home / "services.json").read_text())["redis"]


def test_up_ha_starts_a_group_that_survives_losing_its_primary(local_setup):  # noqa: F811
    env, tmp = local_setup
    up = cmq(env, "up", "--ha")
    assert up.returncode == 0, up.stderr
    rec = _members(tmp / "home")
    assert rec["ha"] and set(rec["members"]) == {"primary", "replica", "sentinel-1", "sentinel-2", "sentinel-3"}
    assert rec["password"] not in up.stderr + up.stdout
    assert f"primary 127.0.0.1:{rec['ports']['primary']}" in up.stderr
    for name, member in rec["members"].items():
        proc = psutil.Process(member["pid"])
        assert {c.laddr.ip for c in proc.net_connections(kind="inet") if c.status == "LISTEN"} == {"127.0.0.1"}
        conf = tmp / "home" / "redis-ha" / name / ("sentinel.conf" if "sentinel" in name else "redis.conf")
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600                    # it holds the password
        with pytest.raises(redis.AuthenticationError):                        # a password on each
            redis.Redis(port=member["port"], socket_timeout=5).ping()
    first = cmq(env, "submit", "--wait", "--on=here1", "echo before")
    assert first.returncode == 0 and first.stdout == "before\n", first.stderr

    os.kill(rec["members"]["primary"]["pid"], signal.SIGKILL)
    replica = f"primary 127.0.0.1:{rec['ports']['replica']}"
    wait_for(lambda: replica in cmq(env, "ps").stderr, timeout=60, what="the replica promoted")
    after = cmq(env, "submit", "--wait", "--on=here2", "echo after")
    assert after.returncode == 0 and after.stdout == "after\n", after.stderr

    down = cmq(env, "down", "--grace=2")
    assert down.returncode == 0
    assert not any(psutil.pid_exists(m["pid"]) and psutil.Process(m["pid"]).status() != psutil.STATUS_ZOMBIE
                   for m in rec["members"].values())
    again = cmq(env, "up")                                  # the recorded group, not a new Redis
    assert again.returncode == 0, again.stderr
    assert _members(tmp / "home")["ports"] == rec["ports"] and replica in again.stderr
    back = cmq(env, "submit", "--wait", "--on=here1", "echo back")
    assert back.returncode == 0 and back.stdout == "back\n", back.stderr


def test_up_ha_with_a_named_broker_is_a_usage_error(local_setup):  # noqa: F811
    env, _ = local_setup
    r = cmq(env, "up", "--ha", "--broker=redis://:pw@127.0.0.1:1/0")
    assert r.returncode == 2 and "--ha starts an embedded group, but a broker is named (--broker)" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_named_group_that_does_not_answer_is_reported_and_nothing_is_started(local_setup):  # noqa: F811
    env, tmp = local_setup
    config = tmp / "cmq.yaml"
    config.write_text(config.read_text() + "broker: {sentinels: ['127.0.0.1:1', '127.0.0.1:2'], master: cmq}\n")
    r = cmq(env, "up")
    assert r.returncode != 0 and "broker sentinel://127.0.0.1:1,127.0.0.1:2/0?master=cmq does not answer" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp / "home" / "redis-ha").exists() and not (tmp / "home" / "redis").exists()
