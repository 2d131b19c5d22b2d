"""Where a series shifted: change points by PELT (ruptures), made conservative for benchmark data.

The search is ruptures' C implementation (KernelCPD with the linear kernel, whose cost is the L2 cost of
Pelt(model="l2"): the same segmentation, about a thousand times faster than the Python one), so the index
can look for shifts in every series it draws.

One definition, used by the history view (a series of runs) and by sustained runs (latency over time).
Benchmark series are heavy-tailed and autocorrelated, so a detector tuned for Gaussian noise claims a shift
in every long series. Two guards keep a claimed change point meaningful:

- the series is standardised by a robust noise estimate (the MAD of successive differences, which a level
  shift barely moves), clipped at ±3 of it, and segmented with a BIC-like penalty scaled by ``sensitivity``;
- a change point is kept only when the medians of the segments on either side differ by at least
  ``min_shift`` (relative); otherwise the two segments are merged and the search goes on.

Callers pass values already aggregated to the unit they can defend as independent-ish: a run's p50 in a
history, per-second medians in a sustained run, not raw invoke samples.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass
from typing import Protocol

import numpy as np

MAX_POINTS = 20_000  # ~1 s here; beyond this callers must aggregate first
CLIP_SIGMAS = 3.0
MIN_SIZE, MIN_SHIFT, SENSITIVITY = 3, 0.05, 5.0
# In every cache key: changing how shifts are found must never return shifts found the old way.
DETECTOR = json.dumps(["kernelcpd-linear", 1, MIN_SIZE, MIN_SHIFT, SENSITIVITY, CLIP_SIGMAS])


@dataclass(frozen=True)
class Shift:
    index: int  # first element of the new segment
    before: float  # median of the segment before
    after: float  # median of the segment after

    @property
    def ratio(self) -> float:
        return self.after / self.before if self.before else math.inf


def _robust_sigma(values: np.ndarray) -> float:
    diffs = np.abs(np.diff(values))
    sigma = 1.4826 * float(np.median(diffs)) / math.sqrt(2) if diffs.size else 0.0
    if sigma <= 0:  # constant stretches: fall back to the spread of the whole series
        sigma = float(np.std(values))
    return sigma


def change_points(series: Sequence[float], *, min_size: int = MIN_SIZE, min_shift: float = MIN_SHIFT,
                  sensitivity: float = SENSITIVITY) -> list[Shift]:
    """The shifts in ``series`` (in order); empty when the series is too short or steady.

    ``min_size``: the fewest points a segment may have; ``min_shift``: the smallest relative change of
    the median worth calling a shift; ``sensitivity``: the penalty in units of log(n) (higher claims less).
    """
    values = np.asarray(series, dtype=np.float64)
    if values.ndim != 1 or values.size > MAX_POINTS:
        raise ValueError(f"change_points takes a 1-d series of at most {MAX_POINTS} points")
    if values.size < 2 * min_size or not np.isfinite(values).all():
        return []
    sigma = _robust_sigma(values)
    if sigma <= 0:
        return []
    import ruptures  # imported here: it brings scipy, which most commands never need

    # clipped (Huber-like) so that a lone spike cannot buy a segment of its own
    scaled = np.clip((values - np.median(values)) / sigma, -CLIP_SIGMAS, CLIP_SIGMAS)
    algo = ruptures.KernelCPD(kernel="linear", min_size=min_size, jump=1).fit(scaled)
    bounds = [0] + [int(b) for b in algo.predict(pen=sensitivity * math.log(values.size))]
    # merge neighbours whose medians are closer than min_shift, smallest difference first
    while len(bounds) > 2:
        medians = [float(np.median(values[a:b])) for a, b in zip(bounds, bounds[1:])]
        gaps = [abs(m2 / m1 - 1) if m1 else math.inf for m1, m2 in zip(medians, medians[1:])]
        smallest = min(range(len(gaps)), key=gaps.__getitem__)
        if gaps[smallest] >= min_shift:
            break
        del bounds[smallest + 1]
    medians = [float(np.median(values[a:b])) for a, b in zip(bounds, bounds[1:])]
    return [Shift(bounds[i + 1], medians[i], medians[i + 1]) for i in range(len(medians) - 1)]


class ShiftCache(Protocol):
    """Where found shifts are remembered (the results store): JSON text per key."""

    def known_shifts(self, keys: Sequence[str]) -> Mapping[str, str]: ...

    def keep_shifts(self, found: Mapping[str, str]) -> None: ...


def _parsed(text: str) -> list[Shift] | None:
    try:
        shifts = [Shift(int(i), float(b), float(a)) for i, b, a in json.loads(text)]
    except (ValueError, TypeError):
        return None
    return shifts


def cached_change_points(series: Sequence[Sequence[float]], cache: ShiftCache) -> list[list[Shift]]:
    """``change_points`` of each series with the default settings, remembered under a hash of the detector and
    the values. A history's series change only when a run is added, so ``run`` finds them once and ``report``
    reads them, without importing ruptures (and scipy.stats with it: 0.9 s)."""
    keys = [hashlib.sha256(json.dumps([DETECTOR, [float(v) for v in s]]).encode()).hexdigest() for s in series]
    known = cache.known_shifts(sorted(set(keys)))
    found: dict[str, list[Shift]] = {}
    fresh: dict[str, str] = {}
    for key, values in zip(keys, series):
        if key not in found:
            cached = _parsed(known[key]) if key in known else None
            found[key] = cached if cached is not None else change_points(values)
            if cached is None:
                fresh[key] = json.dumps([astuple(s) for s in found[key]])
    if fresh:
        cache.keep_shifts(fresh)
    return [found[key] for key in keys]
