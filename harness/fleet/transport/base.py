"""What the runner needs from a way of reaching a device (local, ssh, adb).

A transport runs argv lists (quoted by the transport for the remote shell,
never joined from raw strings), streams a long-running process's stdout, and
copies files. Everything above it (content-addressed shipping, the agent
protocol) is shared by all transports.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ...results.record import Status

if TYPE_CHECKING:
    from ...config.inventory import Device

# What one command may print on stdout (every transport): a device flooding its output must not grow the
# host's memory without bound. Frames of the agent have their own cap (MAX_FRAME_BYTES).
MAX_OUTPUT_BYTES = 16 << 20
STDERR_KEEP_BYTES = 1 << 20  # the tail of a command's stderr that is kept


POLL_S = 0.2  # how often a device thread that waits looks for Ctrl-C
_interrupt = threading.Event()


@contextmanager
def interrupted() -> Iterator[None]:
    """Ctrl-C, seen by the main thread: while this lasts, every device thread stops at its next wait (an
    agent's next frame, a labgrid place, the next attempt) with KeyboardInterrupt, killing what it started
    and releasing its place on the way out, and settles no more cells."""
    _interrupt.set()
    try:
        yield
    finally:
        _interrupt.clear()


def interrupting() -> bool:
    return _interrupt.is_set()


def stop_if_interrupted(when: bool = True) -> None:
    if when and _interrupt.is_set():
        raise KeyboardInterrupt


class TransportError(Exception):
    """The device could not be reached or talked to; ``status`` becomes the cell status."""

    def __init__(self, status: Status | str, message: str):
        super().__init__(message)
        # unreachable | host_key_unknown | host_key_changed | auth_failed | connection_lost | timeout
        self.status = Status(status)
        self.message = message


def too_much_output(what: str) -> TransportError:
    return TransportError(Status.INVALID_OUTPUT, f"{what} wrote more than {MAX_OUTPUT_BYTES >> 20} MB on stdout: "
                                                 "output cut there and the command killed")


def feed(stream: IO[bytes], data: bytes) -> None:
    """Write a command's input and close it; run on a thread, since a command that writes before it reads would
    otherwise block both sides."""
    try:
        if data:
            stream.write(data)
        stream.close()
    except Exception:  # OSError, EOFError, paramiko's SSHException: the command exited without reading its
        pass  # input, and its exit code tells the story


class Capture:
    """Reads a stream to its end on a thread, keeping at most ``limit`` bytes: the head, where more is an
    error (``overflow`` is set and reading stops), or with ``tail`` the last bytes (stderr)."""

    def __init__(self, stream: IO[bytes], limit: int, *, tail: bool = False):
        self._stream, self._limit, self._tail = stream, limit, tail
        self._buf = bytearray()
        self._lock = threading.Lock()
        self.overflow = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                chunk = self._stream.read1(1 << 16) if hasattr(self._stream, "read1") else self._stream.read(1 << 16)
            except (OSError, EOFError, ValueError):
                return
            if not chunk:
                return
            with self._lock:
                self._buf += chunk
                if len(self._buf) > self._limit:
                    if not self._tail:
                        del self._buf[self._limit:]
                        self.overflow.set()
                        return
                    del self._buf[: len(self._buf) - self._limit]

    def join(self, timeout: float) -> bool:
        """Whether the stream has ended (or overflowed) within ``timeout`` seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def data(self) -> bytes:
        with self._lock:
            return bytes(self._buf)


class Watchdog:
    """Calls ``on_expiry`` once when ``seconds`` pass without a ``kick()``: a deadline for a blocking step
    that has none of its own, enforced by closing what it waits on. ``stop()`` when the step is over."""

    def __init__(self, seconds: float, on_expiry: Callable[[], None]):
        self.seconds = seconds
        self.expired = False
        self._on_expiry = on_expiry
        self._deadline = time.monotonic() + seconds
        self._done = threading.Event()
        threading.Thread(target=self._run, name="watchdog", daemon=True).start()

    def kick(self, *_: object) -> None:
        """Progress was made: the deadline starts again (usable as a progress callback)."""
        self._deadline = time.monotonic() + self.seconds

    def stop(self) -> None:
        self._done.set()

    def _run(self) -> None:
        while not self._done.wait(max(0.0, self._deadline - time.monotonic())):
            if time.monotonic() >= self._deadline:
                self.expired = True
                self._on_expiry()
                return


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
    def run(self, argv: list[str], timeout: float, stdin: bytes = b"", *, interruptible: bool = False) -> CommandResult:
        """Run argv to completion; TransportError(status="timeout") after ``timeout`` seconds. ``interruptible``
        (a measurement): Ctrl-C kills it and raises KeyboardInterrupt; never for commands that clean up."""

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
