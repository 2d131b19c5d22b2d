"""The record that flows through every stage: the cell, its parts, its status, and the run around it.

A *cell* is one (device, model, variant) result. Its JSON form is the export contract
(``edgebench export``): the TypedDicts below are that form, key for key, so mypy checks every
reader (gate, report, export) against it. Cells are built here and nowhere else:
``build_cell`` for any result, ``merge_repeats`` for the repeats of one variant.

The key order of a built cell is part of the contract too (exports of old and new runs must
read the same): the required keys in the order below, then the optional ones that apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any, Protocol, TypedDict

from ..common.clock import now_iso
from .stats import delegate_flags, latency_summary, validity_flags
from .sustained import Sustained, TelemetryReading, analyse


class Status(str, Enum):
    """Every status a cell (or a device, or a converted variant) can have, whichever layer produced it."""

    OK = "ok"
    # the agent, measuring on the device
    FAILED_TO_LOAD = "failed_to_load"
    FAILED_TO_PREPARE = "failed_to_prepare"
    FAILED_TO_INVOKE = "failed_to_invoke"
    INVALID_INPUT = "invalid_input"
    INVALID_OUTPUT = "invalid_output"  # also: an agent frame the host refused
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    # the transport, reaching the device
    UNREACHABLE = "unreachable"
    HOST_KEY_UNKNOWN = "host_key_unknown"
    HOST_KEY_CHANGED = "host_key_changed"
    AUTH_FAILED = "auth_failed"
    CONNECTION_LOST = "connection_lost"
    # the runner: the device cannot measure at all (no runtime, no tool, no client on the host)
    ENVIRONMENT_ERROR = "environment_error"
    # conversion on the host (manifest variants; their cells are not measured)
    CONVERSION_FAILED = "conversion_failed"
    # `devices setup`
    SETUP_FAILED = "setup_failed"

    def __str__(self) -> str:  # "ok", also in f-strings on every Python version
        return str(self.value)


class LatencySummary(TypedDict):
    """Milliseconds. ``samples`` holds every raw sample (None when the tool keeps none: benchmark_model)."""

    count: int | None
    p50: float | None
    p90: float | None
    p99: float | None
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    samples: list[float] | None
    p50_ci95: list[float] | None
    cv: float | None


class Runtime(TypedDict):
    name: str
    version: str | None


class Coverage(TypedDict, total=False):
    ops: int
    partitions: int
    cpu_ops: int | None
    cpu_op_names: list[str]
    fully_delegated: bool


class Delegate(TypedDict):
    name: str
    coverage: Coverage | None


class Thermal(TypedDict, total=False):
    temperatures_c: dict[str, float] | None
    throttled: int | None
    cpu_freq_khz: list[int] | None
    loadavg: list[float] | None


class IOTensor(TypedDict):
    name: str
    tensor: str
    shape: list[int]
    shape_signature: list[int]
    dtype: str
    scale: float
    zero_point: int


class OutputAccuracy(TypedDict):
    cosine: float | None
    snr_db: float | None
    max_abs_err: float | None
    mean_abs_err: float | None
    top1_agreement: float | None
    error: str | None


Accuracy = dict[str, OutputAccuracy]  # by output name


class _CellFields(TypedDict):
    device: str
    model: str
    variant: str
    status: Status
    error: str | None
    stderr_tail: str | None
    latency_ms: LatencySummary | None
    init_ms: float | None
    first_inference_ms: float | None
    peak_rss_mb: float | None
    rss_growth_mb: float | None
    model_bytes: int | None
    model_sha256: str | None
    runtime: Runtime | None
    threads: int | None
    delegate: Delegate | None
    inputs: list[IOTensor] | None
    outputs: list[IOTensor] | None
    thermal_before: Thermal | None
    thermal_after: Thermal | None
    accuracy: Accuracy | None
    conversion: dict[str, Any] | None  # the variant's manifest entry (diagnostics, host accuracy)
    flags: list[str]  # why a number should not be trusted; computed once, when the cell is built
    measured_at: str


class Cell(_CellFields, total=False):
    warmup_runs: int | None  # the agent's cells
    stateful: bool | None
    cell_ms: float | None  # everything the cell cost on the device
    unavailable: list[str]  # benchmark_model's cells: the fields that tool cannot fill
    benchmark_model: dict[str, Any]  # its own figures
    repeats: int  # measured cells: how many processes the samples come from
    repeat_sizes: list[int]  # how many of the samples, in order, each process measured
    baseline_for: str  # an in-run baseline cell (model "NAME@baseline"): the candidate model it is compared with
    sustained: Sustained  # `run --sustained`: the timeline, telemetry, burst/sustained p90, energy


class DeviceRecord(TypedDict, total=False):
    name: str
    transport: str
    host: str | None
    groups: list[str]
    tags: list[str]
    runtime: str
    delegate: str | None
    threads: int | None
    status: Status
    error: str | None
    env: dict[str, Any] | None
    agent_version: str | None
    bytes_shipped: int
    files_shipped: int
    android: dict[str, Any] | None


class RunHeader(TypedDict, total=False):
    id: str
    label: str | None
    started_at: str
    finished_at: str | None
    settings: dict[str, Any]
    inventory: str | None
    suite: str | None
    commit: str | None
    host: dict[str, Any]


class Export(TypedDict):
    schema_version: int
    run: RunHeader
    devices: list[DeviceRecord]
    results: list[Cell]


class Measured(TypedDict, total=False):
    """What a measurer got for one repeat of one variant, before it becomes a cell."""

    samples_ms: list[float]
    latency_ms: LatencySummary  # aggregates from a tool that keeps no samples
    stderr_tail: str | None
    init_ms: float | None
    first_inference_ms: float | None
    peak_rss_mb: float | None
    rss_growth_mb: float | None
    model_bytes: int | None
    runtime: Runtime | None
    threads: int | None
    delegate: Delegate | None
    inputs: list[IOTensor] | None
    outputs: list[IOTensor] | None
    thermal_before: Thermal | None
    thermal_after: Thermal | None
    warmup_runs: int | None
    stateful: bool | None
    cell_ms: float | None
    unavailable: list[str]
    benchmark_model: dict[str, Any]
    flags: list[str]  # flags the measuring tool raised itself
    accuracy: Accuracy | None  # outputs against the reference model, compared on the host
    # sustained cells: when each sample started, the device's sensors, and where its power reading came from
    sample_t_ms: list[float]
    telemetry: list[TelemetryReading]
    power_method: str | None
    repeat_sizes: list[int]  # merged repeats: samples per process


class VariantInfo(Protocol):
    """What a cell needs to know about the variant it measures (fleet.jobs.ModelVariant is one)."""

    model: str
    variant: str
    bytes: int | None
    sha256: str | None
    conversion: dict[str, Any] | None
    flags: list[str]
    baseline_for: str | None


_OPTIONAL_MEASURED = ("warmup_runs", "stateful", "cell_ms", "unavailable", "benchmark_model", "repeat_sizes")


def build_cell(device: str, mv: VariantInfo, status: Status, error: str | None, measured: Measured | None = None,
               *, repeats: int | None = None) -> Cell:
    """The one constructor of a cell: every export field present, summaries and trust flags computed once."""
    cell: Cell = {
        "device": device, "model": mv.model, "variant": mv.variant, "status": Status(status), "error": error,
        "stderr_tail": None, "latency_ms": None, "init_ms": None, "first_inference_ms": None, "peak_rss_mb": None,
        "rss_growth_mb": None, "model_bytes": mv.bytes, "model_sha256": mv.sha256, "runtime": None, "threads": None,
        "delegate": None, "inputs": None, "outputs": None, "thermal_before": None, "thermal_after": None,
        "accuracy": None, "conversion": mv.conversion, "flags": list(mv.flags), "measured_at": now_iso(),
    }
    if measured is not None:
        samples = measured.get("samples_ms")
        latency = latency_summary(samples, measured.get("repeat_sizes")) if samples else measured.get("latency_ms")
        cell.update({
            # the stderr of a process that worked is its own business; of one that failed, the reason
            "stderr_tail": measured.get("stderr_tail") if status != Status.OK else None,
            "latency_ms": latency,
            "init_ms": measured.get("init_ms"),
            "first_inference_ms": measured.get("first_inference_ms"),
            "peak_rss_mb": measured.get("peak_rss_mb"),
            "rss_growth_mb": measured.get("rss_growth_mb"),
            "model_bytes": measured.get("model_bytes", mv.bytes),
            "runtime": measured.get("runtime"),
            "threads": measured.get("threads"),
            "delegate": measured.get("delegate"),
            "inputs": measured.get("inputs"),
            "outputs": measured.get("outputs"),
            "thermal_before": measured.get("thermal_before"),
            "thermal_after": measured.get("thermal_after"),
        })
        for key in _OPTIONAL_MEASURED:
            if key in measured:
                cell[key] = measured[key]  # type: ignore[literal-required]
        cell["accuracy"] = measured.get("accuracy")
        if samples and "sample_t_ms" in measured:
            cell["sustained"] = analyse(samples, measured["sample_t_ms"], measured.get("telemetry") or [],
                                        measured.get("power_method"))
        flags = set(mv.flags) | set(measured.get("flags") or ())
        if latency:
            flags |= set(validity_flags(latency, cell["thermal_before"], cell["thermal_after"]))
            flags |= set(delegate_flags(cell["delegate"]))
        cell["flags"] = sorted(flags)
    if repeats is not None:
        cell["repeats"] = repeats
    if mv.baseline_for:
        cell["baseline_for"] = mv.baseline_for
    return cell


def merge_repeats(parts: Sequence[Measured]) -> Measured:
    """The repeats of one variant as one measurement: every sample, in repeat order; the state after the last.

    Everything measured once per process (init, first inference, memory) is the first repeat's, and so is
    a sustained cell's timeline (its sample times cover the first repeat's samples only).
    """
    merged: Measured = dict(parts[0])  # type: ignore[assignment]
    merged["thermal_after"] = parts[-1].get("thermal_after")
    merged["samples_ms"] = [s for part in parts for s in part.get("samples_ms") or ()]
    if len(parts) > 1:
        merged["repeat_sizes"] = [len(part.get("samples_ms") or ()) for part in parts]
    return merged


def extend_cell(cell: Cell, more: Cell) -> Cell:
    """``cell`` with the repeats of ``more`` (a later measurement of the same variant) added after its own."""
    sizes = [*(cell.get("repeat_sizes") or [len(samples(cell))]), *(more.get("repeat_sizes") or [len(samples(more))])]
    merged: Cell = {**cell, "repeats": (cell.get("repeats") or 1) + (more.get("repeats") or 1), "repeat_sizes": sizes}
    latency = latency_summary(samples(cell) + samples(more), sizes)
    merged["latency_ms"] = latency
    flags = set(cell["flags"]) - {"uncertain_p50"} | set(more["flags"]) - {"uncertain_p50"}
    flags |= set(validity_flags(latency, cell["thermal_before"], more["thermal_after"]))
    merged["flags"] = sorted(flags)
    merged["thermal_after"] = more["thermal_after"]
    return merged


def p50(cell: Cell) -> float | None:
    latency = cell.get("latency_ms")
    return latency["p50"] if latency else None


def samples(cell: Cell) -> list[float]:
    latency = cell.get("latency_ms")
    return (latency["samples"] if latency else None) or []


def cell_key(cell: Cell) -> tuple[str, str, str]:
    return (cell["device"], cell["model"], cell["variant"])
