"""Converter processes: TensorFlow is imported only in them (harness.conversion.worker), once per process.

A converter that crashes, aborts or hangs costs the step it was running, reported with its last
words; the pool starts a fresh process for the next step.
"""

from __future__ import annotations

import json
import os
import queue
import select
import subprocess
import sys
import tempfile
import time
from typing import Any

STEP_TIMEOUT_S = 900


class Worker:
    """A converter child process; it imports TensorFlow as soon as it starts."""

    def __init__(self, threads: int) -> None:
        # An anonymous file: the child writes its stderr there, the parent reads the tail back, nothing to clean up.
        self.log = tempfile.TemporaryFile(prefix="edgebench-convert-")
        # Workers share the cores: TensorFlow's own thread pools would only fight each other.
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
                   TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.conversion.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=env)

    def call(self, args: list[str]) -> dict[str, Any]:
        """Run one step; a crash, abort or hang becomes an error with the converter's last words."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write((json.dumps(args) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # died already: reported below
        line = b""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                self.proc.kill()
                return {"ok": False, "error": f"converter gave no result in {STEP_TIMEOUT_S} s"}
            chunk = os.read(fd, 65536)
            if not chunk:
                return {"ok": False, "error": f"converter process died ({self._how()}): {self._last_words()}"}
            line += chunk
        result: dict[str, Any] = json.loads(line)
        return result

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _how(self) -> str:
        code = self.proc.wait()
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    def _last_words(self) -> str:
        self.log.seek(0, os.SEEK_END)
        self.log.seek(max(0, self.log.tell() - 1500))
        tail = self.log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in tail[-4:]) or "no output"

    def close(self) -> None:
        """End of input: the worker exits by itself. Not waited for: TensorFlow takes a second to shut down."""
        if self.alive():
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        self.log.close()


class Pool:
    """Long-lived converter processes: one TensorFlow import per process, not per variant."""

    def __init__(self, size: int):
        self.threads = max(1, (os.cpu_count() or 1) // size)
        self.idle: queue.Queue[Worker] = queue.Queue()
        self.workers = [Worker(self.threads) for _ in range(size)]
        for w in self.workers:
            self.idle.put(w)

    def call(self, args: list[str]) -> dict[str, Any]:
        worker = self.idle.get()
        try:
            return worker.call(args)
        finally:
            if not worker.alive():
                worker.close()
                worker = Worker(self.threads)
                self.workers.append(worker)
            self.idle.put(worker)

    def close(self) -> None:
        for w in self.workers:
            w.close()
