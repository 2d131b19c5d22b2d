"""This machine as a device: subprocesses, no shell."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .base import CommandResult, RemoteProcess, Transport, TransportError


class LocalProcess(RemoteProcess):
    def __init__(self, popen: subprocess.Popen[bytes], stderr_file: tempfile._TemporaryFileWrapper[bytes]):
        self.popen = popen
        assert popen.stdin is not None and popen.stdout is not None
        self.stdin = popen.stdin
        self.stdout = popen.stdout
        self._stderr = stderr_file

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()

    def stderr_tail(self, limit: int = 2000) -> str:
        self._stderr.flush()
        with open(self._stderr.name, "rb") as f:
            f.seek(max(0, os.path.getsize(self._stderr.name) - limit))
            return f.read().decode("utf-8", "replace")


class LocalTransport(Transport):
    def connect(self) -> None:
        pass

    def start(self, argv: list[str]) -> RemoteProcess:
        err = tempfile.NamedTemporaryFile(prefix="edgebench-agent-", suffix=".stderr")
        try:
            popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                     start_new_session=True)
        except OSError as exc:
            raise TransportError("unreachable", f"cannot start {argv[0]}: {exc}") from None
        return LocalProcess(popen, err)

    def run(self, argv: list[str], timeout: float, stdin: bytes = b"") -> CommandResult:
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise TransportError("timeout", f"{argv[0]} did not finish in {timeout:.0f} s") from None
        except OSError as exc:
            raise TransportError("unreachable", f"cannot run {argv[0]}: {exc}") from None
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def put(self, local: Path, remote: str) -> None:
        shutil.copyfile(local, remote)

    def home(self) -> str:
        path = Path(self.device.workdir or Path.home() / ".cache" / "edgebench" / "device-local").expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return str(path.resolve())
