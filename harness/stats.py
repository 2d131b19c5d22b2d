"""Statistics on raw samples: summaries, confidence intervals, trust flags, significance."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from device_agent.measure import summarize

# MLPerf LoadGen's minimum sample counts for a percentile estimate to mean anything.
MIN_SAMPLES = {"p90": 64, "p99": 662}
HIGH_CV = 0.10
# Raspberry Pi firmware bits: 1 frequency capped, 2 throttled, 3 soft temperature limit
# (bit 0, under-voltage, is reported but does not by itself slow the run).
THROTTLE_NOW_MASK = 0b1110


def median_ci95(samples: list[float]) -> tuple[float, float] | None:
    """Distribution-free 95% CI of the median from order statistics (binomial, normal approx.)."""
    n = len(samples)
    if n < 6:
        return None
    s = sorted(samples)
    half = 1.96 * math.sqrt(n) / 2
    lo = max(0, int(math.floor(n / 2 - half)))
    hi = min(n - 1, int(math.ceil(n / 2 + half)))
    return (s[lo], s[hi])


def latency_summary(samples: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = summarize(samples)
    out["samples"] = list(samples)
    ci = median_ci95(samples)
    out["p50_ci95"] = list(ci) if ci else None
    out["cv"] = round(out["std"] / out["mean"], 4) if out["count"] > 1 and out["mean"] else None
    return out


def validity_flags(latency: dict[str, Any], thermal_before: dict[str, Any] | None,
                   thermal_after: dict[str, Any] | None) -> list[str]:
    """Why a number should not be trusted; empty when nothing is known to be wrong."""
    flags: list[str] = []
    count = latency.get("count") or 0
    for pct, need in MIN_SAMPLES.items():
        if 0 < count < need:
            flags.append(f"too_few_samples_{pct}")
    if latency.get("cv") is not None and latency["cv"] > HIGH_CV:
        flags.append("high_cv")
    for state in (thermal_before, thermal_after):
        value = (state or {}).get("throttled")
        if isinstance(value, int) and value & THROTTLE_NOW_MASK:
            flags.append("throttled")
            break
    return flags


def mann_whitney_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Mann-Whitney U p-value (normal approximation with tie correction)."""
    n1, n2 = len(a), len(b)
    if n1 < 3 or n2 < 3:
        return None
    values = np.concatenate([np.asarray(a, float), np.asarray(b, float)])
    order = values.argsort(kind="mergesort")
    ranks = np.empty(len(values))
    sorted_vals = values[order]
    # average ranks for ties
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    r1 = ranks[:n1].sum()
    u1 = r1 - n1 * (n1 + 1) / 2.0
    _, counts = np.unique(values, return_counts=True)
    n = n1 + n2
    tie = (counts**3 - counts).sum() / (n * (n - 1)) if n > 1 else 0.0
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie))
    if sigma == 0:
        return 1.0
    z = (abs(u1 - n1 * n2 / 2.0) - 0.5) / sigma
    return float(math.erfc(max(z, 0.0) / math.sqrt(2)))
