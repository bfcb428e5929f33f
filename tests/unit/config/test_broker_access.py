"""The inventory's fields for TLS to the broker: an agent's ``broker_access`` and
``settings: broker_bind``, each error naming the field."""

from pathlib import Path

import pytest

from cmqueue.config.inventory import parse
from cmqueue.core.errors import ConfigError

P = Path("cmq.yaml")


def test_broker_access_is_a_tunnel_unless_an_agent_says_tls():
    inv = parse("""
defaults: {broker_access: tunnel}
machines:
  a1: {mode: agent, broker_access: tls}
  a2: {mode: agent}
  n1: {host: 10.0.0.1}
""", P)
    assert [inv.machine(n).broker_access for n in ("a1", "a2", "n1")] == ["tls", "tunnel", "tunnel"]
    assert inv.machine("a1").to_dict()["broker_access"] == "tls"


@pytest.mark.parametrize("text, message", [
    ("machines: {a1: {mode: agent, broker_access: ssl}}",
     "cmq.yaml: machines.a1.broker_access: must be one of tunnel, tls, got 'ssl'"),
    ("machines: {n1: {broker_access: tls}}",
     "cmq.yaml: machines.n1.broker_access: only an agent (mode: agent) reaches the broker itself"),
    ("settings: {broker_bind: 0.0.0.0}\nmachines: {}",
     "cmq.yaml: settings.broker_bind: 0.0.0.0 listens everywhere"),
    ("settings: {broker_bind: broker.example}\nmachines: {}",
     "cmq.yaml: settings.broker_bind: must be an IP address of this host"),
])
def test_bad_values_name_the_field(text, message):
    with pytest.raises(ConfigError) as e:
        parse(text, P)
    assert str(e.value).startswith(message), str(e.value)


def test_broker_bind_takes_an_address():
    assert parse("settings: {broker_bind: 10.0.0.5}\nmachines: {}", P).settings["broker_bind"] == "10.0.0.5"
    assert parse("settings: {broker_bind: '::1'}\nmachines: {}", P).settings["broker_bind"] == "::1"
