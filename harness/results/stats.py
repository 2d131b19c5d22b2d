"""Statistics on raw samples: summaries, confidence intervals (within one process and between processes),
trust flags."""

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
# the p50 is "uncertain" when its 95% CI is wider than +-5%: a 5% budget could not be checked against it
UNCERTAIN_P50 = 0.05
Z95 = 1.96
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


def t95(df: float) -> float:
    """The two-sided 95% quantile of Student's t."""
    from scipy.special import stdtrit  # scipy.special, not scipy.stats: 0.2 s to import instead of 0.9 s

    return float(stdtrit(df, 0.975))


def chi2_quantile(q: float, df: float) -> float:
    from scipy.special import chdtri  # the inverse of the upper tail

    return float(chdtri(df, 1.0 - q))


def log_interval(estimate: float, se: float, crit: float) -> tuple[float, float]:
    """A symmetric interval in log space, back as ratios/values."""
    return (math.exp(estimate - crit * se), math.exp(estimate + crit * se))


def log_median(group: Sequence[float]) -> float | None:
    """log of the group's median; None when the group has no sample or no positive median."""
    median = float(np.median(group)) if len(group) else 0.0
    return math.log(median) if median > 0 else None


def log_medians(groups: Sequence[Sequence[float]]) -> list[float]:
    return [m for m in map(log_median, groups) if m is not None]


def between_repeats_ci95(groups: Sequence[Sequence[float]]) -> tuple[float, float] | None:
    """95% CI of the typical p50 from per-process medians (t-interval in log space); None under 2 processes.

    With repeats this is the honest CI: the spread between processes, not the (tiny) spread within one.
    """
    logs = log_medians(groups)
    if len(logs) < 2:
        return None
    return log_interval(float(np.mean(logs)), float(np.std(logs, ddof=1)) / math.sqrt(len(logs)),
                        t95(len(logs) - 1))


def latency_summary(samples: Sequence[float], repeat_sizes: Sequence[int] | None = None) -> LatencySummary:
    out: Any = summarize(list(samples))
    out["samples"] = list(samples)
    ci = median_ci95(samples)
    if repeat_sizes and len(repeat_sizes) > 1 and sum(repeat_sizes) == len(samples):
        bounds = np.cumsum([0, *repeat_sizes])
        ci = between_repeats_ci95([samples[bounds[i]:bounds[i + 1]] for i in range(len(repeat_sizes))]) or ci
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
    ci, median = latency.get("p50_ci95"), latency.get("p50")
    if ci and median and (ci[1] - ci[0]) / 2 / median > UNCERTAIN_P50:
        flags.append("uncertain_p50")
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
