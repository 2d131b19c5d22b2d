"""What the runner needs from a way of reaching a device (local, ssh, adb).

A transport runs argv lists (quoted by the transport for the remote shell,
never joined from raw strings), streams a long-running process's stdout, and
copies files. Everything above it (content-addressed shipping, the agent
protocol) is shared by all transports.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ...results.record import Status

if TYPE_CHECKING:
    from ...config.inventory import Device


class TransportError(Exception):
    """The device could not be reached or talked to; ``status`` becomes the cell status."""

    def __init__(self, status: Status | str, message: str):
        super().__init__(message)
        # unreachable | host_key_unknown | host_key_changed | auth_failed | connection_lost | timeout
        self.status = Status(status)
        self.message = message


@dataclass
class CommandResult:
    code: int
    stdout: bytes
    stderr: bytes


class RemoteProcess(abc.ABC):
    """A process on the device: stdin to write the job, stdout to read frames."""

    stdin: IO[bytes]
    stdout: IO[bytes]

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> int | None:
        """Exit code, or None if still running after ``timeout`` seconds."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Kill the process (and its process group where the transport can)."""

    @abc.abstractmethod
    def stderr_tail(self, limit: int = 2000) -> str:
        """The last ``limit`` characters the process wrote to stderr."""


class Transport(abc.ABC):
    def __init__(self, device: Device):
        self.device = device

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the connection; raise TransportError when the device cannot be used."""

    @abc.abstractmethod
    def start(self, argv: list[str]) -> RemoteProcess:
        """Start argv on the device with pipes for stdin and stdout."""

    @abc.abstractmethod
    def run(self, argv: list[str], timeout: float, stdin: bytes = b"") -> CommandResult:
        """Run argv to completion; TransportError(status="timeout") after ``timeout`` seconds."""

    @abc.abstractmethod
    def put(self, local: Path, remote: str) -> None:
        """Copy a local file to an absolute path on the device."""

    @abc.abstractmethod
    def home(self) -> str:
        """Absolute path of edgebench's directory on the device (cache, work files)."""

    def device_facts(self) -> dict[str, Any] | None:
        """What the transport alone can tell about the device (adb: model, SoC, SDK level), else None."""
        return None

    def alive(self) -> bool:
        """Whether the device still answers (after a measuring process ended early)."""
        try:
            return self.run(["true"], 15).code == 0
        except TransportError:
            return False

    def close(self) -> None:
        pass

    def __enter__(self) -> Transport:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
