"""Change points claimed only where a series really shifted (seeded synthetic series, many draws)."""

from __future__ import annotations

import numpy as np

from harness.results.changepoints import change_points


def _noisy(rng: np.random.Generator, n: int, level: float = 10.0) -> np.ndarray:
    # heavy-tailed benchmark-like noise: lognormal around the level, with occasional spikes
    values = level * rng.lognormal(0.0, 0.03, n)
    spikes = rng.random(n) < 0.03
    values[spikes] *= rng.uniform(1.2, 2.0, spikes.sum())
    return values


def test_a_steady_series_has_no_change_point_in_almost_every_draw() -> None:
    rng = np.random.default_rng(1)
    claimed = sum(bool(change_points(_noisy(rng, 60))) for _ in range(200))
    assert claimed <= 4, f"{claimed}/200 steady series got a change point"


def test_a_shift_of_twenty_percent_is_found_near_its_onset() -> None:
    rng = np.random.default_rng(2)
    found = 0
    for _ in range(100):
        series = np.concatenate([_noisy(rng, 40), _noisy(rng, 40, level=12.0)])
        shifts = change_points(series)
        if any(abs(s.index - 40) <= 3 and 1.1 < s.ratio < 1.3 for s in shifts):
            found += 1
    assert found >= 95, f"found {found}/100"


def test_a_shift_smaller_than_min_shift_is_not_claimed() -> None:
    rng = np.random.default_rng(3)
    series = np.concatenate([np.full(50, 10.0), np.full(50, 10.2)]) + rng.normal(0, 0.001, 100)
    assert change_points(series, min_shift=0.05) == []
    assert [s.index for s in change_points(series, min_shift=0.01)] == [50]


def test_short_or_constant_series_have_none() -> None:
    assert change_points([1.0, 2.0]) == []
    assert change_points([5.0] * 30) == []


def test_autocorrelated_steady_noise_rarely_gets_a_change_point() -> None:
    rng = np.random.default_rng(5)
    claimed = 0
    for _ in range(100):
        e = np.zeros(120)
        for i in range(1, 120):
            e[i] = 0.6 * e[i - 1] + rng.normal(0, 0.02)
        claimed += bool(change_points(10 * np.exp(e)))
    assert claimed <= 6, f"{claimed}/100 autocorrelated steady series got a change point"
