"""Jobs -> transport -> agent -> cells: measure model variants on devices.

Devices run in parallel, one agent process per device for all its cells; the
agent streams one frame per cell and each cell is handed to ``on_cell`` (the
store) as soon as it arrives. Any failure becomes cells with a status: an
unreachable device, a dead connection (bounded reconnects, then the rest goes
on), a hung agent (killed at the timeout), garbage output.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgebenchError
from .inventory import Device
from .models import ModelVariant
from .protocol import ProtocolError, check_cell, encode_job, read_frame
from .shipping import agent_zip, ship
from .stats import delegate_flags, latency_summary, validity_flags
from .store import now_iso
from .transport import RemoteProcess, Transport, TransportError, make_transport
from .transport.adb import AdbTransport

RECONNECT_BACKOFF_S = (1.0, 2.0, 4.0)
EDGETPU_LIBRARY = "libedgetpu.so.1"


@dataclass
class Settings:
    runs: int = 50
    warmup: int = 1
    min_seconds: float = 1.0
    warmup_seconds: float = 0.5
    max_runs: int = 10000
    threads: int | None = None
    cell_timeout_s: float = 600.0
    repeats: int = 1
    op_profile: bool = False  # benchmark_model runner: per-op timings
    ship_failed: bool = False  # also measure variants that failed host validation
    trust_new_hosts: bool = False
    evaluate: bool = True

    def describe(self) -> dict[str, Any]:
        return {"runs": self.runs, "warmup": self.warmup, "min_seconds": self.min_seconds,
                "warmup_seconds": self.warmup_seconds, "max_runs": self.max_runs, "threads": self.threads,
                "cell_timeout_s": self.cell_timeout_s, "repeats": self.repeats}


CellCallback = Callable[[dict[str, Any]], None]
DeviceCallback = Callable[[dict[str, Any]], None]


def empty_cell(device: str, mv: ModelVariant, status: str, error: str | None) -> dict[str, Any]:
    """A cell that was not measured; every export field is present."""
    return {
        "device": device, "model": mv.model, "variant": mv.variant, "status": status, "error": error,
        "stderr_tail": None, "latency_ms": None, "init_ms": None, "first_inference_ms": None, "peak_rss_mb": None,
        "rss_growth_mb": None, "model_bytes": mv.bytes, "model_sha256": mv.sha256, "runtime": None, "threads": None,
        "delegate": None, "inputs": None, "outputs": None, "thermal_before": None, "thermal_after": None,
        "accuracy": None, "conversion": mv.conversion, "flags": list(mv.flags), "measured_at": now_iso(),
    }


def _accuracy(mv: ModelVariant, outputs: dict[str, np.ndarray]) -> dict[str, Any] | None:
    if not outputs or mv.reference_outputs is None or not mv.reference_outputs.exists():
        return None
    from .accuracy import compare

    with np.load(mv.reference_outputs, allow_pickle=False) as ref:
        reference = {k: ref[k] for k in ref.files}
    return compare(reference, outputs)


def build_cell(device: Device, mv: ModelVariant, frame: dict[str, Any], hello: dict[str, Any]) -> dict[str, Any]:
    cell = empty_cell(device.name, mv, frame["status"], frame.get("error"))
    latency = latency_summary(frame.get("samples_ms") or []) if frame.get("samples_ms") else None
    cell.update({
        "stderr_tail": frame.get("stderr_tail") if frame["status"] != "ok" else None,
        "latency_ms": latency,
        "init_ms": frame.get("init_ms"),
        "first_inference_ms": frame.get("first_inference_ms"),
        "peak_rss_mb": frame.get("peak_rss_mb"),
        "rss_growth_mb": frame.get("rss_growth_mb"),
        "model_bytes": frame.get("model_bytes", mv.bytes),
        "runtime": hello.get("runtime"),
        "threads": frame.get("threads"),
        "delegate": frame.get("delegate"),
        "inputs": frame.get("inputs"),
        "outputs": frame.get("outputs"),
        "thermal_before": frame.get("thermal_before"),
        "thermal_after": frame.get("thermal_after"),
        "warmup_runs": frame.get("warmup_runs"),
        "stateful": frame.get("stateful"),
        "cell_ms": frame.get("cell_ms"),
        "accuracy": _accuracy(mv, frame.get("eval_outputs") or {}),
    })
    if latency:
        cell["flags"] = sorted(set(cell["flags"]) | set(validity_flags(latency, cell["thermal_before"],
                                                                        cell["thermal_after"]))
                               | set(delegate_flags(cell["delegate"])))
    return cell


def _job_cell(device: Device, mv: ModelVariant, remote: dict[Path, str], settings: Settings) -> dict[str, Any]:
    assert mv.path is not None
    delegate: dict[str, Any] | None = None
    if mv.variant == "edgetpu":
        delegate = {"name": "edgetpu", "library": device.delegate_library or EDGETPU_LIBRARY,
                    "options": device.delegate_options}
    elif device.delegate != "edgetpu" and (device.delegate or device.delegate_library):
        # On an Edge TPU board the CPU variants run on the CPU, beside the edgetpu variant.
        delegate = {"name": device.delegate or "external", "library": device.delegate_library,
                    "options": device.delegate_options}
    return {
        "id": mv.key, "model_path": remote[mv.path], "runs": settings.runs, "min_seconds": settings.min_seconds,
        "max_runs": settings.max_runs, "warmup": settings.warmup, "warmup_seconds": settings.warmup_seconds,
        "threads": settings.threads if settings.threads is not None else device.threads, "delegate": delegate,
        "eval_inputs": remote.get(mv.eval_inputs) if (settings.evaluate and mv.eval_inputs) else None,
        "timeout_s": settings.cell_timeout_s,
    }


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

    def next(self, timeout: float) -> dict[str, Any] | None:
        try:
            item = self.q.get(timeout=timeout)
        except queue.Empty:
            raise TransportError("timeout", f"agent silent for {timeout:.0f} s; killed") from None
        if isinstance(item, Exception):
            raise item
        return item


class _DeviceRun:
    """One device's run: which (variant, repeat) results are still due, and the parts already received.

    Repeats of a variant are interleaved across variants (v1 v2 v3 v1 v2 v3 ...)
    so thermal drift does not punish whichever variant runs last; their samples
    are merged into one cell.
    """

    def __init__(self, device: Device, variants: list[ModelVariant], settings: Settings, on_cell: CellCallback):
        self.device = device
        self.settings = settings
        self.on_cell = on_cell
        self.repeats = max(1, settings.repeats)
        # A variant that failed on the host is not shipped, unless asked (another runtime may load it).
        measurable = [mv for mv in variants if mv.path is not None and mv.path.exists()
                      and (mv.status == "ok" or settings.ship_failed)]
        self.pending = [(mv, r) for r in range(self.repeats) for mv in measurable]
        self.expected: list[tuple[ModelVariant, int]] = []  # what the running agent will still report, in order
        self.parts: dict[str, list[dict[str, Any]]] = {}
        self.record: dict[str, Any] = {**device.describe(), "status": "ok", "error": None, "env": None,
                                       "agent_version": None, "bytes_shipped": 0, "files_shipped": 0}
        for mv in variants:
            if mv not in measurable:
                on_cell(empty_cell(device.name, mv, mv.status, mv.error))

    def frame_id(self, mv: ModelVariant, rep: int) -> str:
        return mv.key if self.repeats == 1 else f"{mv.key}#{rep}"

    def accept(self, frame: dict[str, Any], hello: dict[str, Any]) -> None:
        mv, rep = self.expected.pop(0)
        frame = check_cell(frame, self.frame_id(mv, rep))
        if (mv, rep) not in self.pending:
            return  # a later repeat of a variant that already failed
        if frame["status"] != "ok":
            self.on_cell(build_cell(self.device, mv, frame, hello))
            self._drop(mv)
            return
        self.pending.remove((mv, rep))
        parts = self.parts.setdefault(mv.key, [])
        parts.append(frame)
        if len(parts) == self.repeats:
            merged = dict(parts[0], thermal_after=parts[-1].get("thermal_after"),
                          samples_ms=[s for part in parts for s in part["samples_ms"]])
            self.on_cell({**build_cell(self.device, mv, merged, hello), "repeats": self.repeats})

    def fail_current(self, status: str, error: str, stderr_tail: str | None = None) -> None:
        """The result the agent was working on will not come."""
        mv, rep = self.expected.pop(0)
        if (mv, rep) in self.pending:
            self.on_cell({**empty_cell(self.device.name, mv, status, error), "stderr_tail": stderr_tail or None})
            self._drop(mv)

    def fail_all(self, status: str, error: str) -> None:
        self.record.update(status=status, error=error)
        for mv in dict.fromkeys(mv for mv, _ in self.pending):
            self.on_cell(empty_cell(self.device.name, mv, status, error))
        self.pending = []

    def _drop(self, mv: ModelVariant) -> None:
        self.pending = [(m, r) for m, r in self.pending if m is not mv]
        self.parts.pop(mv.key, None)

    def attempt(self) -> None:
        """Connect, ship, and measure everything pending with the device's runner."""
        transport = make_transport(self.device, trust_new_hosts=self.settings.trust_new_hosts)
        try:
            transport.connect()
            if isinstance(transport, AdbTransport):  # model, SoC, SDK level, ABI, thermal status
                self.record["android"] = transport.device_facts()
            if self.device.runner == "benchmark_model":
                self._benchmark_model(transport)
            else:
                self._agent(transport)
        finally:
            transport.close()

    def _ship(self, transport: Transport, extra: list[Path]) -> dict[Path, str]:
        todo = list(dict.fromkeys(mv for mv, _ in self.pending))
        files = extra + [mv.path for mv in todo if mv.path]
        files += [mv.eval_inputs for mv in todo if self.settings.evaluate and mv.eval_inputs]
        shipped = ship(transport, files, {mv.path: mv.sha256 for mv in todo if mv.path and mv.sha256})
        self.record["bytes_shipped"] += shipped.bytes_sent
        self.record["files_shipped"] += shipped.files_sent
        return shipped.remote

    def _agent(self, transport: Transport) -> None:
        """One agent process for everything pending; its frames are consumed as they arrive."""
        device, settings = self.device, self.settings
        proc: RemoteProcess | None = None
        try:
            remote = self._ship(transport, [agent_zip()])
            pin = ["taskset", device.taskset] if device.taskset else []  # core pinning, as LiteRT's docs advise
            proc = transport.start([*pin, device.python, remote[agent_zip()], "serve", device.runtime])
            self.expected = list(self.pending)
            # Outputs are evaluated once per variant (first repeat): later repeats only add latency samples.
            cells = [dict(_job_cell(device, mv, remote, settings), id=self.frame_id(mv, r),
                          **({} if r == 0 else {"eval_inputs": None})) for mv, r in self.expected]
            proc.stdin.write(encode_job(cells, device.runtime))
            proc.stdin.close()
            frames = _Frames(proc)
            hello: dict[str, Any] = {}
            while self.pending:
                frame = frames.next(settings.cell_timeout_s + 60)
                if frame is None or frame["type"] == "done":
                    proc.wait(5)  # an agent that said "done" exits by itself: no kill round trip needed
                    break
                if frame["type"] == "fatal":
                    self.record["env"] = frame.get("env")
                    self.fail_all("environment_error", str(frame.get("error"))[:1000])
                elif frame["type"] == "hello":
                    hello = frame
                    self.record.update(env=frame.get("env"), agent_version=frame.get("agent_version"))
                elif frame["type"] == "cell":
                    self.accept(frame, hello)
            if self.pending and self.expected:
                # The agent ended early: a lost connection is retried, a dead agent costs the current cell.
                if not _alive(transport):
                    raise TransportError("connection_lost", "connection lost during the run")
                self.fail_current("crashed", "agent ended without a result for this cell", proc.stderr_tail())
        except ProtocolError as exc:
            self.fail_current("invalid_output", f"agent output rejected: {exc}", proc.stderr_tail() if proc else None)
        finally:
            if proc is not None:
                proc.kill()

    def _benchmark_model(self, transport: Transport) -> None:
        """Devices without Python (stock Android): LiteRT's native benchmark_model, one run per variant.

        The tool prints aggregates only: no raw samples and no outputs (the cell lists them as unavailable).
        Repeats are not interleaved here: each variant is run once.
        """
        from .benchmark_model import benchmark_model_argv, parse_benchmark_output

        device, settings = self.device, self.settings
        binary = Path(device.benchmark_binary or "").expanduser()
        if not device.benchmark_binary or not binary.is_file():
            self.fail_all("environment_error", f"benchmark_binary {binary} not found: give the path of LiteRT's "
                                               "benchmark_model for this device (edgebench never downloads it)")
            return
        remote = self._ship(transport, [binary])
        transport.run(["chmod", "755", remote[binary]], 60)
        self.pending = list({mv.key: (mv, 0) for mv, _ in self.pending}.values())
        while self.pending:
            mv, _ = self.pending[0]
            self.expected = [self.pending[0]]
            assert mv.path is not None
            argv = benchmark_model_argv(
                remote[binary], remote[mv.path], threads=settings.threads or device.threads, num_runs=settings.runs,
                warmup_runs=settings.warmup, min_secs=settings.min_seconds, warmup_min_secs=settings.warmup_seconds,
                external_delegate_path=device.delegate_library, external_delegate_options=device.delegate_options,
                use_gpu=device.delegate == "gpu", use_nnapi=device.delegate == "nnapi", taskset=device.taskset,
                enable_op_profiling=settings.op_profile)
            result = transport.run(argv, settings.cell_timeout_s)
            parsed = parse_benchmark_output((result.stdout + result.stderr).decode(errors="replace"), result.code)
            cell = empty_cell(device.name, mv, parsed["status"], parsed["error"])
            cell.update({k: v for k, v in parsed.items() if k in cell or k in ("unavailable", "benchmark_model")})
            cell["flags"] = sorted(set(mv.flags) | set(parsed["flags"]))
            self.on_cell(cell)
            self.pending.pop(0)


def measure_device(device: Device, variants: list[ModelVariant], settings: Settings,
                   on_cell: CellCallback, on_device: DeviceCallback) -> None:
    """Measure every variant on one device; every variant ends as exactly one on_cell call.

    Each attempt either settles at least one pending result or uses up one of
    the bounded reconnects, so the loop always ends.
    """
    run = _DeviceRun(device, variants, settings, on_cell)
    reconnects = 0
    while run.pending:
        try:
            run.attempt()
        except TransportError as exc:
            if exc.status == "connection_lost" and reconnects < len(RECONNECT_BACKOFF_S):
                time.sleep(RECONNECT_BACKOFF_S[reconnects])
                reconnects += 1
            elif exc.status == "timeout" and run.expected:
                run.fail_current("timeout", exc.message)
            else:
                run.fail_all(exc.status, exc.message)
        except EdgebenchError as exc:  # e.g. no adb client on the host: this device's cells, not the whole run
            run.fail_all("environment_error", str(exc))
    on_device(run.record)


def _alive(transport: Transport) -> bool:
    try:
        return transport.run(["true"], 15).code == 0
    except TransportError:
        return False


def measure_all(plan: list[tuple[Device, list[ModelVariant]]], settings: Settings,
                on_cell: CellCallback, on_device: DeviceCallback) -> None:
    """Every device in parallel; callbacks are serialised so the store sees one writer."""
    lock = threading.Lock()

    def locked(fn: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        def call(item: dict[str, Any]) -> None:
            with lock:
                fn(item)
        return call

    with ThreadPoolExecutor(max(1, len(plan))) as pool:
        for f in [pool.submit(measure_device, d, variants, settings, locked(on_cell), locked(on_device))
                  for d, variants in plan]:
            f.result()
