"""``with Cloud("lab") as c: ...``: a cloud of the inventory, its driver opened for the
block and closed after it; its VMs as records, and the actions of the seed on them.

```python
from cmqueue import Cloud
with Cloud("lab") as c:
    vm = c.boot("vm1")                      # a new VM, its ssh host key pinned
    c.machine("vm1", "suspend")             # start | stop | suspend | resume | reboot | delete
    c.machines(["vm2", "vm3"], "resume")    # in parallel
    print(c.list())                         # every VM of the cloud, as records
```

Any libcloud compute driver is opened by its name (``type``) with the cloud's
credentials; ``libvirt`` gets what libcloud lacks: cmq defines the domain of a new VM
(:mod:`cmqueue.clouds.domain`), undefines it on delete, and reads libvirt's own state
(libcloud calls a paused domain "terminated").
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..core.errors import CmqError, UsageError
from .config import CloudConfig

#: What can be done to a VM (``boot`` makes a new one).
from .drivers import CloudError, compute_driver, first_line, unavailable

ACTIONS = ("boot", "start", "stop", "suspend", "resume", "reboot", "delete")
#: Seconds a libvirt VM has to shut down on its power button before it is powered off.
STOP_GRACE = 30.0
#: Listings tried when VMs go away while they are listed (other jobs deleting them).
LIST_TRIES = 5
#: libvirt's domain states in cmq's words.
LIBVIRT_STATES = {0: "unknown", 1: "running", 2: "running", 3: "suspended", 4: "stopping", 5: "stopped",
                  6: "crashed", 7: "suspended"}
_KEY_LOCK = threading.Lock()


class Cloud:
    """A cloud of the inventory; a context that opens its driver and closes it after."""

    def __init__(self, name: str, inventory: Any = None, home: Path | None = None) -> None:
        from ..config.settings import home_dir

        if inventory is None:
            from ..config.settings import resolve

            inventory = resolve(check_keys=False).inventory
        if name not in inventory.clouds:
            known = ", ".join(inventory.clouds) or "none: add a clouds: section"
            raise UsageError(f"no cloud {name!r} in {inventory.path.name} (clouds: {known})")
        self.name = name
        self.inventory = inventory
        self.config: CloudConfig = inventory.clouds[name]
        self.home = Path(home) if home is not None else home_dir() / "clouds"
        self.driver: Any = None

    # -- the context -------------------------------------------------------------------
    def __enter__(self) -> Cloud:
        self.open()
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def open(self) -> None:
        """Open the cloud's driver (done by ``with``)."""
        if self.driver is None:
            self.driver = compute_driver(self.config)

    def close(self) -> None:
        """Close the driver's connection."""
        conn = getattr(self.driver, "connection", None)
        if conn is not None and hasattr(conn, "close"):
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing: nothing left to do about it
                pass
        self.driver = None

    # -- VMs ---------------------------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        """Every VM of the cloud as a record (name, state, ssh endpoint, what the driver says)."""
        self.open()
        records = []
        for node in self._nodes():
            try:
                records.append(self._record(node))
            except CloudError as e:
                if "not found" not in str(e).lower():
                    raise                     # else it went away since it was listed
        return sorted(records, key=lambda r: r["name"])

    def _nodes(self) -> list[Any]:
        """The driver's nodes; on libvirt, listed again when a VM goes away meanwhile
        (another job deleting it), which libcloud reports as an error."""
        for attempt in range(LIST_TRIES):
            try:
                return self._call("list", self.driver.list_nodes)
            except CloudError as e:
                if self.config.type != "libvirt" or "not found" not in str(e).lower() or attempt == LIST_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def node(self, name: str) -> Any:
        """The driver's node called ``name``; CloudError when there is none."""
        self.open()
        if self.config.type == "libvirt":        # one lookup, not a listing another job may race
            import libvirt

            try:
                return self.driver._to_node(self.driver.connection.lookupByName(name))
            except libvirt.libvirtError as e:
                if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    raise CloudError(f"cloud {self.name}: no VM {name!r}") from None
                raise CloudError(f"cloud {self.name}: {name}: {first_line(e)}") from None
        for node in self._nodes():
            if node.name == name:
                return node
        raise CloudError(f"cloud {self.name}: no VM {name!r}")

    def machine(self, name: str, action: str = "start", grace: float | None = None) -> dict[str, Any]:
        """Do ``action`` to VM ``name``; its record after it (``delete``: as it was).

        ``stop`` presses a libvirt VM's power button and gives it ``grace`` seconds
        (STOP_GRACE by default) to shut down before it is powered off; on other clouds
        it is the driver's stop."""
        if action not in ACTIONS:
            raise UsageError(f"{action!r}: an action is one of {', '.join(ACTIONS)}")
        if action == "boot":
            return self.boot(name)
        node = self.node(name)
        before = self._record(node) if action == "delete" else None
        if self.config.type == "libvirt":
            self._libvirt_action(node, action, STOP_GRACE if grace is None else grace)
        else:
            self._driver_action(node, action)
        if before is not None:
            return {**before, "state": "deleted"}
        return self._record(self.node(name))

    def machines(self, names: list[str], action: str) -> list[dict[str, Any]]:
        """Do ``action`` to every VM of ``names`` at once; their records, in that order."""
        if not names:
            return []
        with ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:
            return list(pool.map(lambda n: self.machine(n, action), names))

    def boot(self, name: str, image: str | None = None, size: str | None = None) -> dict[str, Any]:
        """A new VM called ``name`` from the cloud's defaults (or ``image``/``size``),
        running, with its ssh host key pinned; its record."""
        self.open()
        if any(n.name == name for n in self._nodes()):
            raise CloudError(f"cloud {self.name}: a VM called {name!r} exists already")
        if self.config.type != "libvirt":
            return self._boot_driver(name, image or self.config.default.get("image"),
                                     size or self.config.default.get("size"))
        return self._boot_libvirt(name, image or self.config.default.get("image"), size)

    def _boot_driver(self, name: str, image: str | None, size: str | None) -> dict[str, Any]:
        """A new node through the driver's create_node, with the image and size named
        (by id or name) and the cloud's default key (a key pair name, or a public key file)."""
        if not image or not size:
            raise CloudError(f"cloud {self.name}: booting needs an image and a size (give --image/--size, or "
                             f"default: image and size in the inventory)")
        chosen_image = _pick(self._call("list images", self.driver.list_images), image, f"cloud {self.name}: image")
        chosen_size = _pick(self._call("list sizes", self.driver.list_sizes), size, f"cloud {self.name}: size")
        kwargs: dict[str, Any] = {"name": name, "image": chosen_image, "size": chosen_size}
        key = self.config.default.get("key")
        if key:
            path = Path(str(key)).expanduser()
            if path.exists():
                from libcloud.compute.base import NodeAuthSSHKey

                kwargs["auth"] = NodeAuthSSHKey(path.read_text().strip())
            else:
                kwargs["ex_keyname"] = str(key)
        node = self._call(f"boot {name}", lambda: self.driver.create_node(**kwargs))
        return self._record(node)

    def vm(self, name: str) -> VirtualMachine:
        """VM ``name`` as a context of its own: ``with Cloud("lab").vm("vm1") as vm:``."""
        return VirtualMachine(self, name)

    def refresh(self, store: Any) -> list[dict[str, Any]]:
        """Record the cloud's VMs as it reports them now in ``store``'s database (flattened
        records of kind ``vm``); those it no longer has are forgotten. The records."""
        from .records import records_for

        records = self.list()
        table = records_for(store, "vm", key="id")
        table.delete(cloud=self.name)
        table.add(records)
        return records

    # -- libvirt: what libcloud lacks ----------------------------------------------------
    def _domain(self, node: Any) -> Any:
        return self.driver._get_domain_for_node(node)

    def _libvirt_action(self, node: Any, action: str, grace: float) -> None:
        dom = self._domain(node)
        state = dom.state()[0]
        steps = {
            "start": lambda: self._start(dom, node.name, state),
            "stop": lambda: dom.isActive() and _shut_down(dom, paused=state == 3, grace=grace),
            "suspend": lambda: state != 3 and dom.suspend(),
            "resume": lambda: state == 3 and dom.resume(),
            "reboot": lambda: dom.reset(0),
            "delete": lambda: (dom.isActive() and dom.destroy(), dom.undefine()),
        }
        self._call(f"{action} {node.name}", steps[action])
        if action == "delete":
            for path in (self._console(node.name), self._host_key_file(node.name),
                         self.home / self.name / f"{node.name}.initrd"):
                path.unlink(missing_ok=True)

    def _start(self, dom: Any, name: str, state: int) -> None:
        """Start a stopped VM and wait until it answers ssh again, on the host key pinned
        when it booted (a suspended one is resumed; a running one is left as it is)."""
        from .image import ImageError, public_host_key, wait_ready

        if state == 3:
            dom.resume()
        if dom.isActive():
            return
        dom.create()
        host_file = self._host_key_file(name)
        if host_file.exists():                 # a VM of the small image: it says on its console when it is up
            said = wait_ready(self._console(name))
            if said != public_host_key(host_file):
                raise ImageError(f"VM {name} offered host key {said}, not the one pinned for it")

    def _driver_action(self, node: Any, action: str) -> None:
        d = self.driver
        needed = {"suspend": "ex_suspend_node", "resume": "ex_resume_node"}.get(action)
        if needed and not hasattr(d, needed):
            raise CloudError(f"cloud {self.name}: {action} {node.name}: the {self.config.type} driver cannot {action}")
        calls = {"start": lambda: d.start_node(node), "stop": lambda: d.stop_node(node),
                 "suspend": lambda: d.ex_suspend_node(node), "resume": lambda: d.ex_resume_node(node),
                 "reboot": lambda: d.reboot_node(node), "delete": lambda: d.destroy_node(node)}
        self._call(f"{action} {node.name}", calls[action])

    def _console(self, name: str) -> Path:
        return self.home / self.name / f"{name}.console"

    def _host_key_file(self, name: str) -> Path:
        """The VM's own ssh host key (private, 0600), given to it at each boot."""
        return self.home / self.name / f"{name}.host_key"

    @property
    def known_hosts(self) -> Path:
        """The host keys of this cloud's VMs, pinned when they booted (alias: the VM's name)."""
        return self.home / "known_hosts"

    @property
    def key(self) -> Path:
        """The private key cmq logs in to its VMs with (made on first use, 0600)."""
        key = self.home / "id_ed25519"
        with _KEY_LOCK:                       # VMs boot in parallel threads: one key, made once
            if not key.exists():
                key.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cmq-cloud", "-f", str(key)],
                               check=True, capture_output=True)
        return key

    def _boot_libvirt(self, name: str, image: str | None, size: str | None) -> dict[str, Any]:
        from .domain import DomainSpec, domain_xml
        from .image import KERNEL_CMDLINE, ImageError, make_host_key, small_image, vm_initrd, wait_ready

        if image not in (None, "", "small"):
            raise CloudError(f"cloud {self.name}: image {image!r}: a libvirt cloud boots the small image so far")
        memory = {"small": 256, "medium": 512, "large": 1024}.get(str(size or "small"))
        if memory is None:
            raise UsageError(f"size {size!r}: small, medium or large")
        kernel, initrd = small_image(self.home / "images" / "small")
        console = self._console(name)
        console.parent.mkdir(parents=True, exist_ok=True)
        console.unlink(missing_ok=True)
        port = _free_port()
        host_file = self._host_key_file(name)
        host_key = make_host_key(host_file)      # made here and pinned: no trust in what the VM first says
        own = vm_initrd(initrd, self.home / self.name / f"{name}.initrd", name, Path(f"{self.key}.pub").read_text(),
                        host_file)
        spec = DomainSpec(name=name, ssh_port=port, console=str(console), kernel=str(kernel), initrd=str(own),
                          cmdline=KERNEL_CMDLINE, memory_mib=memory, cloud=self.name)
        conn = self.driver.connection
        dom = self._call(f"boot {name}", lambda: conn.defineXML(domain_xml(spec)))
        try:
            self._call(f"boot {name}", dom.create)
            said = wait_ready(console)
            if said != host_key:
                raise ImageError(f"VM {name} offered host key {said}, not the one cmq made for it")
        except BaseException:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
            raise
        self._pin(name, host_key)
        return self._record(self.node(name))

    def _pin(self, name: str, host_key: str) -> None:
        from ..core.files import write_private

        lines = [ln for ln in (self.known_hosts.read_text().splitlines() if self.known_hosts.exists() else [])
                 if ln.split(" ", 1)[0] != name]
        write_private(self.known_hosts, "\n".join([*lines, f"{name} {host_key}"]) + "\n")

    # -- records -------------------------------------------------------------------------
    def _record(self, node: Any) -> dict[str, Any]:
        from libcloud.compute.types import NodeState

        record: dict[str, Any] = {"id": f"{self.name}/{node.name}", "name": node.name, "cloud": self.name,
                                  "provider": self.config.type, "state": _state_word(node.state, NodeState),
                                  "public_ips": ",".join(node.public_ips or []),
                                  "private_ips": ",".join(node.private_ips or [])}
        if self.config.type == "libvirt":
            from .domain import ssh_endpoint

            dom = self._call(node.name, lambda: self._domain(node))
            state, xml = self._call(node.name, lambda: (dom.state()[0], dom.XMLDesc()))
            record["state"] = LIBVIRT_STATES.get(state, "unknown")
            endpoint = ssh_endpoint(xml)
            if endpoint:
                record["ssh"] = f"root@{endpoint[0]}:{endpoint[1]}"
        extra = {k: v for k, v in (node.extra or {}).items() if isinstance(v, (str, int, float, bool))}
        if extra:
            record["data"] = extra
        return record

    def _call(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except CmqError:
            raise
        except Exception as e:  # noqa: BLE001 - a driver's or libvirt's error: one line naming the cloud
            refusal = unavailable(e, f"cloud {self.name} ({self._endpoint()})")
            if refusal is not None:
                raise refusal from None
            raise CloudError(f"cloud {self.name}: {what}: {first_line(e)}") from None

    def _endpoint(self) -> str:
        """Where the driver connects (``host:port``), or the driver's name."""
        conn = getattr(self.driver, "connection", None)
        host, port = getattr(conn, "host", None), getattr(conn, "port", None)
        return f"{host}:{port}" if isinstance(host, str) and port else self.config.type


class VirtualMachine:
    """One VM of a cloud (the seed's second context): its actions, and jobs run on it
    through cmq's queue once it is a machine (``cmq cloud boot --join``)."""

    def __init__(self, cloud: Cloud, name: str) -> None:
        self.cloud, self.name = cloud, name
        self._cluster: Any = None

    def __enter__(self) -> VirtualMachine:
        self.cloud.open()
        self.cloud.node(self.name)            # CloudError now if there is no such VM
        return self

    def __exit__(self, *_: Any) -> None:
        if self._cluster is not None:
            self._cluster.close()
        self.cloud.close()

    @property
    def record(self) -> dict[str, Any]:
        """The VM as the cloud reports it now."""
        return self.cloud._record(self.cloud.node(self.name))

    def action(self, action: str) -> dict[str, Any]:
        """Do ``action`` (start, stop, suspend, resume, reboot, delete) to it."""
        return self.cloud.machine(self.name, action)

    def run(self, command: str, timeout: float | None = None) -> Any:
        """Run ``command`` on the VM as a job on the queue; its JobResult (stdout, exit code)."""
        from ..api.cluster import Cluster
        from ..config.inventory import load

        if self.name not in load(self.cloud.inventory.path, check_keys=False).machines:   # joined since?
            raise UsageError(f"VM {self.name} is not a machine of {self.cloud.inventory.path.name}: boot it with "
                             f"`cmq cloud boot {self.cloud.name} {self.name} --join` to run jobs on it")
        if self._cluster is None:
            self._cluster = Cluster.from_config(str(self.cloud.inventory.path), check_keys=False)
        return self._cluster.submit(command, on=self.name).wait(timeout=timeout)


def _shut_down(dom: Any, paused: bool, grace: float) -> bool:
    """Press the domain's power button and wait up to ``grace`` seconds for it to shut
    down (a paused one is resumed first, to hear it); then power it off. True when it
    shut down by itself."""
    import libvirt

    if grace > 0:
        if paused:
            dom.resume()
        dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not dom.isActive():
                return True
            time.sleep(0.05)
    if dom.isActive():
        dom.destroy()
    return False


def _pick(options: list[Any], wanted: str, what: str) -> Any:
    """The option whose id or name is ``wanted``; CloudError naming the ones there are."""
    for option in options:
        if wanted in (str(option.id), str(option.name)):
            return option
    shown = ", ".join(f"{o.name} ({o.id})" for o in options[:10]) + (", ..." if len(options) > 10 else "")
    raise CloudError(f"{what} {wanted!r} not found; there are: {shown or 'none'}")


def _state_word(state: Any, states: Any) -> str:
    words = {states.RUNNING: "running", states.STOPPED: "stopped", states.TERMINATED: "stopped",
             states.SUSPENDED: "suspended", states.PAUSED: "suspended", states.PENDING: "pending",
             states.REBOOTING: "pending", states.STARTING: "pending", states.STOPPING: "stopping"}
    return words.get(state, str(state))


_PORTS_GIVEN: set[int] = set()


def _free_port() -> int:
    """A free port on 127.0.0.1 for a VM's ssh forward, never one this process gave
    before (VMs booted at once would otherwise race for the same one)."""
    with _KEY_LOCK:
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _PORTS_GIVEN:
                _PORTS_GIVEN.add(port)
                return port
