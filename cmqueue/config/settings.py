"""Settings: where each value comes from, resolved once.

Precedence, highest first (a layer that has no such setting is skipped):

==============  ============  =============  ============  ===============  ===============================
setting         command line  environment    inventory     recorded         default
==============  ============  =============  ============  ===============  ===============================
inventory path  --config      CMQ_CONFIG     --            --               ~/.cloudmesh/cmq.yaml
cmq's home      --            CMQ_HOME       --            --               ~/.cloudmesh/cmq
broker          --broker      CMQ_BROKER     broker:       services.json    none: ``cmq up`` starts Redis
history store   --history     CMQ_HISTORY    history:      --               sqlite:///HOME/history.db
tunables        --            --             settings:     --               :mod:`cmqueue.core.defaults`
==============  ============  =============  ============  ===============  ===============================

"Recorded" is what ``cmq up`` wrote in ``$CMQ_HOME/services.json`` (0600): the embedded Redis
it started, or the broker it was told to use. :func:`resolve` is the one place that applies
this order; :attr:`Settings.sources` says which layer gave each value, and
:attr:`Settings.named_broker` is the broker a user named (never the recorded one), which is
what ``cmq up`` uses instead of starting Redis.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import defaults
from ..core.files import read_json
from .broker import url_of
from .inventory import Inventory, load

#: The layers a setting can come from, highest first (the values of :attr:`Settings.sources`).
LAYERS = ("option", "environment", "inventory", "recorded", "default")


def first(*candidates: tuple[str, Any]) -> tuple[Any, str]:
    """The first ``(layer, value)`` whose value is set, as ``(value, layer)``; ``(None, "default")``
    when none is."""
    for layer, value in candidates:
        if value:
            return value, layer
    return None, "default"


def home_dir() -> Path:
    """cmq's state directory: $CMQ_HOME or ~/.cloudmesh/cmq."""
    return Path(os.environ.get("CMQ_HOME") or defaults.HOME).expanduser()


def config_source(option: str | None = None) -> tuple[Path, str]:
    """The inventory path and the layer it came from: --config, else $CMQ_CONFIG, else
    ~/.cloudmesh/cmq.yaml."""
    value, layer = first(("option", option), ("environment", os.environ.get("CMQ_CONFIG")))
    return Path(value or defaults.CONFIG_PATH).expanduser(), layer


def config_path(option: str | None = None) -> Path:
    """The inventory path: --config, else $CMQ_CONFIG, else ~/.cloudmesh/cmq.yaml."""
    return config_source(option)[0]


@dataclass
class Settings:
    """Everything a command, a worker or the API needs, resolved from all layers."""

    inventory: Inventory
    home: Path
    broker: str | None
    history: str
    tunables: dict[str, Any] = field(default_factory=dict)
    #: The layer each of ``config``, ``broker`` and ``history`` came from (see :data:`LAYERS`).
    sources: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        """A tunable from ``settings:`` in the inventory, else its default constant."""
        if name in self.tunables:
            return self.tunables[name]
        return getattr(defaults, name.upper())

    @property
    def named_broker(self) -> str | None:
        """The broker the user named (command line, environment or inventory); None when
        the broker is the one ``cmq up`` recorded, or there is none yet."""
        return self.broker if self.sources.get("broker") in ("option", "environment", "inventory") else None

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
        from ..core.errors import ServiceError

        if not self.broker:
            raise ServiceError(
                "no broker configured and no embedded Redis recorded: run `cmq up` first "
                f"(or set broker: in {self.inventory.path.name})"
            )
        return self.broker


def recorded_broker(home: Path) -> str | None:
    """The broker ``cmq up`` recorded in ``home``: the one it was told to use while it runs
    with it, else the embedded Redis it started (its URL stays after ``cmq down``)."""
    state = read_json(home / "services.json", default={}) or {}
    return (state.get("broker") or {}).get("url") or (state.get("redis") or {}).get("url")


def resolve(config: str | None = None, broker: str | None = None, check_keys: bool = True,
            history: str | None = None) -> Settings:
    """Load the inventory and resolve every setting by the precedence above (``config``,
    ``broker`` and ``history`` are the command line's values)."""
    path, config_layer = config_source(config)
    inv = load(path, check_keys=check_keys)
    home = home_dir()
    url, broker_layer = first(("option", broker), ("environment", os.environ.get("CMQ_BROKER")))
    if not url and inv.broker:             # read only when used: it may ask for a password
        url, broker_layer = url_of(inv.path, inv.broker), "inventory"
    if not url:
        url, broker_layer = first(("recorded", recorded_broker(home)))
    store, history_layer = first(("option", history), ("environment", os.environ.get("CMQ_HISTORY")),
                                 ("inventory", inv.history))
    return Settings(inventory=inv, home=home, broker=url,
                    history=store or f"sqlite:///{home / 'history.db'}", tunables=dict(inv.settings),
                    sources={"config": config_layer, "broker": broker_layer, "history": history_layer})
