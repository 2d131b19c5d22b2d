"""Statistics on raw samples, checked against reference values from scipy.stats and against simulation."""

from __future__ import annotations

import numpy as np
import pytest

from harness.results.stats import latency_summary, mann_whitney_p, median_ci95, validity_flags


def test_mann_whitney_matches_scipy_with_ties() -> None:
    r = np.random.default_rng(0)
    a = list(np.round(r.normal(10, 1, 200), 1))
    b = list(np.round(r.normal(10.3, 1, 150), 1))
    # scipy.stats.mannwhitneyu(a, b, alternative="two-sided").pvalue == 0.20219157823267409
    assert mann_whitney_p(a, b) == pytest.approx(0.20219157823267409, rel=1e-9)
    # scipy.stats.mannwhitneyu([1,1,1,2], [1,2,2,2,3], method="asymptotic").pvalue == 0.1399962843155412
    assert mann_whitney_p([1, 1, 1, 2], [1, 2, 2, 2, 3]) == pytest.approx(0.1399962843155412, rel=1e-9)
    assert mann_whitney_p([1, 2], [3, 4, 5]) is None
    assert mann_whitney_p([5.0] * 10, [5.0] * 10) == 1.0


def test_median_ci_covers_the_true_median_about_95_percent_of_the_time() -> None:
    r = np.random.default_rng(1)
    hits = 0
    for _ in range(400):
        s = list(r.lognormal(0.0, 0.5, 80))  # true median exp(0) = 1
        lo, hi = median_ci95(s)  # type: ignore[misc]
        hits += lo <= 1.0 <= hi
    assert 0.92 <= hits / 400 <= 0.99
    assert median_ci95([1.0, 2.0]) is None


def test_validity_flags() -> None:
    steady = latency_summary([10.0 + 0.01 * (i % 3) for i in range(700)])
    assert validity_flags(steady, None, None) == []
    few = latency_summary([10.0, 10.1, 10.2, 10.0, 9.9, 10.1, 10.0, 10.05])
    assert validity_flags(few, None, None) == ["too_few_samples_p90", "too_few_samples_p99"]
    noisy = latency_summary([10.0, 30.0] * 400)
    assert "high_cv" in validity_flags(noisy, None, None)
    # Raspberry Pi: 0x50000 is "throttled at some point since boot" only; 0x4 is "throttled now".
    assert validity_flags(steady, {"throttled": 0x50000}, {"throttled": 0x50000}) == []
    assert validity_flags(steady, {"throttled": 0}, {"throttled": 0x4}) == ["throttled"]
    assert validity_flags(steady, {"throttled": 0}, {"throttled": 0x40000}) == ["throttled"]  # came and went


def test_delegate_flags_make_a_cpu_fallback_visible() -> None:
    from harness.results.stats import delegate_flags

    assert delegate_flags({"name": "xnnpack", "coverage": {"partitions": 1, "cpu_ops": 0}}) == []
    assert delegate_flags({"name": "xnnpack", "coverage": {"partitions": 2, "cpu_ops": 1}}) == ["cpu_fallback"]
    assert delegate_flags({"name": "xnnpack", "coverage": {"partitions": 0, "cpu_ops": 30}}) == ["not_delegated"]
    assert delegate_flags(None) == [] and delegate_flags({"name": "x", "coverage": None}) == []
