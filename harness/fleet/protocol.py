"""Host side of the agent wire protocol (format documented in device_agent/__init__.py).

Agent output is untrusted: every frame is size-capped, parsed without NaN or
Infinity, and checked against the schema before anything else touches it.
"""

from __future__ import annotations

import base64
import json
import math
from typing import IO, Any

import numpy as np

from device_agent import FRAME_MAGIC, MAX_FRAME_BYTES, SCHEMA_VERSION
from device_agent.agent import encode_frame

from ..results.record import Accuracy, Measured, Runtime, Status

MAX_SAMPLES = 1_000_000
MAX_TEXT = 4000
# What the agent may report for a cell (the other statuses are the host's to give).
CELL_STATUSES = {Status.OK, Status.FAILED_TO_LOAD, Status.FAILED_TO_PREPARE, Status.FAILED_TO_INVOKE,
                 Status.INVALID_INPUT, Status.INVALID_OUTPUT, Status.TIMEOUT, Status.CRASHED}
_NUMBER_FIELDS = ("model_bytes", "load_ms", "allocate_ms", "init_ms", "first_inference_ms", "warmup_runs",
                  "rss_before_mb", "rss_after_mb", "peak_rss_mb", "rss_growth_mb", "threads", "cell_ms")


class ProtocolError(Exception):
    """The agent said something that is not a valid frame: its cells become invalid_output."""


def encode_job(cells: list[dict[str, Any]], runtime: str) -> bytes:
    return encode_frame({"type": "job", "cells": cells, "runtime": runtime})


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"agent output contains {name}")


def read_frame(stream: IO[bytes]) -> dict[str, Any] | None:
    """The next frame from the agent, or None at a clean end of stream."""
    header = stream.readline(64)
    if not header:
        return None
    parts = header.split()
    if len(parts) != 2 or parts[0] != FRAME_MAGIC or not parts[1].isdigit():
        raise ProtocolError(f"not an agent frame: {header[:60]!r}")
    size = int(parts[1])
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {size} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    data = stream.read(size + 1)
    if len(data) != size + 1 or data[-1:] != b"\n":
        raise ProtocolError("frame truncated (agent or connection died mid-frame)")
    try:
        obj = json.loads(data[:-1].decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("schema_version") != SCHEMA_VERSION:
        raise ProtocolError(f"frame has schema_version {obj.get('schema_version') if isinstance(obj, dict) else None!r}, "
                            f"expected {SCHEMA_VERSION}: agent and host versions differ")
    if obj.get("type") not in ("hello", "cell", "done", "fatal", "probe"):
        raise ProtocolError(f"unknown frame type {obj.get('type')!r}")
    return obj


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


def check_cell(frame: dict[str, Any], expected_id: str) -> dict[str, Any]:
    """Validate a cell frame; returns it with eval outputs decoded to arrays."""
    if frame.get("id") != expected_id:
        raise ProtocolError(f"cell frame for {frame.get('id')!r} where {expected_id!r} was expected")
    if frame.get("status") not in CELL_STATUSES:
        raise ProtocolError(f"unknown cell status {frame.get('status')!r}")
    frame["status"] = Status(frame["status"])
    for key in ("error", "stderr_tail", "phase"):
        value = frame.get(key)
        if value is not None and not isinstance(value, str):
            raise ProtocolError(f"{key} must be text")
        if isinstance(value, str):
            frame[key] = value[-MAX_TEXT:]
    for key in _NUMBER_FIELDS:
        if not _number(frame.get(key)):
            raise ProtocolError(f"{key} must be a finite number")
    samples = frame.get("samples_ms", [])
    if not isinstance(samples, list) or len(samples) > MAX_SAMPLES or not all(
        _number(s) and s is not None and s >= 0 for s in samples
    ):
        raise ProtocolError("samples_ms must be a list of non-negative numbers")
    if frame["status"] == "ok" and not samples:
        raise ProtocolError("an ok cell has no samples")
    outputs = {}
    for item in frame.get("eval_outputs") or []:
        try:
            shape = [int(x) for x in item["shape"]]
            array = np.frombuffer(base64.b64decode(item["data_b64"], validate=True), dtype="<f4")
            outputs[str(item["name"])] = array.reshape(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed evaluation output: {exc}") from None
    frame["eval_outputs"] = outputs
    return frame


def measured_from(frame: dict[str, Any], runtime: Runtime | None, accuracy: Accuracy | None) -> Measured:
    """A checked cell frame as a measurement: the record's fields, named as the record names them."""
    return {
        "samples_ms": frame.get("samples_ms") or [],
        "stderr_tail": frame.get("stderr_tail"),
        "init_ms": frame.get("init_ms"),
        "first_inference_ms": frame.get("first_inference_ms"),
        "peak_rss_mb": frame.get("peak_rss_mb"),
        "rss_growth_mb": frame.get("rss_growth_mb"),
        **({"model_bytes": frame["model_bytes"]} if "model_bytes" in frame else {}),  # type: ignore[typeddict-item]
        "runtime": runtime,
        "threads": frame.get("threads"),
        "delegate": frame.get("delegate"),
        "inputs": frame.get("inputs"),
        "outputs": frame.get("outputs"),
        "thermal_before": frame.get("thermal_before"),
        "thermal_after": frame.get("thermal_after"),
        "warmup_runs": frame.get("warmup_runs"),
        "stateful": frame.get("stateful"),
        "cell_ms": frame.get("cell_ms"),
        "accuracy": accuracy,
    }
