"""A device whose agent is a script, for fast unit tests of the runner's logic (repeats, reconnects,
timeouts, partial and hostile output) beside the real local/sshd/adb tests.

``FakeTransport`` speaks the real protocol: the host writes a real job frame; the fake agent, a thread,
answers with real frames (device_agent.agent.encode_frame) as its ``Script`` says, per cell id. Files the
host ships go into a temporary directory standing for the device, through the same shell scripts a
real device runs (so shipping is exercised too).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from device_agent.agent import encode_frame, read_frame
from harness.config.inventory import Device
from harness.fleet.transport.base import CommandResult, RemoteProcess, Transport, TransportError

Behaviour = Callable[[dict[str, Any]], bytes | None]  # job cell -> what the agent writes for it (None: nothing)


def ok(samples: list[float] | None = None) -> Behaviour:
    def answer(cell: dict[str, Any]) -> bytes:
        return encode_frame({"type": "cell", "id": cell["id"], "status": "ok", "error": None,
                             "samples_ms": samples or [1.0, 1.1, 0.9, 1.05, 1.0, 0.95], "init_ms": 2.0,
                             "first_inference_ms": 1.5, "peak_rss_mb": 40.0, "rss_growth_mb": 0.5,
                             "model_bytes": 1234, "threads": cell.get("threads"), "warmup_runs": 1,
                             "delegate": {"name": "xnnpack-default", "coverage": None}, "cell_ms": 12.0,
                             "thermal_before": {"temperatures_c": None, "throttled": None},
                             "thermal_after": {"temperatures_c": None, "throttled": None}})
    return answer


def failed(status: str, error: str) -> Behaviour:
    return lambda cell: encode_frame({"type": "cell", "id": cell["id"], "status": status, "error": error})


def raw(data: bytes) -> Behaviour:
    """Exactly these bytes, frame or not."""
    return lambda cell: data


def silent(cell: dict[str, Any]) -> None:
    """Hang: the agent never answers this cell (until killed)."""
    return None


@dataclass
class Script:
    """What the fake device does. ``cells`` maps a job cell id ("model/variant" or "model/variant#repeat") to
    its behaviour (default ``ok()``); ``end_after`` ends the agent's output (as a crash would) after that
    many cells; ``drop_connection_after`` makes the connection die after that many cells, ``connections``
    times (then the device answers normally)."""

    cells: dict[str, Behaviour] = field(default_factory=dict)
    end_after: int | None = None
    drop_connection_after: int | None = None
    connections: int = 1
    jobs: list[list[dict[str, Any]]] = field(default_factory=list)  # every job the host sent, for assertions
    started: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.drops_left = self.connections if self.drop_connection_after is not None else 0


class _Pipe:
    """A byte pipe: write end for one side, read end for the other."""

    def __init__(self) -> None:
        r, w = os.pipe()
        self.reader: IO[bytes] = os.fdopen(r, "rb")
        self.writer: IO[bytes] = os.fdopen(w, "wb", buffering=0)


class FakeProcess(RemoteProcess):
    def __init__(self, transport: FakeTransport, script: Script):
        self._to_agent, self._from_agent = _Pipe(), _Pipe()
        self.stdin = self._to_agent.writer
        self.stdout = self._from_agent.reader
        self._transport = transport
        self._script = script
        self._killed = threading.Event()
        self._done = threading.Event()
        threading.Thread(target=self._agent, daemon=True).start()

    def _agent(self) -> None:
        out = self._from_agent.writer
        try:
            job = read_frame(self._to_agent.reader)
            assert job is not None and job["type"] == "job"
            self._script.jobs.append(job["cells"])
            out.write(encode_frame({"type": "hello", "agent_version": "fake", "env": {"arch": "fake"},
                                    "runtime": {"name": "fake_runtime", "version": "1.0"}}))
            for n, cell in enumerate(job["cells"]):
                if self._script.end_after is not None and n >= self._script.end_after:
                    return
                if self._script.drop_connection_after is not None and n >= self._script.drop_connection_after \
                        and self._script.drops_left > 0:
                    self._script.drops_left -= 1
                    self._transport.connected = False
                    return
                answer = self._script.cells.get(cell["id"], ok())(cell)
                if answer is None:
                    self._killed.wait()
                    return
                out.write(answer)
            out.write(encode_frame({"type": "done"}))
        except (OSError, ValueError):
            pass
        finally:
            self._done.set()
            try:
                out.close()
            except OSError:
                pass

    def wait(self, timeout: float | None = None) -> int | None:
        return 0 if self._done.wait(timeout) else None

    def kill(self) -> None:
        self._killed.set()
        for f in (self.stdin, self.stdout):
            try:
                f.close()
            except OSError:
                pass

    def stderr_tail(self, limit: int = 2000) -> str:
        return "fake agent stderr"[-limit:]


class FakeTransport(Transport):
    def __init__(self, device: Device, script: Script, home: Path):
        super().__init__(device)
        self.script = script
        self.device_home = home
        self.connected = False

    def connect(self) -> None:
        self.connected = True
        self.script.started.append(time.monotonic())

    def _check(self) -> None:
        if not self.connected:
            raise TransportError("connection_lost", "fake connection dropped")

    def start(self, argv: list[str]) -> RemoteProcess:
        self._check()
        return FakeProcess(self, self.script)

    def run(self, argv: list[str], timeout: float, stdin: bytes = b"", *, interruptible: bool = False) -> CommandResult:
        self._check()
        done = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, cwd=self.device_home)
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def put(self, local: Path, remote: str) -> None:
        self._check()
        shutil.copyfile(local, remote)

    def home(self) -> str:
        self.device_home.mkdir(parents=True, exist_ok=True)
        return str(self.device_home)


def fake_factory(script: Script, home: Path) -> Callable[[Device, Any], Transport]:
    return lambda device, policy: FakeTransport(device, script, home)

