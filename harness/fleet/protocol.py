"""Host side of the agent wire protocol (format documented in device_agent/__init__.py).

Agent output is untrusted: every frame is size-capped, parsed without NaN, Infinity,
huge integers or unbounded nesting, and checked field by field against its schema
(frame_schema.py) before anything else touches it.
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
from .frame_schema import FrameError, check_frame


# A frame of MAX_FRAME_BYTES could parse into ~20x its size in Python objects ("[[],[],...]"): the counts of
# containers and values are bounded before parsing. The largest real frames (MAX_SAMPLES samples and their
# times, telemetry readings, tensors) stay well inside.
MAX_CONTAINERS = 1_000_000
MAX_VALUES = 4_000_000


class ProtocolError(Exception):
    """The agent said something that is not a valid frame: its cells become invalid_output."""


def encode_job(cells: list[dict[str, Any]], runtime: str) -> bytes:
    return encode_frame({"type": "job", "cells": cells, "runtime": runtime})


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"agent output contains {name}")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf
        raise ProtocolError(f"agent output contains a number out of range ({text[:30]})")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 16:  # beyond 2**53: no field needs it, and arithmetic on it would overflow
        raise ProtocolError(f"agent output contains an integer of {len(text)} digits")
    return int(text)


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
    if data.count(b"{") + data.count(b"[") > MAX_CONTAINERS or data.count(b",") > MAX_VALUES:
        raise ProtocolError(f"frame holds more than {MAX_CONTAINERS} objects or {MAX_VALUES} values")
    try:
        obj = json.loads(data[:-1].decode("utf-8"), parse_constant=_reject_constant, parse_float=_float,
                         parse_int=_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("frame is nested too deeply") from None
    if not isinstance(obj, dict) or obj.get("schema_version") != SCHEMA_VERSION:
        version = obj.get("schema_version") if isinstance(obj, dict) else None
        raise ProtocolError(f"frame has schema_version {str(version)[:20]!r}, expected {SCHEMA_VERSION}: "
                            "agent and host versions differ")
    try:
        return check_frame(obj)
    except FrameError as exc:
        raise ProtocolError(f"malformed {str(obj.get('type'))[:20]} frame: {exc}") from None


def check_cell(frame: dict[str, Any], expected_id: str) -> dict[str, Any]:
    """A cell frame (already checked against its schema) for the cell the host expects next; returns it
    with its status as a Status and its evaluation outputs decoded to arrays."""
    if frame.get("id") != expected_id:
        raise ProtocolError(f"cell frame for {str(frame.get('id'))[:80]!r} where {expected_id!r} was expected")
    frame["status"] = Status(frame["status"])
    if frame["status"] == Status.OK and not frame.get("samples_ms"):
        raise ProtocolError("an ok cell has no samples")
    outputs = {}
    for item in frame.get("eval_outputs") or []:
        try:
            array = np.frombuffer(base64.b64decode(item["data_b64"], validate=True), dtype="<f4")
            outputs[item["name"]] = array.reshape(item["shape"])
        except ValueError as exc:  # bad base64, or a shape that does not hold the data
            raise ProtocolError(f"malformed evaluation output {item['name'][:80]!r}: {exc}") from None
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
        **({"sample_t_ms": frame["sample_t_ms"], "telemetry": frame.get("telemetry") or [],  # type: ignore[typeddict-item]
            "power_method": frame.get("power_method")} if frame.get("sample_t_ms") is not None else {}),
    }
