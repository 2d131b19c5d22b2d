"""How fast is `render_report` on a big fleet, and how big is the file?

Builds a 50 devices x 10 variants x 1000 samples export from real harness.stats summaries, renders it a few
times and prints the median time and the file size against the targets (2 s, 3 MB).

    /tmp/ebvenv/bin/python benchmarks/bench_report.py [--devices 50] [--variants 10] [--samples 1000] [--baseline]

`synthetic_cell` / `synthetic_export` are also what tests/test_report.py builds its exports from.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.report import render_report  # noqa: E402
from harness.stats import latency_summary, validity_flags  # noqa: E402

TARGET_SECONDS = 2.0
TARGET_BYTES = 3_000_000
VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int16x8", "edgetpu", "int8-t2", "fp16-t2", "fp32-t4", "int8-t4")


def synthetic_cell(device: str, model: str, variant: str, samples: list[float] | None, *, status: str = "ok",
                   error: str | None = None, cosine: float | None = 0.999, top1: float | None = None,
                   throttled: int = 0, model_bytes: int = 3_600_000, **extra: Any) -> dict[str, Any]:
    """A result cell as the runner writes it: latency from harness.stats on the given samples."""
    latency = latency_summary(samples) if samples else None
    thermal = [{"temperatures_c": {"cpu-thermal": t}, "throttled": v, "cpu_freq_khz": [1500000], "loadavg": [0.3]}
               for t, v in ((48.5, 0), (63.0, throttled))]
    cell: dict[str, Any] = {
        "device": device, "model": model, "variant": variant, "status": status, "error": error,
        "stderr_tail": None, "latency_ms": latency, "init_ms": 41.5 if latency else None,
        "first_inference_ms": (latency["max"] * 1.8) if latency else None,
        "peak_rss_mb": 88.2 if latency else None, "rss_growth_mb": 0.1 if latency else None,
        "model_bytes": model_bytes, "model_sha256": "ab" * 32,
        "runtime": {"name": "ai-edge-litert", "version": "2.3.0"}, "threads": 2,
        "delegate": {"name": "xnnpack", "coverage": {"partitions": 1, "cpu_ops": 0}} if latency else None,
        "inputs": [{"name": "input", "tensor": 0, "shape": [1, 96, 96, 3], "shape_signature": [-1, 96, 96, 3],
                    "dtype": "float32", "scale": 0.0, "zero_point": 0}],
        "outputs": None, "thermal_before": thermal[0] if latency else None,
        "thermal_after": thermal[1] if latency else None,
        "accuracy": {"logits": {"cosine": cosine, "snr_db": 31.4, "max_abs_err": 0.02, "mean_abs_err": 0.004,
                                "top1_agreement": top1}} if cosine is not None and latency else None,
        "conversion": None, "flags": [], "measured_at": "2026-11-24T07:15:00+00:00",
    }
    cell.update(extra)
    if latency:
        cell["flags"] = sorted(set(cell["flags"]) | set(validity_flags(latency, cell["thermal_before"],
                                                                        cell["thermal_after"])))
    return cell


def synthetic_device(name: str) -> dict[str, Any]:
    return {"name": name, "transport": "ssh", "host": f"{name}.lan", "groups": ["pi"], "tags": [], "status": "ok",
            "error": None, "agent_version": "0.1.0", "bytes_shipped": 1_000_000,
            "env": {"arch": "aarch64", "cpu_model": "Cortex-A72", "cores": 4, "os": "Debian GNU/Linux 12",
                    "kernel": "6.1.0-rpi7", "hostname": name, "python": "3.11.2", "numpy": "1.26.4",
                    "runtime": {"name": "ai-edge-litert", "version": "2.3.0"}, "governor": "ondemand"}}


def synthetic_export(cells: list[dict[str, Any]], *, run_id: str = "20261124-071500-ab12", label: str | None = "v1.2",
                     started_at: str = "2026-11-24T07:15:00+00:00") -> dict[str, Any]:
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
                 run_id: str = "20261124-071500-ab12") -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    cells = []
    for d in range(devices):
        for v in range(variants):
            base = (5 + 3 * v + d % 7) * slowdown
            lat = (base * rng.lognormal(0, 0.05, samples)).round(4).tolist()
            cells.append(synthetic_cell(f"pi-{d:02d}", "mobilenet_v2", VARIANTS[v % len(VARIANTS)] + f"-{v}", lat,
                                        cosine=0.9999 - 0.002 * v, model_bytes=13_600_000 // (1 + v)))
    return synthetic_export(cells, run_id=run_id)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--variants", type=int, default=10)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", action="store_true", help="also compare with a baseline run (Mann-Whitney per cell)")
    a = ap.parse_args(argv)
    export = fleet_export(a.devices, a.variants, a.samples)
    baseline = fleet_export(a.devices, a.variants, a.samples, seed=1, slowdown=0.97, run_id="base") if a.baseline \
        else None
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.html"
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            render_report(export, out, baseline=baseline)
            times.append(time.perf_counter() - t0)
        size = out.stat().st_size
    median = statistics.median(times)
    print(f"render_report {a.devices} devices x {a.variants} variants x {a.samples} samples"
          f"{' + baseline' if baseline else ''}: median {median:.3f} s of {a.repeat} "
          f"(min {min(times):.3f}, max {max(times):.3f}); {median / TARGET_SECONDS:.0%} of the {TARGET_SECONDS:g} s target")
    print(f"file size {size / 1e6:.2f} MB; {size / TARGET_BYTES:.0%} of the {TARGET_BYTES / 1e6:g} MB target")
    return 0 if median <= TARGET_SECONDS and size <= TARGET_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
