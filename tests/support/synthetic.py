"""Synthetic runs for the report and gate tests and benchmarks: cells built by the real constructor from
seeded samples, devices and run headers as a real run records them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.results.record import Cell, Export, Measured, Status, Thermal, build_cell

VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int16x8", "edgetpu", "int8-t2", "fp16-t2", "fp32-t4", "int8-t4")


def synthetic_cell(device: str, model: str, variant: str, samples: list[float] | None, *, status: str = "ok",
                   error: str | None = None, cosine: float | None = 0.999, top1: float | None = None,
                   throttled: int = 0, model_bytes: int = 3_600_000, flags: tuple[str, ...] = (),
                   repeat_sizes: list[int] | None = None, **extra: Any) -> Cell:
    """A result cell as the runner builds it (harness.results.record.build_cell) from these measurements."""
    thermal: list[Thermal] = [{"temperatures_c": {"cpu-thermal": t}, "throttled": v, "cpu_freq_khz": [1500000],
                               "loadavg": [0.3]} for t, v in ((48.5, 0), (63.0, throttled))]
    measured: Measured | None = None
    if samples:
        measured = {
            "samples_ms": samples, "init_ms": 41.5, "first_inference_ms": max(samples) * 1.8, "peak_rss_mb": 88.2,
            "rss_growth_mb": 0.1, "runtime": {"name": "ai-edge-litert", "version": "2.3.0"}, "threads": 2,
            "delegate": {"name": "xnnpack", "coverage": {"partitions": 1, "cpu_ops": 0}},
            "inputs": [{"name": "input", "tensor": "serving_default_input:0", "shape": [1, 96, 96, 3],
                        "shape_signature": [-1, 96, 96, 3], "dtype": "float32", "scale": 0.0, "zero_point": 0}],
            "thermal_before": thermal[0], "thermal_after": thermal[1],
            "accuracy": {"logits": {"cosine": cosine, "snr_db": 31.4, "max_abs_err": 0.02, "mean_abs_err": 0.004,
                                    "top1_agreement": top1, "error": None}} if cosine is not None else None,
        }
        if repeat_sizes:
            measured["repeat_sizes"] = repeat_sizes
    variant_info = _Variant(model, variant, model_bytes, "ab" * 32, None, list(flags))
    cell = build_cell(device, variant_info, Status(status), error, measured)
    cell["measured_at"] = "2026-11-24T07:15:00+00:00"
    cell.update(extra)  # type: ignore[typeddict-item]
    return cell


@dataclass
class _Variant:
    model: str
    variant: str
    bytes: int | None
    sha256: str | None
    conversion: dict[str, Any] | None
    flags: list[str]
    baseline_for: str | None = None


def repeated_samples(rng: np.random.Generator, median: float, offsets: list[float], n: int = 200,
                     spread: float = 0.03) -> tuple[list[float], list[int]]:
    """Samples of len(offsets) processes: each process's level is median * exp(offset) (the run-to-run
    variance a single process never sees), its samples log-normal around it; and the samples per process."""
    out: list[float] = []
    for offset in offsets:
        out += (median * np.exp(offset) * rng.lognormal(0, spread, n)).round(5).tolist()
    return out, [n] * len(offsets)


def synthetic_device(name: str) -> dict[str, Any]:
    return {"name": name, "transport": "ssh", "host": f"{name}.lan", "groups": ["pi"], "tags": [], "status": "ok",
            "error": None, "agent_version": "0.1.0", "bytes_shipped": 1_000_000,
            "env": {"arch": "aarch64", "cpu_model": "Cortex-A72", "cores": 4, "os": "Debian GNU/Linux 12",
                    "kernel": "6.1.0-rpi7", "hostname": name, "python": "3.11.2", "numpy": "1.26.4",
                    "runtime": {"name": "ai-edge-litert", "version": "2.3.0"}, "governor": "ondemand"}}


def synthetic_export(cells: list[Cell], *, run_id: str = "20261124-071500-ab12", label: str | None = "v1.2",
                     started_at: str = "2026-11-24T07:15:00+00:00") -> Export:
    names = list(dict.fromkeys(c["device"] for c in cells))
    return {
        "schema_version": 1,
        "run": {"id": run_id, "label": label, "started_at": started_at, "finished_at": started_at,
                "settings": {"runs": 1000, "warmup": 1, "min_seconds": 1.0, "threads": None},
                "inventory": "inventory.yaml", "commit": "0123456789abcdef0123",
                "host": {"hostname": "ci", "edgebench": "0.1.0"}},
        "devices": [synthetic_device(n) for n in names],
        "results": cells,
    }


def fleet_export(devices: int, variants: int, samples: int, *, seed: int = 0, slowdown: float = 1.0,
                 run_id: str = "20261124-071500-ab12") -> Export:
    rng = np.random.default_rng(seed)
    cells = []
    for d in range(devices):
        for v in range(variants):
            base = (5 + 3 * v + d % 7) * slowdown
            lat = (base * rng.lognormal(0, 0.05, samples)).round(4).tolist()
            cells.append(synthetic_cell(f"pi-{d:02d}", "mobilenet_v2", VARIANTS[v % len(VARIANTS)] + f"-{v}", lat,
                                        cosine=0.9999 - 0.002 * v, model_bytes=13_600_000 // (1 + v)))
    return synthetic_export(cells, run_id=run_id)
