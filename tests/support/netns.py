"""A network namespace joined to this host by a veth pair: a test machine whose network
link can be cut, as a cable is pulled, without touching any other traffic."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def available() -> bool:
    """Whether namespaces can be made here (root and iproute2)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


class Netns:
    """Namespace ``cmqt-XXXX`` with ``address`` on its end of a veth; the host end has
    ``host_address`` (a /30 between them)."""

    def __init__(self, subnet: int) -> None:
        tag = secrets.token_hex(3)
        self.name = f"cmqt-{tag}"
        self.host_if, self.ns_if = f"cmqh{tag}", f"cmqn{tag}"
        self.host_address = f"10.213.{subnet}.1"
        self.address = f"10.213.{subnet}.2"

    def create(self) -> Netns:
        """Make the namespace and the veth pair, addresses up."""
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_address}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.name, "addr", "add", f"{self.address}/30", "dev", self.ns_if)
        _ip("-n", self.name, "link", "set", self.ns_if, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        return self

    def cut(self) -> None:
        """Bring the namespace's end down: packets to it vanish, connections hang."""
        _ip("-n", self.name, "link", "set", self.ns_if, "down")

    def restore(self) -> None:
        """Bring the link back up."""
        _ip("-n", self.name, "link", "set", self.ns_if, "up")

    def delete(self) -> None:
        """Remove the namespace (its veth end goes with it, and so the pair)."""
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
