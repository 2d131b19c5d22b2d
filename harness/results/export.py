"""Exports of a stored run: the export JSON (the contract: see results.record) and pytest-benchmark's format."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from .record import Export, Status


def write_json(export: Export | dict[str, Any], stream: IO[str]) -> None:
    """The export JSON as `edgebench export` prints it."""
    json.dump(export, stream, indent=1, allow_nan=False)
    stream.write("\n")


def _pb_stats(samples_ms: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's Stats.as_dict() (plus data), in its unit: seconds."""
    data = np.asarray(samples_ms, dtype=np.float64) / 1000.0
    mean, std = float(data.mean()), float(data.std(ddof=1)) if data.size > 1 else 0.0
    q1, median, q3 = (float(x) for x in np.percentile(data, [25, 50, 75]))
    iqr = q3 - q1
    inside = data[(data >= q1 - 1.5 * iqr) & (data <= q3 + 1.5 * iqr)]
    iqr_outliers = int(data.size - inside.size)
    stddev_outliers = int(((data < mean - std) | (data > mean + std)).sum())
    total = float(data.sum())
    return {
        "min": float(data.min()), "max": float(data.max()), "mean": mean, "stddev": std, "rounds": int(data.size),
        "median": median, "iqr": iqr, "q1": q1, "q3": q3, "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers, "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": float(inside.min()), "hd15iqr": float(inside.max()), "ops": data.size / total if total else 0.0,
        "total": total, "data": data.tolist(), "iterations": 1,
    }


def pytest_benchmark_json(export: Export) -> dict[str, Any]:
    """The run in pytest-benchmark's JSON format (`pytest-benchmark compare` reads it); measured cells only.

    One benchmark per cell: group = model, fullname = device::model::variant (stable across runs, so
    compare can match them). Device environments and edgebench's own numbers go into extra_info.
    """
    run = export.get("run") or {}
    host = run.get("host") or {}
    settings = run.get("settings") or {}
    envs = {d["name"]: d.get("env") for d in export.get("devices") or []}
    benchmarks = []
    for cell in export.get("results") or []:
        latency = cell.get("latency_ms")
        if cell.get("status") != Status.OK or not latency or not latency.get("samples"):
            continue
        device, model, variant = cell["device"], cell["model"], cell["variant"]
        benchmarks.append({
            "group": model,
            "name": f"{model}[{device}-{variant}]",
            "fullname": f"{device}::{model}::{variant}",
            "params": {"device": device, "variant": variant},
            "param": f"{device}-{variant}",
            "extra_info": {
                "device": device, "model": model, "variant": variant, "runtime": cell.get("runtime"),
                "threads": cell.get("threads"), "p90_ms": latency.get("p90"), "p99_ms": latency.get("p99"),
                "init_ms": cell.get("init_ms"), "peak_rss_mb": cell.get("peak_rss_mb"),
                "model_bytes": cell.get("model_bytes"), "flags": cell.get("flags") or [], "env": envs.get(device),
            },
            "options": {"min_rounds": settings.get("runs"), "min_time": settings.get("min_seconds"),
                        "max_time": None, "warmup": settings.get("warmup"), "timer": "perf_counter_ns",
                        "disable_gc": False},
            "stats": _pb_stats(latency["samples"] or []),
        })
    return {
        "machine_info": {"node": host.get("hostname"), "edgebench": host.get("edgebench"),
                         "devices": envs},
        "commit_info": {"id": run.get("commit") or "unknown", "time": None, "author_time": None, "dirty": None,
                        "project": None, "branch": None},
        "benchmarks": benchmarks,
        "datetime": run.get("finished_at") or run.get("started_at"),
        "version": f"edgebench-{host.get('edgebench') or 'unknown'}",
    }
