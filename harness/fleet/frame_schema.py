"""The agent's frames, field by field (the protocol is described in device_agent/__init__.py).

Agent output is untrusted: a frame is checked against its schema, every nested field included, before
anything else reads it. A field of the wrong type, an unknown field, a number that is not finite or is
out of range (negative durations, sizes or memory; integers beyond 2**53; samples beyond MAX_SAMPLE_MS,
so that no sum or spread over them can overflow) makes the whole frame invalid. Long texts are cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np


class FrameError(Exception):
    """The frame does not match its schema; the message names the field."""


Check = Callable[[Any, str], Any]  # (value, where) -> the value to keep; FrameError when invalid

MAX_INT = 2**53  # beyond this a JSON number is not an exact float: no field needs more
MAX_SAMPLE_MS = 1e7  # ~3 hours: longer is not a latency
MAX_SAMPLES = 1_000_000
MAX_TEXT = 4000
MAX_NAME = 1000
MAX_ITEMS = 10_000


def _optional(check: Check, optional: bool) -> Check:
    def run(value: Any, where: str) -> Any:
        if value is None:
            if optional:
                return None
            raise FrameError(f"{where} is missing")
        return check(value, where)
    return run


def number(minimum: float | None = 0.0, maximum: float = MAX_INT, *, optional: bool = True) -> Check:
    def check(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FrameError(f"{where} must be a number, not {type(value).__name__}")
        if not math.isfinite(value) or abs(value) > MAX_INT:
            raise FrameError(f"{where} must be a finite number")
        if (minimum is not None and value < minimum) or value > maximum:
            raise FrameError(f"{where} is out of range ({value!r})")
        return value
    return _optional(check, optional)


def integer(minimum: int | None = 0, *, optional: bool = True) -> Check:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FrameError(f"{where} must be an integer, not {type(value).__name__}")
        if abs(value) > MAX_INT or (minimum is not None and value < minimum):
            raise FrameError(f"{where} is out of range ({value!r})")
        return value
    return _optional(check, optional)


def text(limit: int = MAX_NAME, *, cut: bool = False, optional: bool = True) -> Check:
    """A string; longer than ``limit``: refused, or (``cut``) kept as its tail."""
    def check(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise FrameError(f"{where} must be text, not {type(value).__name__}")
        if len(value) > limit:
            if not cut:
                raise FrameError(f"{where} is longer than {limit} characters")
            return value[-limit:]
        return value
    return _optional(check, optional)


def boolean(*, optional: bool = True) -> Check:
    def check(value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise FrameError(f"{where} must be true or false")
        return value
    return _optional(check, optional)


def samples(limit: int = MAX_SAMPLES) -> Check:
    """Raw latency samples (ms): many, so checked in bulk."""
    def check(value: Any, where: str) -> list[float]:
        if not isinstance(value, list):
            raise FrameError(f"{where} must be a list, not {type(value).__name__}")
        if len(value) > limit:
            raise FrameError(f"{where} has more than {limit} items")
        if not {type(v) for v in value} <= {int, float}:
            raise FrameError(f"{where} must hold numbers only")
        if value:
            a = np.asarray(value, dtype=np.float64)
            if not np.isfinite(a).all() or a.min() < 0 or a.max() > MAX_SAMPLE_MS:
                raise FrameError(f"{where} holds a value out of range (0 to {MAX_SAMPLE_MS:g} ms)")
        return value
    return _optional(check, True)


def one_of(*values: str, optional: bool = False) -> Check:
    def check(value: Any, where: str) -> str:
        if value not in values:
            raise FrameError(f"{where} must be one of {', '.join(values)}, not {str(value)[:40]!r}")
        return str(value)
    return _optional(check, optional)


def seq(item: Check, limit: int = MAX_ITEMS, *, optional: bool = True) -> Check:
    def check(value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise FrameError(f"{where} must be a list, not {type(value).__name__}")
        if len(value) > limit:
            raise FrameError(f"{where} has more than {limit} items")
        return [item(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return _optional(check, optional)


def table(value_check: Check, limit: int = MAX_ITEMS, *, optional: bool = True) -> Check:
    """A mapping from names to values of one kind (thermal zones, outputs)."""
    def check(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise FrameError(f"{where} must be a mapping, not {type(value).__name__}")
        if len(value) > limit:
            raise FrameError(f"{where} has more than {limit} entries")
        return {text()(k, f"{where} key"): value_check(v, f"{where}.{k}") for k, v in value.items()}
    return _optional(check, optional)


def record(fields: dict[str, Check], *, optional: bool = True) -> Check:
    """A mapping with exactly these fields (missing ones are None); any other field is refused."""
    def check(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise FrameError(f"{where} must be a mapping, not {type(value).__name__}")
        unknown = sorted(str(k) for k in value if k not in fields)
        if unknown:
            raise FrameError(f"{where} has unknown field {unknown[0][:40]!r}")
        return {name: spec(value.get(name), f"{where}.{name}" if where else name)
                for name, spec in fields.items() if name in value}
    return _optional(check, optional)


RUNTIME = record({"name": text(), "version": text()})
THERMAL = record({"temperatures_c": table(number(minimum=-300.0, maximum=1000.0)), "throttled": integer(),
                  "cpu_freq_khz": seq(integer()), "loadavg": seq(number())})
COVERAGE = record({"ops": integer(), "partitions": integer(), "cpu_ops": integer(), "cpu_op_names": seq(text()),
                   "fully_delegated": boolean()})
DELEGATE = record({"name": text(optional=False), "coverage": COVERAGE})
TENSOR = record({"name": text(optional=False), "tensor": text(), "shape": seq(integer(minimum=-1), 64),
                 "shape_signature": seq(integer(minimum=-1), 64), "dtype": text(), "scale": number(),
                 "zero_point": integer(minimum=None)})
OUTPUT = record({"name": text(optional=False), "shape": seq(integer(), 64, optional=False), "dtype": text(),
                 "data_b64": text(limit=1 << 26, optional=False)})
READING = record({"t_ms": number(maximum=MAX_SAMPLE_MS * 100, optional=False),
                  "temperatures_c": table(number(minimum=-300.0, maximum=1000.0)), "cpu_freq_khz": seq(integer()),
                  "throttled": integer(), "power_w": number(maximum=1e6), "thermal_status": integer()})
ENV = record({"arch": text(), "cpu_model": text(), "cores": integer(), "os": text(), "kernel": text(),
              "hostname": text(), "python": text(), "python_executable": text(), "numpy": text(), "runtime": RUNTIME,
              "governor": text(), "cpu_affinity": seq(integer())})
_COMMON = {"schema_version": integer(), "type": text()}
CELL_STATUSES = ("ok", "failed_to_load", "failed_to_prepare", "failed_to_invoke", "invalid_input", "invalid_output",
                 "timeout", "crashed")  # what the agent may report; the other statuses are the host's to give
MS = number(maximum=MAX_SAMPLE_MS)
POWER_METHODS = ("hwmon", "pmic_read_adc", "battery")  # device_agent/telemetry.py

FRAMES: dict[str, Check] = {
    "hello": record({**_COMMON, "agent_version": text(), "runtime": RUNTIME, "env": ENV}, optional=False),
    "done": record(_COMMON, optional=False),
    "fatal": record({**_COMMON, "error": text(MAX_TEXT, cut=True), "env": ENV}, optional=False),
    "probe": record({**_COMMON, "runtime": RUNTIME, "error": text(MAX_TEXT, cut=True), "env": ENV, "thermal": THERMAL,
                     "agent_version": text()}, optional=False),
    "cell": record({
        **_COMMON, "id": text(optional=False), "status": one_of(*CELL_STATUSES), "error": text(MAX_TEXT, cut=True),
        "phase": text(), "stderr_tail": text(MAX_TEXT, cut=True), "model_bytes": integer(), "load_ms": MS,
        "allocate_ms": MS, "init_ms": MS, "first_inference_ms": MS, "samples_ms": samples(),
        "warmup_runs": integer(), "rss_before_mb": number(), "rss_after_mb": number(), "peak_rss_mb": number(),
        "rss_growth_mb": number(minimum=None), "threads": integer(minimum=None), "delegate": DELEGATE,
        "inputs": seq(TENSOR, 1000), "outputs": seq(TENSOR, 1000), "stateful": boolean(),
        "eval_outputs": seq(OUTPUT, 1000), "clock_ns": record({"load": integer(), "timed": integer()}),
        "cell_ms": MS, "thermal_before": THERMAL, "thermal_after": THERMAL,
        "sample_t_ms": samples(), "telemetry": seq(READING, 100_000), "power_method": one_of(*POWER_METHODS, optional=True),
    }, optional=False),
}


def check_frame(frame: dict[str, Any]) -> dict[str, Any]:
    """The frame as checked against the schema of its type (FrameError otherwise)."""
    kind = frame.get("type")
    if kind not in FRAMES:
        raise FrameError(f"unknown frame type {str(kind)[:40]!r}")
    checked: dict[str, Any] = FRAMES[str(kind)](frame, "")
    return checked
