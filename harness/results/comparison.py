"""What "changed against the baseline" means: one definition, used by the gate, the report and the index.

The unit of replication is the process (a repeat), not the sample: thousands of samples from one process
are autocorrelated and say nothing about the run-to-run variance that dominates on a shared machine (process
start, memory placement, frequency, neighbours). So a comparison works on the *per-repeat medians*, in log
space (a ratio is what stays comparable across devices), as Kalibera & Jones recommend for the top level of a
multi-level experiment:

- side by side (``paired``: candidate and baseline measured in one run, repeat i of each next to each other),
  a t-interval on the per-pair log differences, so drift and neighbours that hit both cancel; pairs are
  matched by repeat index, never by position, so a repeat missing on one side drops only its own pair;
- against a stored run (unpaired), Welch's t-interval on the two sets of per-repeat log medians; a side with
  one repeat borrows the other side's variance, or the device's noise floor learnt from history
  (``results.noise``), and a comparison resting on one repeat never FAILs;
- a historical regression must also exceed the device's noise floor: runs on another day vary more than
  repeats within one run.

The verdict is tri-state: below the limit (the whole 95% CI is), above it (the whole CI is), or inconclusive
— with an estimate of how many more repeats would decide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from .record import Cell, Status, p50
from .stats import Z95, log_interval as _interval, log_median, t95 as _t

MIN_CHANGE_PCT = 2.0  # a change smaller than this is not worth marking in a report, however certain


class Decision(str, Enum):
    WITHIN = "within"  # the whole CI of the change is at or below the limit
    EXCEEDS = "exceeds"  # the whole CI is above the limit (and above the noise floor)
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class Change:
    """The p50 of a cell against its baseline cell, from per-repeat medians."""

    ratio: float  # new / old: 1.12 is 12% slower
    ci95: tuple[float, float] | None  # of the ratio; None when nothing bounds the run-to-run variance
    repeats: tuple[int, int]  # (new, old) processes behind each side
    paired: bool  # measured side by side in one run
    floor: float | None = None  # the device's run-to-run noise floor (ratio - 1), historical comparisons
    pairs: int = 0  # repeats present on both sides that the paired interval used; 0 when not paired

    @property
    def pct(self) -> float:
        return (self.ratio - 1) * 100

    @property
    def single(self) -> bool:
        """Rests on one repeat of a side: cannot separate a regression from run-to-run noise."""
        return min(self.repeats) < 2

    def decide(self, limit_pct: float) -> Decision:
        limit = 1 + limit_pct / 100
        if self.ci95 is None:
            return Decision.INCONCLUSIVE
        lo, hi = self.ci95
        if hi <= limit:
            return Decision.WITHIN
        beyond_floor = self.paired or self.floor is None or lo > 1 + self.floor
        if lo > limit and beyond_floor and not self.single:
            return Decision.EXCEEDS
        return Decision.INCONCLUSIVE

    @property
    def changed(self) -> bool:
        """Worth marking as slower/faster: the CI excludes no change, beyond the floor and MIN_CHANGE_PCT."""
        if self.ci95 is None or self.single:
            return False
        margin = max(MIN_CHANGE_PCT / 100, 0.0 if self.paired else self.floor or 0.0)
        return self.ci95[0] > 1 + margin or self.ci95[1] < 1 / (1 + margin)

    def repeats_needed(self, limit_pct: float) -> int | None:
        """About how many more repeats per side would make ``decide`` conclusive; None when it is."""
        if self.decide(limit_pct) is not Decision.INCONCLUSIVE:
            return None
        if self.ci95 is None:
            return 2  # one more repeat per side gives the first estimate of the variance
        lo, hi = (math.log(v) for v in self.ci95)
        half = (hi - lo) / 2
        distance = abs(math.log(self.ratio) - math.log(1 + limit_pct / 100))
        n = self.pairs or min(self.repeats)
        if distance < 1e-9:
            return 64  # sitting on the limit: no affordable number of repeats decides it
        # the half-width shrinks like 1/sqrt(n); the t quantile also shrinks, which this ignores (conservative)
        wanted = math.ceil(n * (half / distance) ** 2)
        return max(1, min(wanted - n, 64))

    def describe(self) -> str:
        ci = f" [{self.ci95[0]:.3f}, {self.ci95[1]:.3f}]" if self.ci95 else ""
        how = f"{self.pairs} paired" if self.pairs else "paired" if self.paired else "unpaired"
        return f"x{self.ratio:.3f}{ci} ({self.repeats[0]} vs {self.repeats[1]} repeats, {how})"


def comparable(cell: Cell) -> bool:
    latency = cell.get("latency_ms")
    return cell.get("status") == Status.OK and bool(latency and latency.get("p50"))


def repeat_samples(cell: Cell) -> list[list[float]]:
    """The cell's samples split by process, in repeat order (a process without samples keeps its place as an
    empty group); one group when the cell does not say (older stores)."""
    latency = cell.get("latency_ms")
    samples = (latency.get("samples") if latency else None) or []
    sizes = cell.get("repeat_sizes")
    if not sizes or sum(sizes) != len(samples):
        return [samples] if samples else []
    out, start = [], 0
    for size in sizes:
        out.append(samples[start:start + size])
        start += size
    return out


def repeat_log_medians(cell: Cell) -> dict[int, float]:
    """log p50 of each repeat that has one, by repeat index; a tool that keeps no samples gives its one p50."""
    groups = repeat_samples(cell)
    if any(groups):
        return {i: m for i, m in enumerate(map(log_median, groups)) if m is not None}
    median = p50(cell)
    return {0: math.log(median)} if median else {}


def compare(new: Cell, old: Cell, *, paired: bool = False, floor_sigma: float | None = None) -> Change | None:
    """The change of p50 from ``old`` to ``new``; None unless both cells were measured.

    ``floor_sigma``: the device's between-run standard deviation of log p50 (results.noise), used when a side
    has a single repeat; ``paired``: the repeats were interleaved in one run (repeat i of each side together).
    """
    if not (comparable(new) and comparable(old)):
        return None
    a, b = repeat_log_medians(new), repeat_log_medians(old)
    if not a or not b:
        return None
    floor = math.exp(Z95 * math.sqrt(2) * floor_sigma) - 1 if floor_sigma is not None and not paired else None
    both = sorted(a.keys() & b.keys())  # round i of one side beside round i of the other, not the i-th survivor
    if paired and len(both) >= 2:
        d = np.array([a[i] - b[i] for i in both])
        est, n = float(d.mean()), len(both)
        return Change(math.exp(est), _interval(est, float(d.std(ddof=1)) / math.sqrt(n), _t(n - 1)),
                      (len(a), len(b)), True, pairs=n)
    new_logs, old_logs = list(a.values()), list(b.values())
    est = float(np.mean(new_logs) - np.mean(old_logs))
    return Change(math.exp(est), _unpaired_ci(new_logs, old_logs, est, floor_sigma), (len(a), len(b)), paired, floor)


def _unpaired_ci(a: Sequence[float], b: Sequence[float], est: float,
                 floor_sigma: float | None) -> tuple[float, float] | None:
    n1, n2 = len(a), len(b)
    v1 = float(np.var(a, ddof=1)) if n1 > 1 else None
    v2 = float(np.var(b, ddof=1)) if n2 > 1 else None
    if v1 is not None and v2 is not None:
        se2 = v1 / n1 + v2 / n2
        if se2 == 0:
            return (math.exp(est), math.exp(est))
        df = se2**2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
        return _interval(est, math.sqrt(se2), _t(df))
    if v1 is not None or v2 is not None:  # one side measured once: assume it varies like the other side
        variance, df = (v1, n1 - 1) if v1 is not None else (v2, n2 - 1)
        assert variance is not None
        return _interval(est, math.sqrt(variance * (1 / n1 + 1 / n2)), _t(df))
    if floor_sigma is not None:
        return _interval(est, floor_sigma * math.sqrt(1 / n1 + 1 / n2), Z95)
    return None

