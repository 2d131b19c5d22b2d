"""inventory.yaml: the devices, in the Ansible YAML inventory layout.

    all:
      vars: {...}              # apply to every host below
      hosts:
        local: {transport: local}
      children:
        pis:                   # a group: name usable in --devices
          vars: {ansible_user: pi, threads: 4}
          hosts:
            pi-4b-01: {ansible_host: 192.168.1.50, tags: [pi4]}

Variables are inherited all -> group -> child group -> host. Ansible's own
``ansible_*`` variables are understood; other ``ansible_*`` variables are
ignored so a lab's existing inventory loads as is; any other unknown key is an
error naming its line. The built-in ``local`` device (this machine) exists
even when the inventory does not list it.

A device in a labgrid lab names its place (``labgrid_place: rpi-07``) or, as
a pool slot, asks for any free place with some tags (``labgrid_tags: {board:
rpi4}``, usually in a group's vars: one slot per host); its SSH address, user
and port then come from the place's NetworkService (harness.fleet.lab).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.errors import EdgebenchError
from .yamlfile import YDict, check_keys, load_yaml, where

TRANSPORTS = ("local", "ssh", "adb")
_ANSIBLE = {
    "ansible_host": "host",
    "ansible_port": "port",
    "ansible_user": "user",
    "ansible_ssh_private_key_file": "key_file",
    "ansible_python_interpreter": "python",
    "ansible_connection": "transport",
}
_TYPES: dict[str, tuple[type, ...]] = {
    "transport": (str,),
    "host": (str,),
    "port": (int,),
    "user": (str,),
    "key_file": (str,),
    "python": (str,),
    "workdir": (str,),
    "runtime": (str,),
    "delegate": (str,),
    "delegate_library": (str,),
    "delegate_options": (dict,),
    "threads": (int,),
    "tags": (list,),
    "known_hosts": (str,),
    "serial": (str,),
    "ssh_config": (str,),
    "runner": (str,),
    "benchmark_binary": (str,),
    "taskset": (str,),
    "labgrid_place": (str,),
    "labgrid_tags": (dict,),
    "labgrid_coordinator": (str,),
}
HOST_KEYS = set(_TYPES) | set(_ANSIBLE)


@dataclass
class Device:
    name: str
    transport: str = "ssh"
    host: str | None = None
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    python: str = "python3"
    workdir: str | None = None
    runtime: str = "auto"
    delegate: str | None = None
    delegate_library: str | None = None
    delegate_options: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    tags: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    known_hosts: str | None = None
    serial: str | None = None
    ssh_config: str | None = None
    runner: str = "agent"
    benchmark_binary: str | None = None
    taskset: str | None = None
    # a labgrid place (by name, or any free place with these tags) held while this device is measured
    labgrid_place: str | None = None
    labgrid_tags: dict[str, str] = field(default_factory=dict)
    labgrid_coordinator: str | None = None  # HOST:PORT; default $LG_COORDINATOR, then labgrid's own default
    source: str = "built-in"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "transport": self.transport,
            "host": self.host,
            "groups": self.groups,
            "tags": self.tags,
            "runtime": self.runtime,
            "delegate": self.delegate,
            "threads": self.threads,
            **({"labgrid_place": self.labgrid_place} if self.on_labgrid else {}),
        }

    @property
    def on_labgrid(self) -> bool:
        return bool(self.labgrid_place or self.labgrid_tags)


def local_device() -> Device:
    return Device(name="local", transport="local", python=sys.executable, source="built-in")


@dataclass
class Inventory:
    path: Path | None
    devices: dict[str, Device]
    groups: dict[str, list[str]]

    def select(self, spec: str | list[str] | None) -> list[Device]:
        """Devices by comma-separated names, groups or tags; None means every device the inventory lists
        (the built-in ``local`` only when there is no inventory or it is named)."""
        if spec is None:
            return [d for d in self.devices.values() if self.path is None or d.source != "built-in"]
        names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
        chosen: dict[str, Device] = {}
        for token in names:
            matched = [
                d
                for d in self.devices.values()
                if d.name == token or token in d.groups or token in d.tags
            ]
            if not matched:
                known = ", ".join(sorted(set(self.devices) | set(self.groups)))
                raise EdgebenchError(
                    f"--devices: no device, group or tag named {token!r} (known: {known})", where=str(self.path or "inventory")
                )
            for d in matched:
                chosen.setdefault(d.name, d)
        return list(chosen.values())


def _convert_vars(path: Path, node: YDict, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        key = str(key)
        if key.startswith("ansible_") and key not in _ANSIBLE:
            continue  # other Ansible variables do not concern edgebench
        if key not in HOST_KEYS:
            raise EdgebenchError(
                f"unknown key {key!r} in {what} (allowed: {', '.join(sorted(HOST_KEYS))})", where=where(path, node, key)
            )
        target = _ANSIBLE.get(key, key)
        types = _TYPES[target]
        if target == "port" and isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, types) or isinstance(value, bool):
            raise EdgebenchError(
                f"{key} in {what} must be {types[0].__name__}, not {type(value).__name__}", where=where(path, node, key)
            )
        if target == "transport" and value not in TRANSPORTS:
            raise EdgebenchError(f"{key} must be one of {', '.join(TRANSPORTS)}, not {value!r}", where=where(path, node, key))
        if target in ("threads", "port") and isinstance(value, int) and value < 1:
            raise EdgebenchError(f"{key} in {what} must be at least 1, not {value}"
                                 + ("; omit it for the runtime's default" if target == "threads" else ""),
                                 where=where(path, node, key))
        if isinstance(value, dict) and target == "labgrid_tags" \
                and not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise EdgebenchError(f"labgrid_tags in {what} must map tag names to strings (board: rpi4)",
                                 where=where(path, node, key))
        if target == "tags" and not (isinstance(value, list) and all(isinstance(t, str) for t in value)):
            raise EdgebenchError(f"tags in {what} must be a list of strings", where=where(path, node, key))
        out[target] = value
    return out


def load_inventory(path: Path | None) -> Inventory:
    """Load and validate an inventory; None (or no file) gives just the built-in local device."""
    devices: dict[str, Device] = {}
    groups: dict[str, list[str]] = {}
    if path is None:
        return Inventory(None, {"local": local_device()}, {})
    data = load_yaml(path)
    if data is None:
        data = YDict()
    if not isinstance(data, dict):
        raise EdgebenchError("an inventory is a mapping of groups (e.g. 'all:')", where=where(path, data))

    def walk(group: str, node: Any, inherited: dict[str, Any], lineage: list[str]) -> None:
        if node is None:
            return
        check_keys(path, node, {"hosts", "vars", "children"}, f"group {group!r}")
        assert isinstance(node, YDict)
        values = dict(inherited)
        if node.get("vars") is not None:
            check_keys(path, node["vars"], HOST_KEYS | {k for k in node["vars"] if str(k).startswith("ansible_")},
                       f"vars of group {group!r}")
            values.update(_convert_vars(path, node["vars"], f"vars of group {group!r}"))
        here = lineage + [group]
        hosts = node.get("hosts") or YDict()
        if not isinstance(hosts, dict):
            raise EdgebenchError(f"hosts of group {group!r} must be a mapping of host names", where=where(path, node, "hosts"))
        for name, host_vars in hosts.items():
            name = str(name)
            hv = host_vars if host_vars is not None else YDict()
            if not isinstance(hv, YDict):
                raise EdgebenchError(f"host {name!r} must be a mapping of variables", where=where(path, hosts, name))
            merged = {**values, **_convert_vars(path, hv, f"host {name!r}")}
            existing = devices.get(name)
            if existing is not None:
                # A host listed in several groups: merge groups, later variables win.
                fields = {k: getattr(existing, k) for k in _TYPES}
                fields.update(merged)
                merged = fields
            device = Device(name=name, source=where(path, hosts, name), **merged)
            device.groups = sorted(set((existing.groups if existing else []) + [g for g in here if g != "all"]))
            if device.transport == "local" and "python" not in merged:
                device.python = sys.executable
            if device.transport == "ssh" and not device.host:
                device.host = name
            devices[name] = device
            for g in here:
                groups.setdefault(g, [])
                if name not in groups[g]:
                    groups[g].append(name)
        children = node.get("children") or YDict()
        if not isinstance(children, dict):
            raise EdgebenchError(f"children of group {group!r} must be a mapping", where=where(path, node, "children"))
        for child, child_node in children.items():
            walk(str(child), child_node, values, here)

    for group, node in data.items():
        walk(str(group), node, {}, [])
    devices.setdefault("local", local_device())
    return Inventory(path, devices, groups)
