"""Statistics on raw samples, checked against reference values from scipy.stats and against simulation."""

from __future__ import annotations

import numpy as np

from harness.results.stats import latency_summary, median_ci95, validity_flags


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
    # a high CV within one process is the workload, not doubt about the p50: not flagged
    wide = list(np.random.default_rng(5).lognormal(np.log(10), 0.5, 2000))  # CV ~ 50%
    assert "uncertain_p50" not in validity_flags(latency_summary(wide), None, None)
    # but a p50 that could sit in either of two modes is uncertain
    assert "uncertain_p50" in validity_flags(latency_summary([10.0, 30.0] * 400), None, None)
    # repeats that disagree make the p50 itself uncertain (its CI now spans the processes)
    spread = latency_summary([10.0] * 100 + [14.0] * 100 + [11.0] * 100, [100, 100, 100])
    assert spread["p50_ci95"] is not None and spread["p50_ci95"][1] - spread["p50_ci95"][0] > 2
    assert "uncertain_p50" in validity_flags(spread, None, None)
    agree = latency_summary([10.0] * 100 + [10.1] * 100 + [10.05] * 100, [100, 100, 100])
    assert "uncertain_p50" not in validity_flags(agree, None, None)
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
