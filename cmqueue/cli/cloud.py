"""`cmq cloud`: the clouds of the inventory (libcloud compute drivers)."""

from __future__ import annotations

from typing import Any

from .commands import Args, _settings
from .storage import _output, _rows


def cmd_cloud(args: Args) -> int:
    """The clouds of the inventory: libcloud compute drivers with credentials and defaults.

Usage:
  cmq cloud [options] config list [--output=OUTPUT]

Options:
  --output=OUTPUT    table, json or csv [default: table]

Clouds are named in the inventory's clouds: section, in the order shown:
  clouds:
    lab: {type: libvirt, credentials: {uri: "qemu:///session"}, default: {image: bookworm}}
    aws: {type: ec2, credentials: {key: AKIA..., secret: TBD, region: eu-west-1}}
type is a libcloud compute driver (libvirt, openstack, ec2, gce, ...). A credential TBD
is asked for on the terminal, hidden, when the cloud is opened; secrets are shown
masked. An inventory that holds a secret must be private (0600).

Examples:
  cmq cloud config list
  cmq cloud config list --output=json
"""
    settings = _settings(args, check_keys=False)
    return _config_list(settings, _output(args))


def _config_list(settings: Any, fmt: str) -> int:
    rows = []
    for cloud in settings.inventory.clouds.values():
        shown = cloud.public()
        if fmt == "json":
            rows.append(shown)
            continue
        rows.append({"name": shown["name"], "type": shown["type"],
                     "credentials": " ".join(f"{k}={v}" for k, v in shown["credentials"].items()),
                     "default": " ".join(f"{k}={v}" for k, v in shown["default"].items())})
    _rows(rows, ["name", "type", "credentials", "default"], fmt)
    return 0


COMMANDS: dict[str, Any] = {"cloud": cmd_cloud}
