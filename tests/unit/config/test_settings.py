"""One resolution of every setting: command line > environment > inventory > recorded > default,
tested a step at a time for the inventory path, the broker and the history store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmqueue.config.settings import resolve
from cmqueue.core import defaults
from cmqueue.core.files import write_private


def inventory(path: Path, **top: str) -> Path:
    lines = [f"{key}: {value}" for key, value in top.items()]
    write_private(path, "\n".join([*lines, "machines:", "  here: {mode: local}", ""]))
    return path


@pytest.fixture
def layers(tmp_path, monkeypatch):
    """A home, an inventory with broker: and history:, and cmq up's record of a broker."""
    for name in ("CMQ_BROKER", "CMQ_HISTORY", "CMQ_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CMQ_HOME", str(home))
    write_private(home / "services.json", json.dumps({"redis": {"url": "redis://:p@127.0.0.1:1/0"}}))
    full = inventory(tmp_path / "full.yaml", broker="redis://:i@127.0.0.1:2/0", history="sqlite:///inv.db")
    bare = inventory(tmp_path / "bare.yaml")
    return full, bare, home


def test_the_broker_comes_from_option_then_environment_then_inventory_then_record(layers, monkeypatch):
    full, bare, home = layers
    monkeypatch.setenv("CMQ_BROKER", "redis://:e@127.0.0.1:3/0")
    s = resolve(str(full), broker="redis://:o@127.0.0.1:4/0")
    assert (s.broker, s.sources["broker"], s.named_broker) == ("redis://:o@127.0.0.1:4/0", "option", s.broker)
    s = resolve(str(bare))
    assert (s.broker, s.sources["broker"], s.named_broker) == ("redis://:e@127.0.0.1:3/0", "environment", s.broker)
    monkeypatch.delenv("CMQ_BROKER")
    s = resolve(str(full))
    assert (s.broker, s.sources["broker"], s.named_broker) == ("redis://:i@127.0.0.1:2/0", "inventory", s.broker)
    s = resolve(str(bare))
    assert (s.broker, s.sources["broker"], s.named_broker) == ("redis://:p@127.0.0.1:1/0", "recorded", None)
    (home / "services.json").unlink()
    s = resolve(str(bare))
    assert (s.broker, s.sources["broker"], s.named_broker) == (None, "default", None)


def test_a_broker_cmq_up_was_told_to_use_is_recorded_above_its_embedded_redis(layers):
    _, bare, home = layers
    write_private(home / "services.json", json.dumps({"redis": {"url": "redis://:p@127.0.0.1:1/0"},
                                                      "broker": {"url": "redis://:t@10.0.0.9:6379/0"}}))
    s = resolve(str(bare))
    assert (s.broker, s.sources["broker"]) == ("redis://:t@10.0.0.9:6379/0", "recorded")


def test_the_history_comes_from_option_then_environment_then_inventory_then_default(layers, monkeypatch):
    full, bare, home = layers
    monkeypatch.setenv("CMQ_HISTORY", "sqlite:///env.db")
    s = resolve(str(full), history="sqlite:///opt.db")
    assert (s.history, s.sources["history"]) == ("sqlite:///opt.db", "option")
    s = resolve(str(full))
    assert (s.history, s.sources["history"]) == ("sqlite:///env.db", "environment")
    monkeypatch.delenv("CMQ_HISTORY")
    s = resolve(str(full))
    assert (s.history, s.sources["history"]) == ("sqlite:///inv.db", "inventory")
    s = resolve(str(bare))
    assert (s.history, s.sources["history"]) == (f"sqlite:///{home / 'history.db'}", "default")


def test_the_inventory_path_comes_from_option_then_environment_then_default(layers, monkeypatch, tmp_path):
    full, bare, _ = layers
    monkeypatch.setenv("CMQ_CONFIG", str(bare))
    s = resolve(str(full))
    assert (s.inventory.path, s.sources["config"]) == (full, "option")
    s = resolve()
    assert (s.inventory.path, s.sources["config"]) == (bare, "environment")
    monkeypatch.delenv("CMQ_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    default = Path(defaults.CONFIG_PATH).expanduser()
    inventory(default.parent.mkdir(parents=True) or default)
    s = resolve()
    assert (s.inventory.path, s.sources["config"]) == (default, "default")


def test_the_global_options_before_the_command_are_read_in_both_spellings():
    from cmqueue.cli.argv import command_word, global_values

    argv = ["-c", "a.yaml", "--broker", "redis://h", "--history=sqlite:///x.db", "--debug", "jobs", "--config=no"]
    assert global_values(argv) == {"--config": "a.yaml", "--broker": "redis://h", "--history": "sqlite:///x.db"}
    assert command_word(["--history", "sqlite:///x.db", "status"]) == "status"
