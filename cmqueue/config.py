"""Settings: where each value comes from, resolved once.

Precedence, highest first:

1. command line options (``--config``, ``--broker``),
2. environment variables (``CMQ_CONFIG``, ``CMQ_HOME``, ``CMQ_BROKER``, ``CMQ_HISTORY``),
3. the inventory file (``broker:``, ``history:``, ``settings:``),
4. the embedded Redis that ``cmq up`` started and recorded in ``$CMQ_HOME/services.json``
   (broker only),
5. the constants in :mod:`cmqueue.defaults`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import defaults
from .files import read_json
from .inventory import Inventory, load


def home_dir() -> Path:
    """cmq's state directory: $CMQ_HOME or ~/.cloudmesh/cmq."""
    return Path(os.environ.get("CMQ_HOME") or defaults.HOME).expanduser()


def config_path(option: str | None = None) -> Path:
    """The inventory path: --config, else $CMQ_CONFIG, else ~/.cloudmesh/cmq.yaml."""
    return Path(option or os.environ.get("CMQ_CONFIG") or defaults.CONFIG_PATH).expanduser()


@dataclass
class Settings:
    """Everything a command, a worker or the API needs, resolved from all layers."""

    inventory: Inventory
    home: Path
    broker: str | None
    history: str
    tunables: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        """A tunable from ``settings:`` in the inventory, else its default constant."""
        if name in self.tunables:
            return self.tunables[name]
        return getattr(defaults, name.upper())

    @property
    def state_file(self) -> Path:
        """Where ``cmq up`` records the services it started (0600: holds the password)."""
        return self.home / "services.json"

    @property
    def log_dir(self) -> Path:
        """Directory of the worker's job logs and service logs."""
        return self.home / "logs"

    def require_broker(self) -> str:
        """The broker URL, or a ServiceError that says to run ``cmq up``."""
        from .errors import ServiceError

        if not self.broker:
            raise ServiceError(
                "no broker configured and no embedded Redis recorded: run `cmq up` first "
                f"(or set broker: in {self.inventory.path.name})"
            )
        return self.broker


def embedded_broker(home: Path) -> str | None:
    """The URL of the embedded Redis recorded by ``cmq up``, if any."""
    state = read_json(home / "services.json", default={}) or {}
    return (state.get("redis") or {}).get("url")


def resolve(config: str | None = None, broker: str | None = None, check_keys: bool = True) -> Settings:
    """Load the inventory and resolve every setting by the precedence above."""
    inv = load(config_path(config), check_keys=check_keys)
    home = home_dir()
    url = broker or os.environ.get("CMQ_BROKER") or inv.broker or embedded_broker(home)
    history = os.environ.get("CMQ_HISTORY") or inv.history or f"sqlite:///{home / 'history.db'}"
    return Settings(inventory=inv, home=home, broker=url, history=history, tunables=dict(inv.settings))
