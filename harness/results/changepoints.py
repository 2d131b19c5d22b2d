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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_POINTS = 20_000  # ~1 s here; beyond this callers must aggregate first
CLIP_SIGMAS = 3.0


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


def change_points(series: Sequence[float], *, min_size: int = 3, min_shift: float = 0.05,
                  sensitivity: float = 5.0) -> list[Shift]:
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
