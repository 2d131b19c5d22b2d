"""This machine as a device: subprocesses, no shell."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .base import (MAX_OUTPUT_BYTES, STDERR_KEEP_BYTES, Capture, CommandResult, RemoteProcess, Transport,
                   TransportError, feed, interrupting, stop_if_interrupted, too_much_output)


def run_capped(argv: list[str], timeout: float, stdin: bytes = b"", what: str | None = None, *,
               interruptible: bool = False) -> CommandResult:
    """Run a local program (the local transport's commands, the adb client) in its own process group, with
    stdout capped at MAX_OUTPUT_BYTES and only the tail of stderr kept; killed at ``timeout`` or overflow
    (or, ``interruptible``, on Ctrl-C: then KeyboardInterrupt)."""
    what = what or argv[0]
    try:
        popen = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise TransportError("unreachable", f"cannot run {what}: {exc}") from None
    assert popen.stdout is not None and popen.stderr is not None
    out, err = Capture(popen.stdout, MAX_OUTPUT_BYTES), Capture(popen.stderr, STDERR_KEEP_BYTES, tail=True)
    if stdin:
        assert popen.stdin is not None
        threading.Thread(target=feed, args=(popen.stdin, stdin), daemon=True).start()
    deadline = time.monotonic() + timeout
    code = None
    while code is None and not out.overflow.is_set() and time.monotonic() < deadline:
        try:
            code = popen.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            if interruptible and interrupting():
                break
    # output still in the pipes after the exit
    ended = code is not None and out.join(max(1.0, deadline - time.monotonic())) and err.join(1.0)
    if not ended or out.overflow.is_set():
        _kill_group(popen)
    stop_if_interrupted(interruptible and not ended)
    if out.overflow.is_set():
        raise too_much_output(what)
    if not ended:
        raise TransportError("timeout", f"{what} did not finish in {timeout:g} s")
    return CommandResult(popen.returncode, out.data(), err.data())


def _kill_group(popen: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    popen.wait()


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
        _kill_group(self.popen)

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

    def run(self, argv: list[str], timeout: float, stdin: bytes = b"", *, interruptible: bool = False) -> CommandResult:
        return run_capped(argv, timeout, stdin, interruptible=interruptible)

    def put(self, local: Path, remote: str) -> None:
        shutil.copyfile(local, remote)

    def home(self) -> str:
        path = Path(self.device.workdir or Path.home() / ".cache" / "edgebench" / "device-local").expanduser()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # private: see shipping.py
        return str(path.resolve())
