"""Statistics on raw samples: summaries, confidence intervals, trust flags, significance."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from device_agent.measure import summarize

if TYPE_CHECKING:
    from .record import Delegate, LatencySummary, Thermal

# MLPerf LoadGen's minimum sample counts for a percentile estimate to mean anything.
MIN_SAMPLES = {"p90": 64, "p99": 662}
HIGH_CV = 0.10
# Raspberry Pi firmware bits: 1 frequency capped, 2 throttled, 3 soft temperature limit
# (bit 0, under-voltage, is reported but does not by itself slow the run).
THROTTLE_NOW_MASK = 0b1110


def quantile_ci95(samples: Sequence[float], q: float) -> tuple[float, float] | None:
    """Distribution-free 95% CI of the q-quantile from order statistics (binomial, normal approximation).

    None when the interval runs past the data: 50 samples cannot bound a p99 from above (that needs
    about MLPerf's 662 samples), and 5 cannot bound a median.
    """
    n = len(samples)
    half = 1.96 * math.sqrt(n * q * (1 - q))
    lo, hi = int(math.floor(n * q - half)), int(math.ceil(n * q + half))
    if n == 0 or lo < 0 or hi > n - 1:
        return None
    s = sorted(samples)
    return (s[lo], s[hi])


def median_ci95(samples: Sequence[float]) -> tuple[float, float] | None:
    return quantile_ci95(samples, 0.5)


def latency_summary(samples: Sequence[float]) -> LatencySummary:
    out: Any = summarize(list(samples))
    out["samples"] = list(samples)
    ci = median_ci95(samples)
    out["p50_ci95"] = list(ci) if ci else None
    out["cv"] = round(out["std"] / out["mean"], 4) if out["count"] > 1 and out["mean"] else None
    return out


def validity_flags(latency: LatencySummary, thermal_before: Thermal | None, thermal_after: Thermal | None) -> list[str]:
    """Why a number should not be trusted; empty when nothing is known to be wrong."""
    flags: list[str] = []
    count = latency.get("count") or 0
    for pct, need in MIN_SAMPLES.items():
        if 0 < count < need:
            flags.append(f"too_few_samples_{pct}")
    cv = latency.get("cv")
    if cv is not None and cv > HIGH_CV:
        flags.append("high_cv")
    before, after = ((state or {}).get("throttled") for state in (thermal_before, thermal_after))
    now = any(isinstance(v, int) and v & THROTTLE_NOW_MASK for v in (before, after))
    # bits 16-19 are sticky since boot: a bit that appears between before and after happened during the run
    during = isinstance(before, int) and isinstance(after, int) and (after >> 16) & ~(before >> 16) & THROTTLE_NOW_MASK
    if now or during:
        flags.append("throttled")
    return flags


def delegate_flags(delegate: Delegate | None) -> list[str]:
    """A silent fallback to the CPU must be visible: some ops, or the whole graph, left undelegated."""
    coverage: Any = (delegate["coverage"] if delegate else None) or {}
    if coverage.get("partitions") == 0:
        return ["not_delegated"]
    if coverage.get("cpu_ops"):
        return ["cpu_fallback"]
    return []


def mann_whitney_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Mann-Whitney U p-value (normal approximation with tie correction)."""
    n1, n2 = len(a), len(b)
    if n1 < 3 or n2 < 3:
        return None
    values = np.concatenate([np.asarray(a, float), np.asarray(b, float)])
    # average ranks of tied values, from the run lengths of the sorted unique values
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    r1 = ranks[:n1].sum()
    u1 = r1 - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    tie = (counts**3 - counts).sum() / (n * (n - 1)) if n > 1 else 0.0
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie))
    if sigma == 0:
        return 1.0
    z = (abs(u1 - n1 * n2 / 2.0) - 0.5) / sigma
    return float(math.erfc(max(z, 0.0) / math.sqrt(2)))
