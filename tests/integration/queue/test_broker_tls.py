"""The broker on TLS, with real redis-server processes that serve TLS only.

A redis-server with certificates of a private CA: cmq's clients (redis-py, asyncio, kombu,
Flower's broker view) reach it with the CA and a client certificate, and fail with a wrong
CA, without a client certificate or over plain TCP. Then `cmq up --tls` on two loopback
sshd machines: a job runs through the TLS broker, an agent joined with
``broker_access: tls`` gets the CA and a client certificate of its own (0600) and runs jobs
without a tunnel, and the next `cmq up` keeps TLS."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis
import yaml

from cmqueue.cli.demo_machines import LoopbackCluster, random_free_port, wait_port
from cmqueue.core.files import write_private
from cmqueue.fleet.broker_tls import tls_problem
from cmqueue.fleet.local_servers import ping
from cmqueue.fleet.private_ca import Issued, PrivateCA
from cmqueue.queue.broker import celery_settings, connect, connect_async, kombu_connection
from tests.conftest import CmqEnv, need, need_services, teardown, wait_for
from tests.support.redis_server import stop_process


def have_tls_redis() -> bool:
    found = shutil.which("redis-server")
    return bool(found) and not tls_problem(found)


def url_of(password: str, port: int, ca: Path, client: Issued | None, host: str = "127.0.0.1") -> str:
    query = f"ssl_ca_certs={ca}" + (f"&ssl_certfile={client.cert}&ssl_keyfile={client.key}" if client else "")
    return f"rediss://:{password}@{host}:{port}/0?{query}"


class TlsRedis:
    """A redis-server on TLS only (port 0), asking clients for a certificate of ``ca``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = PrivateCA(root)
        self.password = "tls-test-password"
        self.port = random_free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> TlsRedis:
        server = self.ca.server()
        conf = write_private(self.root / "redis.conf", "\n".join([
            "bind 127.0.0.1", "port 0", f"tls-port {self.port}", f"tls-cert-file {server.cert}",
            f"tls-key-file {server.key}", f"tls-ca-cert-file {self.ca.ca_cert}", "tls-auth-clients yes",
            f"requirepass {self.password}", 'save ""', f"dir {self.root}", f"logfile {self.root / 'redis.log'}", ""]))
        self.proc = subprocess.Popen([shutil.which("redis-server"), str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port("127.0.0.1", self.port, proc=self.proc)
        return self

    def url(self, client: str | None = "controller", ca: PrivateCA | None = None) -> str:
        issued = (ca or self.ca).client(client) if client else None
        return url_of(self.password, self.port, (ca or self.ca).ca_cert, issued)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    need_services()
    need("redis-server built with TLS (Debian's)", have_tls_redis())
    server = TlsRedis(tmp_path_factory.mktemp("tls-redis")).start()
    yield server
    server.stop()


@pytest.mark.timeout(60)
def test_clients_reach_it_with_the_ca_and_a_client_certificate(tls_redis):
    client = connect(tls_redis.url())
    try:
        client.set("tls-key", "over tls")
        assert client.get("tls-key") == b"over tls"
    finally:
        client.close()

    async def async_get() -> bytes:
        aclient = connect_async(tls_redis.url())
        try:
            return await aclient.get("tls-key")
        finally:
            await aclient.aclose()

    assert asyncio.run(async_get()) == b"over tls"                 # cmq serve's event stream


@pytest.mark.timeout(60)
def test_the_servers_certificate_is_checked(tls_redis, tmp_path):
    stranger = PrivateCA(tmp_path)
    stranger.ensure()
    wrong_ca = url_of(tls_redis.password, tls_redis.port, stranger.ca_cert, tls_redis.ca.client("controller"))
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        connect(wrong_ca, socket_timeout=5).ping()
    assert "CERTIFICATE_VERIFY_FAILED" in ping(wrong_ca)           # what `cmq up` would report
    # The certificate names 127.0.0.1 and localhost; 127.1 reaches the same server but is
    # not a name it carries.
    assert connect(tls_redis.url().replace("127.0.0.1", "localhost"), socket_timeout=5).ping()
    with pytest.raises(redis.ConnectionError, match="Hostname mismatch"):
        connect(tls_redis.url().replace("127.0.0.1", "127.1"), socket_timeout=5).ping()


@pytest.mark.timeout(60)
def test_the_server_asks_for_a_client_certificate_of_its_ca(tls_redis, tmp_path):
    for url in (tls_redis.url(client=None),                           # no client certificate
                tls_redis.url(ca=PrivateCA(tmp_path)).replace(        # a certificate of another CA
                    str(PrivateCA(tmp_path).ca_cert), str(tls_redis.ca.ca_cert)),
                f"redis://:{tls_redis.password}@127.0.0.1:{tls_redis.port}/0"):   # plain TCP
        with pytest.raises(redis.ConnectionError):
            connect(url, socket_timeout=5, socket_connect_timeout=5).ping()


@pytest.mark.timeout(60)
def test_kombu_and_flowers_broker_view_use_the_tls_settings(tls_redis):
    from flower.utils.broker import Broker

    url = tls_redis.url()
    with kombu_connection(url) as conn:                          # as Celery's workers connect
        queue = conn.SimpleQueue("cmq.tls-test")
        queue.put({"over": "tls"})
        message = queue.get(timeout=10)
        assert message.payload == {"over": "tls"}
        message.ack()
        queue.put({"left": "for flower"})
        queue.close()
    conf = celery_settings(url)
    broker = Broker(conf["broker_url"], broker_options=conf["broker_transport_options"],
                    broker_use_ssl=conf["broker_use_ssl"])
    lengths = asyncio.run(broker.queues(["cmq.tls-test"]))
    assert lengths == [{"name": "cmq.tls-test", "messages": 1}]


# -- cmq up --tls on loopback sshd machines: m1 driven over ssh, m2 an agent on TLS ------------

@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    need_services()
    need("redis-server built with TLS (Debian's)", have_tls_redis())
    root = tmp_path_factory.mktemp("tls-up")
    cluster = LoopbackCluster(root / "cluster", n=2, slots=1, first=253).start()
    flower = random_free_port()
    # The broker listens on m2's address too: the address the agent reaches it on.
    config = cluster.write_inventory(root / "cmq.yaml", None,
                                     settings={"flower_port": flower, "worker_processes": 1,
                                               "broker_bind": cluster.machine("m2").address},
                                     machine_fields={"m2": {"mode": "agent", "broker_access": "tls"}})
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if k != "CMQ_BROKER"}
    cenv = CmqEnv(root=root, config=config, home=home, cluster=cluster, redis=None,
                  env={**env, "CMQ_CONFIG": str(config), "CMQ_HOME": str(home)})
    cenv.flower = flower
    up = cenv.up = cenv.run("up", "--tls", timeout=180)
    if up.code != 0:
        teardown(cenv)
        raise AssertionError(f"cmq up --tls failed:\n{up.out}\n{up.err}")
    yield cenv
    cenv.run("machines", "leave", "m2", timeout=120)
    teardown(cenv)


def recorded(cenv: CmqEnv) -> dict:
    return json.loads((cenv.home / "services.json").read_text())["redis"]


@pytest.mark.timeout(300)
def test_up_tls_serves_tls_only_and_jobs_run_through_it(tls_cluster):
    cenv = tls_cluster
    assert "; TLS, CA " in cenv.up.err and "rediss://:***@127.0.0.1:" in cenv.up.err, cenv.up.err
    rec = recorded(cenv)
    assert rec["tls"] is True and rec["url"].startswith("rediss://")
    conf = (cenv.home / "redis" / "redis.conf").read_text().splitlines()
    assert "port 0" in conf and f"tls-port {rec['port']}" in conf and "tls-auth-clients yes" in conf
    assert f"bind 127.0.0.1 {cenv.cluster.machine('m2').address}" in conf
    tls_dir = cenv.home / "tls"
    assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in tls_dir.rglob("*.key"))
    # Plain TCP is refused on the broker's port.
    with pytest.raises(redis.ConnectionError):
        connect(f"redis://:{rec['password']}@127.0.0.1:{rec['port']}/0", socket_timeout=5).ping()
    r = cenv.run("submit", "--wait", "--on=m1", "echo over tls on $CMQ_MACHINE", timeout=120)
    assert r.code == 0 and r.out == "over tls on m1\n", r.err
    # Flower was handed the TLS settings (through the environment, not its command line).
    auth = cenv.run("flower", "--show-login", check=True).out.strip()
    out = subprocess.run(["curl", "-s", "-u", auth, f"http://127.0.0.1:{cenv.flower}/api/queues/length"],
                         capture_output=True, text=True, timeout=60).stdout
    assert "active_queues" in json.loads(out), out
    flower = json.loads((cenv.home / "services.json").read_text())["flower"]
    assert rec["password"] not in " ".join(psutil.Process(flower["pid"]).cmdline())
    # The TLS Redis cannot be switched off while it runs.
    r = cenv.run("up", "--no-tls", timeout=60)
    assert r.code == 3 and "runs with TLS; stop it with `cmq down`" in r.err, r.err


def agent_workers(agent_dir: Path) -> list[psutil.Process]:
    config = str(agent_dir / "cmq.yaml")
    return [p for p in psutil.process_iter(["cmdline"]) if config in (p.info["cmdline"] or [])
            and "worker" in p.info["cmdline"]]


@pytest.mark.timeout(900)
def test_an_agent_joined_with_tls_runs_jobs_without_a_tunnel(tls_cluster):
    cenv = tls_cluster
    m2 = cenv.cluster.machine("m2")
    agent_dir = cenv.workdir("m2") / ".cmq" / "agent"
    r = cenv.run("machines", "join", "m2", timeout=900)
    assert r.code == 0, r.err
    rec = recorded(cenv)
    assert f"broker on TLS at {m2.address}:{rec['port']}" in r.err, r.err
    services = json.loads((cenv.home / "services.json").read_text())
    assert "m2" not in (services.get("tunnels") or {})
    assert services["agents"]["m2"]["access"] == "tls"
    # Its config names the broker at m2's address with the files sent next to it: 0600 in 0700.
    config = yaml.safe_load((agent_dir / "cmq.yaml").read_text())
    assert config["broker"]["url"].startswith(f"rediss://:{rec['password']}@{m2.address}:{rec['port']}/")
    assert config["broker"]["tls"] == {"ca": "tls/ca.pem", "cert": "tls/client.pem", "key": "tls/client.key"}
    assert stat.S_IMODE((agent_dir / "tls").stat().st_mode) == 0o700
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in (agent_dir / "tls").iterdir()} == {
        "ca.pem": 0o600, "client.pem": 0o600, "client.key": 0o600}
    assert (agent_dir / "tls" / "ca.pem").read_bytes() == (cenv.home / "tls" / "ca.pem").read_bytes()
    assert (agent_dir / "tls" / "client.key").read_bytes() == (
        cenv.home / "tls" / "clients" / "agent-m2.key").read_bytes()
    (worker,) = wait_for(lambda: agent_workers(agent_dir), timeout=30, what="the agent's worker")
    assert any(c.raddr and (c.raddr.ip, c.raddr.port) == (m2.address, rec["port"])
               for c in worker.net_connections(kind="tcp"))
    assert rec["password"] not in " ".join(worker.cmdline())

    r = cenv.run("submit", "--wait", "--on=m2", "echo agent on $CMQ_MACHINE over tls", timeout=120)
    assert r.code == 0 and r.out == "agent on m2 over tls\n", r.err

    # `cmq down` and a `cmq up` without --tls: TLS is kept (the recorded one), the agent is
    # told to need no tunnel, reconnects, and runs jobs again.
    assert cenv.run("down", "--grace=2", timeout=60).code == 0
    up = cenv.run("up", timeout=180)
    assert up.code == 0 and "kept from `cmq up --tls`" in up.err, up.err
    assert f"agent m2: reaches the broker on TLS at {m2.address}:{rec['port']}" in up.err, up.err
    r = cenv.run("submit", "--wait", "--on=m2", "echo back on $CMQ_MACHINE", timeout=180)
    assert r.code == 0 and r.out == "back on m2\n", r.err

    r = cenv.run("machines", "leave", "m2", timeout=120)
    assert r.code == 0, r.err
    wait_for(lambda: not agent_workers(agent_dir), timeout=30, what="the agent's worker to stop")
    assert not (agent_dir / "tls").exists() and not (agent_dir / "cmq.yaml").exists()


@pytest.mark.timeout(60)
def test_tls_access_needs_the_tls_broker_and_an_address_the_agent_reaches(tmp_path):
    """Refusals come before anything is sent: a plain embedded Redis, and a broker on
    loopback for an agent elsewhere."""
    need_services()
    from cmqueue.config.settings import resolve
    from cmqueue.core.errors import ConfigError
    from cmqueue.fleet.broker_tls import check_reachable

    inv = tmp_path / "cmq.yaml"
    write_private(inv, yaml.safe_dump({"machines": {"far": {"mode": "agent", "host": "10.9.8.7",
                                                            "broker_access": "tls"}}}))
    settings = resolve(str(inv))
    with pytest.raises(ConfigError, match="settings: broker_bind"):
        check_reachable(settings, "10.9.8.7", "far")
    assert check_reachable(settings, "127.0.0.9", "near") == "127.0.0.1"
    # A plain Redis does not listen beyond loopback.
    write_private(inv, yaml.safe_dump({"settings": {"broker_bind": "10.9.8.1"}, "machines": {}}))
    r = subprocess.run([sys.executable, "-m", "cmqueue", "--config", str(inv), "procfile"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "CMQ_HOME": str(tmp_path / "home")})
    assert r.returncode == 2 and "would let the network reach the broker without TLS" in r.stderr, r.stderr
