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

from .inventory import Device
from .models import ModelVariant
from .protocol import ProtocolError, check_cell, encode_job, read_frame
from .shipping import agent_zip, ship
from .stats import latency_summary, validity_flags
from .store import now_iso
from .transport import RemoteProcess, Transport, TransportError, make_transport

RECONNECT_BACKOFF_S = (1.0, 2.0, 4.0)


@dataclass
class Settings:
    runs: int = 50
    warmup: int = 1
    min_seconds: float = 1.0
    warmup_seconds: float = 0.5
    max_runs: int = 10000
    threads: int | None = None
    cell_timeout_s: float = 600.0
    trust_new_hosts: bool = False
    evaluate: bool = True

    def describe(self) -> dict[str, Any]:
        return {"runs": self.runs, "warmup": self.warmup, "min_seconds": self.min_seconds,
                "warmup_seconds": self.warmup_seconds, "max_runs": self.max_runs, "threads": self.threads,
                "cell_timeout_s": self.cell_timeout_s}


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
        "accuracy": _accuracy(mv, frame.get("eval_outputs") or {}),
    })
    if latency:
        cell["flags"] = sorted(set(cell["flags"]) | set(validity_flags(latency, cell["thermal_before"],
                                                                        cell["thermal_after"])))
    return cell


def _job_cell(device: Device, mv: ModelVariant, remote: dict[Path, str], settings: Settings) -> dict[str, Any]:
    assert mv.path is not None
    delegate = None
    if device.delegate or device.delegate_library:
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


def measure_device(device: Device, variants: list[ModelVariant], settings: Settings,
                   on_cell: CellCallback, on_device: DeviceCallback) -> None:
    """Measure every variant on one device; every variant ends as exactly one on_cell call."""
    record: dict[str, Any] = {**device.describe(), "status": "ok", "error": None, "env": None,
                              "agent_version": None, "bytes_shipped": 0, "files_shipped": 0}
    remaining = [mv for mv in variants if mv.path is not None and mv.status == "ok"]
    for mv in variants:
        if mv not in remaining:
            on_cell(empty_cell(device.name, mv, mv.status, mv.error))
    attempt = 0
    while remaining:
        transport: Transport | None = None
        proc: RemoteProcess | None = None
        try:
            transport = make_transport(device, trust_new_hosts=settings.trust_new_hosts)
            transport.connect()
            files = [agent_zip()] + [mv.path for mv in remaining if mv.path] + [
                mv.eval_inputs for mv in remaining if settings.evaluate and mv.eval_inputs]
            digests = {mv.path: mv.sha256 for mv in remaining if mv.path and mv.sha256}
            shipped = ship(transport, [f for f in files if f is not None], digests)
            record["bytes_shipped"] += shipped.bytes_sent
            record["files_shipped"] += shipped.files_sent
            proc = transport.start([device.python, shipped.remote[agent_zip()], "serve", device.runtime])
            cells = [_job_cell(device, mv, shipped.remote, settings) for mv in remaining]
            proc.stdin.write(encode_job(cells, device.runtime))
            proc.stdin.close()
            frames = _Frames(proc)
            hello: dict[str, Any] = {}
            silent_limit = settings.cell_timeout_s + 60
            while remaining:
                frame = frames.next(silent_limit)
                if frame is None:
                    raise EOFError
                if frame["type"] == "fatal":
                    record.update(status="environment_error", error=str(frame.get("error"))[:1000],
                                  env=frame.get("env"))
                    for mv in remaining:
                        on_cell(empty_cell(device.name, mv, "environment_error", record["error"]))
                    remaining = []
                elif frame["type"] == "hello":
                    hello = frame
                    record.update(env=frame.get("env"), agent_version=frame.get("agent_version"))
                elif frame["type"] == "cell":
                    mv = remaining[0]
                    on_cell(build_cell(device, mv, check_cell(frame, mv.key), hello))
                    remaining.pop(0)
                elif frame["type"] == "done":
                    break
            if remaining:
                raise EOFError
        except EOFError:
            # The agent ended early. A lost connection is retried; a dead agent costs the current cell.
            assert transport is not None
            tail = proc.stderr_tail() if proc else ""
            if _alive(transport) and remaining:
                on_cell({**empty_cell(device.name, remaining.pop(0), "crashed",
                                      "agent ended without a result for this cell"), "stderr_tail": tail or None})
            elif not _retry(attempt, device, record, remaining, on_cell, "connection_lost",
                            "connection lost during the run"):
                remaining = []
            attempt += 1
        except ProtocolError as exc:
            mv = remaining.pop(0)
            on_cell({**empty_cell(device.name, mv, "invalid_output", f"agent output rejected: {exc}"),
                     "stderr_tail": proc.stderr_tail() if proc else None})
            attempt += 1
        except TransportError as exc:
            if exc.status in ("connection_lost",) and _retry(attempt, device, record, remaining, on_cell,
                                                              exc.status, exc.message):
                attempt += 1
                continue
            if exc.status == "timeout" and remaining:
                on_cell(empty_cell(device.name, remaining.pop(0), "timeout", exc.message))
                attempt += 1
                continue
            record.update(status=exc.status, error=exc.message)
            for mv in remaining:
                on_cell(empty_cell(device.name, mv, exc.status, exc.message))
            remaining = []
        finally:
            if proc is not None:
                proc.kill()
            if transport is not None:
                transport.close()
        if attempt > len(RECONNECT_BACKOFF_S) + len(variants):
            break  # a device that keeps failing differently: stop, every cell already has a result
    on_device(record)


def _alive(transport: Transport) -> bool:
    try:
        return transport.run(["true"], 15).code == 0
    except TransportError:
        return False


def _retry(attempt: int, device: Device, record: dict[str, Any], remaining: list[ModelVariant],
           on_cell: CellCallback, status: str, message: str) -> bool:
    """Back off before reconnecting; after the last attempt the remaining cells get ``status``."""
    if attempt < len(RECONNECT_BACKOFF_S):
        time.sleep(RECONNECT_BACKOFF_S[attempt])
        return True
    record.update(status=status, error=message)
    for mv in remaining:
        on_cell(empty_cell(device.name, mv, status, message))
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
