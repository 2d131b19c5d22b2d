"""Transports: how the host reaches a device. ``open_transport`` picks one from the inventory."""

from __future__ import annotations

from typing import Any

from ...config.inventory import Device
from .base import POLL_S, CommandResult, RemoteProcess, Transport, TransportError, interrupted, stop_if_interrupted

__all__ = ["POLL_S", "CommandResult", "RemoteProcess", "Transport", "TransportError", "interrupted", "make_transport",
           "stop_if_interrupted"]


def make_transport(device: Device, **options: Any) -> Transport:
    """The transport for a device; imports paramiko only when a device needs SSH."""
    if device.transport == "local":
        from .local import LocalTransport

        return LocalTransport(device)
    if device.transport == "ssh":
        from .ssh import SSHTransport

        return SSHTransport(device, **{k: v for k, v in options.items() if k in ("trust_new_hosts",)})
    if device.transport == "adb":
        from .adb import AdbTransport

        return AdbTransport(device)
    raise TransportError("unreachable", f"unknown transport {device.transport!r}")
