"""The ``storage:`` section of the inventory: named storage services, checked when the
inventory is read (errors name the file and the field).

```yaml
storage:
  box:    {type: local, directory: /srv/data}
  node01: {type: ssh, machine: node01, directory: store}
  s3:     {type: s3, endpoint: http://127.0.0.1:8333, bucket: data, key: AKIA..., secret: TBD}
  blobs:  {type: azure, endpoint: http://127.0.0.1:10000, container: data, key: account, secret_file: ~/.az}
  other:  {type: libcloud, driver: google_storage, container: data, key: ..., secret: ..., args: {project: p}}
```

``secret: TBD`` is asked for on the terminal, hidden, when the service is opened; a
``secret_file`` must be private (0600), as ssh requires of keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config.sections import named_mappings
from ..core.errors import ConfigError

TYPES = ("local", "ssh", "s3", "azure", "libcloud")
#: Fields each type takes (besides ``type``), and those it requires.
FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "local": ({"directory"}, {"directory"}),
    "ssh": ({"machine", "directory"}, {"machine"}),
    "s3": ({"endpoint", "region", "bucket", "key", "secret", "secret_file"}, {"bucket", "key"}),
    "azure": ({"endpoint", "container", "key", "secret", "secret_file"}, {"container", "key"}),
    "libcloud": ({"driver", "container", "key", "secret", "secret_file", "args"}, {"driver", "container"}),
}
#: The value of a secret that is asked for on the terminal.
ASK = "TBD"


@dataclass(frozen=True)
class StorageConfig:
    """One storage service as the inventory names it."""

    name: str
    type: str
    directory: str = ""
    machine: str = ""
    endpoint: str = ""
    region: str = ""
    container: str = ""
    key: str = ""
    secret: str = field(default="", repr=False)
    secret_file: str = ""
    driver: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    source: str = ""                     #: the inventory file, for messages

    @property
    def where(self) -> str:
        """``file: storage.NAME``, the start of a message about this service."""
        return f"{self.source}: storage.{self.name}"

    def public(self) -> dict[str, Any]:
        """The service's settings with its secret masked (for listings)."""
        out = {"name": self.name, "type": self.type}
        for k in ("directory", "machine", "endpoint", "region", "container", "key", "driver", "secret_file"):
            value = getattr(self, k)
            if value:
                out[k] = value
        if self.args:
            out["args"] = {k: ("***" if _secretish(k) else v) for k, v in self.args.items()}
        if self.secret:
            out["secret"] = "(asked on the terminal)" if self.secret == ASK else "***"
        return out


def _secretish(key: str) -> bool:
    return bool(re.search(r"secret|password|token|key", key, re.I))


def parse(data: Any, path: Path, machines: set[str]) -> dict[str, StorageConfig]:
    """The services of an inventory's ``storage:`` mapping, checked."""
    out: dict[str, StorageConfig] = {}
    for name, where, raw in named_mappings(data, path, "storage", "service", "a 'type:'"):
        kind = raw.get("type")
        if kind not in TYPES:
            raise ConfigError(f"{where}.type: must be one of {', '.join(TYPES)}, got {kind!r}")
        allowed, required = FIELDS[kind]
        if kind == "s3":
            allowed = allowed | {"container"}
        for key in raw:
            if key != "type" and key not in allowed:
                raise ConfigError(f"{where}.{key}: unknown field for type {kind}; known: {', '.join(sorted(allowed))}")
        values = dict(raw)
        if kind == "s3":
            values["container"] = values.pop("bucket", values.get("container"))
            required = (required - {"bucket"}) | {"container"}
        for key in sorted(required):
            if values.get(key) in (None, ""):
                shown = "bucket" if kind == "s3" and key == "container" else key
                raise ConfigError(f"{where}.{shown}: required for type {kind}")
        for key, value in values.items():
            if key != "args" and not isinstance(value, (str, int)) or isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: must be a string, got {value!r}")
        if "args" in values and not isinstance(values["args"], dict):
            raise ConfigError(f"{where}.args: must be a mapping of the driver's arguments")
        if kind == "ssh" and values["machine"] not in machines:
            raise ConfigError(f"{where}.machine: {values['machine']!r} is not a machine of this inventory")
        if kind == "s3" and not values.get("endpoint") and not values.get("region"):
            raise ConfigError(f"{where}: give an endpoint (an S3-compatible server) or a region (AWS)")
        if values.get("endpoint"):
            parts = urlsplit(str(values["endpoint"]))
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"{where}.endpoint: must be an http:// or https:// URL, got {values['endpoint']!r}")
        if kind in ("s3", "azure") and not values.get("secret") and not values.get("secret_file"):
            raise ConfigError(f"{where}: give secret (TBD to be asked for it) or secret_file")
        if values.get("secret") and values.get("secret_file"):
            raise ConfigError(f"{where}: give secret or secret_file, not both")
        fields = {k: (v if k == "args" else str(v)) for k, v in values.items() if k != "type"}
        out[name] = StorageConfig(name=name, type=kind, source=path.name, **fields)
    return out
