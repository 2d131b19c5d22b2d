"""Change points claimed only where a series really shifted (seeded synthetic series, many draws)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from harness.results import changepoints
from harness.results.changepoints import cached_change_points, change_points


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


class _DictCache:
    """An in-memory ShiftCache that counts what it was asked, beside the real stores' (tests/test_store.py)."""

    def __init__(self) -> None:
        self.rows: dict[str, str] = {}
        self.kept = 0

    def known_shifts(self, keys: Sequence[str]) -> dict[str, str]:
        return {k: self.rows[k] for k in keys if k in self.rows}

    def keep_shifts(self, found: Mapping[str, str]) -> None:
        self.kept += len(found)
        self.rows.update(found)


def test_cached_change_points_are_the_searched_ones_and_a_garbled_entry_is_searched_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    series = [list(_noisy(rng, 40)) for _ in range(5)] + [[10.0] * 20 + [13.0] * 20]
    series.append(series[-1])  # the same series twice: searched and kept once
    cache = _DictCache()
    first = cached_change_points(series, cache)
    assert first == [change_points(s) for s in series] and [s.index for s in first[-1]] == [20]
    assert cache.kept == len(series) - 1
    assert cached_change_points(series, cache) == first and cache.kept == len(series) - 1  # read, not searched
    for key in cache.rows:
        cache.rows[key] = '{"not": "a list of shifts"}'
    assert cached_change_points(series, cache) == first and cache.kept == 2 * (len(series) - 1)
    # another detector is another key: what the old one found is never returned for it
    monkeypatch.setattr(changepoints, "DETECTOR", changepoints.DETECTOR + "-next")
    assert cached_change_points(series[-1:], cache) == first[-1:] and cache.kept == 2 * (len(series) - 1) + 1
