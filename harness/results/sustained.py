"""Sustained cells: latency over minutes beside the device's own telemetry, and what changed when.

The agent keeps every sample with its start time and reads the device's sensors about once a second
(device_agent/telemetry.py). Here that becomes:

- the timeline: per-window medians (WINDOW_S), the unit change points are searched on — raw samples are
  autocorrelated and heavy-tailed, window medians much less so;
- change points (results/changepoints.py, the same detector as the history view);
- burst p90 (samples before the first change point, or the first BURST_S seconds when there is none) and
  sustained p90 (the last third of the window), the time of the first slowdown, and the telemetry just
  before and after it (temperature, CPU frequency, throttle bits);
- energy per inference where the board measures power: the power readings integrated over the measured
  window (trapezoids), divided by the invokes in it, with the method named; null where nothing is exposed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

from typing_extensions import NotRequired

import numpy as np

from .changepoints import change_points

WINDOW_S = 1.0
BURST_S = 10.0
MIN_SHIFT = 0.05  # a slowdown smaller than 5% of the median is not called one


class _Reading(TypedDict):
    t_ms: float
    temperatures_c: dict[str, float] | None
    cpu_freq_khz: list[int] | None
    throttled: int | None
    power_w: float | None


class TelemetryReading(_Reading, total=False):
    thermal_status: int | None  # Android's PowerManager level, read every ~10 s (absent from older agents)


class ShiftPoint(TypedDict):
    t_s: float
    before_ms: float
    after_ms: float
    ratio: float


class Sustained(TypedDict):
    duration_s: float
    window_s: float
    sample_t_ms: list[float]  # when each raw sample started (the cell's latency_ms.samples, same order)
    telemetry: list[TelemetryReading]
    series_t_s: list[float]  # the timeline: window start times and medians
    series_p50_ms: list[float]
    change_points: list[ShiftPoint]
    burst_p90_ms: float | None
    sustained_p90_ms: float | None
    first_slowdown_s: float | None
    at_slowdown: dict[str, TelemetryReading | None] | None  # the readings just before and just after it
    energy_mj_per_inference: float | None
    energy_method: str | None
    thermal_status_max: int | None  # Android: the worst platform thermal status seen during the cell


def _p90(values: np.ndarray) -> float | None:
    return round(float(np.percentile(values, 90)), 6) if values.size else None


def _windows(t_ms: np.ndarray, samples: np.ndarray, window_s: float) -> tuple[list[float], list[float]]:
    bins = (t_ms // (window_s * 1000)).astype(np.int64)
    starts, medians = [], []
    for b in np.unique(bins):
        starts.append(round(float(b) * window_s, 3))
        medians.append(round(float(np.median(samples[bins == b])), 6))
    return starts, medians


def _nearest(readings: Sequence[TelemetryReading], t_ms: float, before: bool) -> TelemetryReading | None:
    side = [r for r in readings if (r["t_ms"] < t_ms if before else r["t_ms"] >= t_ms)]
    if not side:
        return None
    return side[-1] if before else side[0]


def energy_mj_per_inference(readings: Sequence[TelemetryReading], invokes: int) -> float | None:
    """Trapezoid integral of power over the readings' span, per invoke; None without two power readings."""
    points = [(r["t_ms"] / 1000.0, r["power_w"]) for r in readings if r.get("power_w") is not None]
    if len(points) < 2 or invokes <= 0:
        return None
    t = np.array([p[0] for p in points])
    w = np.array([p[1] for p in points], dtype=np.float64)
    joules = float(np.sum((w[1:] + w[:-1]) / 2 * np.diff(t)))
    return round(joules * 1000.0 / invokes, 6)


def analyse(samples_ms: Sequence[float], sample_t_ms: Sequence[float], telemetry: Sequence[TelemetryReading],
            power_method: str | None, *, window_s: float = WINDOW_S) -> Sustained:
    """The sustained view of one cell's samples (only those that have a start time are used)."""
    n = min(len(samples_ms), len(sample_t_ms))
    samples = np.asarray(samples_ms[:n], dtype=np.float64)
    t_ms = np.asarray(sample_t_ms[:n], dtype=np.float64)
    duration = float(t_ms[-1] + samples[-1]) / 1000.0 if n else 0.0
    starts, medians = _windows(t_ms, samples, window_s) if n else ([], [])
    shifts = change_points(medians, min_shift=MIN_SHIFT)
    points: list[ShiftPoint] = [{"t_s": starts[s.index], "before_ms": round(s.before, 6),
                                 "after_ms": round(s.after, 6), "ratio": round(s.ratio, 4)} for s in shifts]
    burst_end_ms = points[0]["t_s"] * 1000 if points else BURST_S * 1000
    slowdown = next((p for p in points if p["ratio"] > 1), None)
    at_slowdown = None
    if slowdown is not None:
        at = slowdown["t_s"] * 1000
        at_slowdown = {"before": _nearest(telemetry, at, True), "after": _nearest(telemetry, at + window_s * 1000, False)}
    return {
        "duration_s": round(duration, 3),
        "window_s": window_s,
        "sample_t_ms": [float(x) for x in t_ms],
        "telemetry": list(telemetry),
        "series_t_s": starts,
        "series_p50_ms": medians,
        "change_points": points,
        "burst_p90_ms": _p90(samples[t_ms < burst_end_ms]),
        "sustained_p90_ms": _p90(samples[t_ms >= (t_ms[-1] * 2 / 3 if n else 0)]),
        "first_slowdown_s": slowdown["t_s"] if slowdown else None,
        "at_slowdown": at_slowdown,
        "energy_mj_per_inference": energy_mj_per_inference(telemetry, n) if power_method else None,
        "energy_method": power_method,
        "thermal_status_max": max((status for r in telemetry if (status := r.get("thermal_status")) is not None),
                                  default=None),
    }


def ranking_flips(cells: Sequence[Any]) -> list[dict[str, Any]]:
    """Per (device, model): the variants ranked by burst p90 and by sustained p90 when the orders differ.

    The finding a one-second benchmark cannot make: the fastest variant cold is not the fastest after minutes.
    """
    groups: dict[tuple[str, str], list[tuple[str, float, float]]] = {}
    for cell in cells:
        s = cell.get("sustained")
        if s and s.get("burst_p90_ms") is not None and s.get("sustained_p90_ms") is not None:
            groups.setdefault((cell["device"], cell["model"]), []).append(
                (cell["variant"], s["burst_p90_ms"], s["sustained_p90_ms"]))
    flips = []
    for (device, model), rows in sorted(groups.items()):
        burst = [v for v, b, _ in sorted(rows, key=lambda r: r[1])]
        sustained = [v for v, _, s in sorted(rows, key=lambda r: r[2])]
        if len(rows) > 1 and burst != sustained:
            flips.append({"device": device, "model": model, "burst_order": burst, "sustained_order": sustained})
    return flips
