"""The ``clouds:`` section of the inventory: named clouds, each a libcloud compute driver
with its credentials and the defaults a new VM gets, checked when the inventory is read
(errors name the file and the field). Order is kept as written.

```yaml
clouds:
  lab:
    type: libvirt                       # a libcloud compute driver: libvirt, openstack, ec2, gce, ...
    credentials: {uri: "qemu:///session"}
    default: {image: bookworm, size: small, key: ~/.ssh/id_ed25519.pub}
  aws:
    type: ec2
    credentials: {key: AKIA..., secret: TBD, region: eu-west-1}
    default: {image: ami-0123, size: t3.micro, key: cmq}
```

A credential whose value is ``TBD`` is asked for on the terminal, hidden, when the cloud
is opened, and never stored or printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.sections import named_mappings
from ..core.errors import ConfigError

#: The value of a credential that is asked for on the terminal.
ASK = "TBD"
#: Fields of a cloud (``type`` is required).
FIELDS = ("type", "credentials", "default")
#: What a VM gets from ``default`` unless the command says otherwise.
DEFAULT_FIELDS = ("image", "size", "key", "network", "location", "user")
_DRIVER = re.compile(r"^[a-z][a-z0-9_]*$")
_SECRETISH = re.compile(r"secret|password|passwd|token|credential|private", re.I)


@dataclass(frozen=True)
class CloudConfig:
    """One cloud as the inventory names it."""

    name: str
    type: str
    credentials: dict[str, Any] = field(default_factory=dict, repr=False)
    default: dict[str, Any] = field(default_factory=dict)
    source: str = ""                     #: the inventory file, for messages

    @property
    def where(self) -> str:
        """``file: clouds.NAME``, the start of a message about this cloud."""
        return f"{self.source}: clouds.{self.name}"

    def public(self) -> dict[str, Any]:
        """The cloud's settings with its secrets masked (for listings)."""
        return {"name": self.name, "type": self.type,
                "credentials": {k: masked(k, v) for k, v in self.credentials.items()},
                "default": dict(self.default)}


def masked(key: str, value: Any) -> Any:
    """How a credential is shown: ``TBD`` as asked, a secret-looking one as ``***``."""
    if value == ASK:
        return "(asked on the terminal)"
    if _SECRETISH.search(key) or key.lower() in ("key", "secret_key", "access_key"):
        return "***"
    return value


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def parse(data: Any, path: Path) -> dict[str, CloudConfig]:
    """The clouds of an inventory's ``clouds:`` mapping, checked, in the order written."""
    out: dict[str, CloudConfig] = {}
    for name, where, raw in named_mappings(data, path, "clouds", "cloud", "a 'type:' (a libcloud compute driver)"):
        for key in raw:
            if key not in FIELDS:
                raise ConfigError(f"{where}.{key}: unknown field; known: {', '.join(FIELDS)}")
        kind = raw.get("type")
        if not isinstance(kind, str) or not _DRIVER.match(kind.lower()):
            raise ConfigError(f"{where}.type: must name a libcloud compute driver (libvirt, openstack, ec2, "
                              f"gce, ...), got {kind!r}")
        sections = {}
        for section in ("credentials", "default"):
            value = raw.get(section) or {}
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{section}: must be a mapping")
            for key, item in value.items():
                if not _plain(item):
                    raise ConfigError(f"{where}.{section}.{key}: must be a string or a number, got {item!r}")
            sections[section] = {str(k): v for k, v in value.items()}
        for key in sections["default"]:
            if key not in DEFAULT_FIELDS:
                raise ConfigError(f"{where}.default.{key}: unknown field; known: {', '.join(DEFAULT_FIELDS)}")
        out[name] = CloudConfig(name=name, type=kind.lower(), credentials=sections["credentials"],
                                default=sections["default"], source=path.name)
    return out
