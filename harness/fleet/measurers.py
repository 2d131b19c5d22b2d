"""How a device is measured: by the edgebench agent (AgentMeasurer), or by LiteRT's native benchmark_model
on devices without Python (BenchmarkModelMeasurer). Each ships what it needs and settles the ledger's
pending items; a TransportError is left to the runner (reconnect, or the device's remaining cells)."""

from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from ..config.inventory import Device
from ..config.settings import MeasureSettings
from ..results.accuracy import compare
from ..results.record import Accuracy, DeviceRecord, Runtime, Status
from .benchmark_model import benchmark_model_argv, parse_benchmark_output
from .jobs import BUILTIN_TOOL_DELEGATES, ModelVariant, UnloadableDelegate, delegate_for, threads_for
from .ledger import Item, Ledger
from .protocol import ProtocolError, check_cell, encode_job, measured_from, read_frame
from .shipping import agent_zip, ship
from .transport import POLL_S, RemoteProcess, Transport, TransportError, stop_if_interrupted

# The host's deadlines count from the start of each cell (the previous cell's result), never from the last
# frame: an agent that keeps sending harmless frames cannot hold the host.
AGENT_START_S = 60.0  # from the job to the agent's hello: its interpreter and runtime starting on a slow board
CELL_GRACE_S = 10.0  # beyond the cell deadline: the agent's own kill of a hung cell, and its report


class Measurer(ABC):
    def __init__(self, device: Device, settings: MeasureSettings, record: DeviceRecord):
        self.device = device
        self.settings = settings
        self.record = record

    @abstractmethod
    def measure(self, transport: Transport, ledger: Ledger) -> None:
        """Settle every pending item of the ledger (or as many as the connection allows)."""

    def fail_device(self, ledger: Ledger, status: Status, error: str) -> None:
        self.record["status"], self.record["error"] = status, error
        ledger.fail_all(status, error)

    def _ship(self, transport: Transport, ledger: Ledger, extra: list[Path]) -> dict[Path, str]:
        todo = list(dict.fromkeys(item.variant for item in ledger.pending))
        files = extra + [mv.path for mv in todo if mv.path]
        files += [mv.eval_inputs for mv in todo if self.settings.evaluate and mv.eval_inputs]
        shipped = ship(transport, files, {mv.path: mv.sha256 for mv in todo if mv.path and mv.sha256})
        self.record["bytes_shipped"] = self.record.get("bytes_shipped", 0) + shipped.bytes_sent
        self.record["files_shipped"] = self.record.get("files_shipped", 0) + shipped.files_sent
        return shipped.remote


def measurer_for(device: Device, settings: MeasureSettings, record: DeviceRecord) -> Measurer:
    return (BenchmarkModelMeasurer if device.runner == "benchmark_model" else AgentMeasurer)(device, settings, record)


class _Frames:
    """Frames from the agent on a reader thread, so a silent agent can be timed out."""

    def __init__(self, proc: RemoteProcess):
        self.q: queue.Queue[dict[str, Any] | Exception | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: RemoteProcess) -> None:
        try:
            while True:
                frame = read_frame(proc.stdout)
                self.q.put(frame)
                if frame is None:
                    return
        except Exception as exc:  # ProtocolError, TransportError, OSError: handled by the consumer
            self.q.put(exc)

    def next(self, deadline: float, what: str) -> dict[str, Any] | None:
        """The next frame before ``deadline`` (time.monotonic()); TransportError("timeout") naming ``what``;
        KeyboardInterrupt on Ctrl-C (the caller kills the agent on its way out)."""
        while True:
            try:
                item = self.q.get(timeout=min(POLL_S, max(0.0, deadline - time.monotonic())))
                break
            except queue.Empty:
                stop_if_interrupted()
                if time.monotonic() >= deadline:
                    raise TransportError(Status.TIMEOUT, f"{what}; agent killed") from None
        if isinstance(item, Exception):
            raise item
        return item


def _accuracy(mv: ModelVariant, outputs: dict[str, np.ndarray]) -> Accuracy | None:
    if not outputs or mv.reference_outputs is None or not mv.reference_outputs.exists():
        return None
    with np.load(mv.reference_outputs, allow_pickle=False) as ref:
        reference = {k: ref[k] for k in ref.files}
    return compare(reference, outputs)  # type: ignore[return-value]


class AgentMeasurer(Measurer):
    """One agent process for everything pending; its frames are consumed as they arrive."""

    def _job_cell(self, ledger: Ledger, item: Item, remote: dict[Path, str]) -> dict[str, Any]:
        mv, s = item.variant, self.settings
        assert mv.path is not None
        spec = delegate_for(self.device, mv)
        # Outputs are evaluated once per variant (first repeat): later repeats only add latency samples.
        evaluate = s.evaluate and mv.eval_inputs is not None and item.repeat == 0
        return {
            "id": ledger.frame_id(item), "model_path": remote[mv.path], "runs": s.runs, "min_seconds": s.min_seconds,
            "max_runs": s.max_runs, "warmup": s.warmup, "warmup_seconds": s.warmup_seconds,
            "threads": threads_for(self.device, s),
            "delegate": None if spec is None else {"name": spec.name, "library": spec.library, "options": spec.options},
            "eval_inputs": remote.get(mv.eval_inputs) if evaluate and mv.eval_inputs else None,
            "cell_timeout_s": s.cell_deadline_s,
            **({"sustained_s": s.sustained} if s.sustained else {}),
        }

    def measure(self, transport: Transport, ledger: Ledger) -> None:
        device = self.device
        try:
            for item in ledger.pending:
                delegate_for(device, item.variant)
        except UnloadableDelegate as exc:
            self.fail_device(ledger, Status.ENVIRONMENT_ERROR, str(exc))
            return
        proc: RemoteProcess | None = None
        try:
            remote = self._ship(transport, ledger, [agent_zip()])
            pin = ["taskset", device.taskset] if device.taskset else []  # core pinning, as LiteRT's docs advise
            proc = transport.start([*pin, device.python, remote[agent_zip()], "serve", device.runtime])
            cells = [self._job_cell(ledger, item, remote) for item in ledger.start()]
            proc.stdin.write(encode_job(cells, device.runtime))
            proc.stdin.close()
            self._consume(_Frames(proc), proc, ledger)
            if ledger.pending and ledger.expected:
                # The agent ended early: a lost connection is retried, a dead agent costs the current cell.
                if not transport.alive():
                    raise TransportError(Status.CONNECTION_LOST, "connection lost during the run")
                ledger.fail_current(Status.CRASHED, "agent ended without a result for this cell", proc.stderr_tail())
        except ProtocolError as exc:
            ledger.fail_current(Status.INVALID_OUTPUT, f"agent output rejected: {exc}",
                                proc.stderr_tail() if proc else None)
        finally:
            if proc is not None:
                proc.kill()

    def _consume(self, frames: _Frames, proc: RemoteProcess, ledger: Ledger) -> None:
        runtime: Runtime | None = None
        cell_s = self.settings.cell_deadline_s + CELL_GRACE_S
        deadline, what = time.monotonic() + AGENT_START_S, f"the agent did not start within {AGENT_START_S:g} s"
        started = False
        while ledger.pending:
            frame = frames.next(deadline, what)
            if frame is None or frame["type"] == "done":
                proc.wait(5)  # an agent that said "done" exits by itself: no kill round trip needed
                return
            if frame["type"] == "fatal":
                self.record["env"] = frame.get("env")
                self.fail_device(ledger, Status.ENVIRONMENT_ERROR, str(frame.get("error"))[:1000])
            elif frame["type"] == "hello" and not started:  # the first cell starts now
                started, deadline = True, time.monotonic() + cell_s
                what = f"agent silent: no result for this cell within {cell_s:g} s"
                runtime = frame.get("runtime")
                self.record["env"], self.record["agent_version"] = frame.get("env"), frame.get("agent_version")
            elif frame["type"] == "cell":
                item = ledger.expected[0]
                checked = check_cell(frame, ledger.frame_id(item))
                accuracy = _accuracy(item.variant, checked["eval_outputs"])
                ledger.receive(checked["status"], checked.get("error"), measured_from(checked, runtime, accuracy))
                deadline = time.monotonic() + cell_s  # the next cell starts now


class BenchmarkModelMeasurer(Measurer):
    """Devices without Python (stock Android): LiteRT's native benchmark_model, one run per variant.

    The tool prints aggregates only: no raw samples and no outputs (the cell lists them as unavailable).
    Repeats are not interleaved here: each variant is run once.
    """

    def measure(self, transport: Transport, ledger: Ledger) -> None:
        device, settings = self.device, self.settings
        binary = Path(device.benchmark_binary or "").expanduser()
        if not device.benchmark_binary or not binary.is_file():
            self.fail_device(ledger, Status.ENVIRONMENT_ERROR,
                             f"benchmark_binary {binary} not found: give the path of LiteRT's benchmark_model "
                             "for this device (edgebench never downloads it)")
            return
        ledger.single_repeat()
        remote = self._ship(transport, ledger, [binary])
        transport.run(["chmod", "755", remote[binary]], 60)
        while ledger.pending:
            stop_if_interrupted()
            item = ledger.pending[0]
            ledger.expected = [item]
            mv = item.variant
            assert mv.path is not None
            try:
                spec = delegate_for(device, mv, builtin=BUILTIN_TOOL_DELEGATES)
            except UnloadableDelegate as exc:
                ledger.fail_current(Status.FAILED_TO_LOAD, str(exc))
                continue
            argv = benchmark_model_argv(
                remote[binary], remote[mv.path], threads=threads_for(device, settings), num_runs=settings.runs,
                warmup_runs=settings.warmup, min_secs=settings.min_seconds, warmup_min_secs=settings.warmup_seconds,
                external_delegate_path=spec.library if spec else None,
                external_delegate_options=spec.options if spec and spec.library else None,
                use_gpu=bool(spec and spec.name == "gpu" and not spec.library),
                use_nnapi=bool(spec and spec.name == "nnapi" and not spec.library), taskset=device.taskset,
                enable_op_profiling=settings.op_profile)
            result = transport.run(argv, settings.cell_timeout_s, interruptible=True)
            parsed = parse_benchmark_output((result.stdout + result.stderr).decode(errors="replace"), result.code)
            measured: Any = {key: value for key, value in parsed.items() if key not in ("status", "error")}
            ledger.receive(Status(parsed["status"]), parsed["error"], measured)
