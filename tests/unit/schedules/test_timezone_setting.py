"""The time zone of schedules is a setting of the inventory, resolved once with the others."""

from __future__ import annotations

import pytest

from cmqueue.config.settings import resolve
from cmqueue.core.errors import ConfigError


def _inventory(tmp_path, settings: str) -> str:
    path = tmp_path / "cmq.yaml"
    path.write_text(f"machines:\n  local1:\n    mode: local\n{settings}")
    path.chmod(0o600)
    return str(path)


def test_utc_by_default_and_an_iana_name_when_set(tmp_path, monkeypatch):
    monkeypatch.setenv("CMQ_HOME", str(tmp_path / "home"))
    assert resolve(_inventory(tmp_path, "")).get("schedule_timezone") == "UTC"
    berlin = _inventory(tmp_path, "settings:\n  schedule_timezone: Europe/Berlin\n")
    assert resolve(berlin).get("schedule_timezone") == "Europe/Berlin"


@pytest.mark.parametrize("value", ["Mars/Base", "3"])
def test_an_unknown_zone_names_the_setting(tmp_path, monkeypatch, value):
    monkeypatch.setenv("CMQ_HOME", str(tmp_path / "home"))
    with pytest.raises(ConfigError, match="settings.schedule_timezone: must be an IANA time zone") as e:
        resolve(_inventory(tmp_path, f"settings:\n  schedule_timezone: {value}\n"))
    assert e.value.exit_code == 2
