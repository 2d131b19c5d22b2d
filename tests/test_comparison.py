"""Regression verdicts on seeded synthetic data with a known effect and known run-to-run variance: the
false-FAIL rate of A/A comparisons and the power against a true slowdown, side by side and against history."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.results.comparison import Decision, compare
from harness.results.noise import noise_floors, series_points
from harness.results.record import Cell
from tests.support.synthetic import repeated_samples, synthetic_cell

BETWEEN = 0.12  # sd of log p50 between processes: ~±25% at 95%, like this shared machine (FIELD-NOTES)
LIMIT = 5.0


def _pair(rng: np.random.Generator, ratio: float, repeats: int, *, shared: float = BETWEEN,
          own: float = 0.02) -> tuple[Cell, Cell]:
    """Candidate and baseline measured side by side: each round's neighbours and frequency (``shared``) hit
    both processes of the round; each process also varies on its own (``own``)."""
    rounds = rng.normal(0, shared, repeats)
    a, a_sizes = repeated_samples(rng, 10.0 * ratio, list(rounds + rng.normal(0, own, repeats)))
    b, b_sizes = repeated_samples(rng, 10.0, list(rounds + rng.normal(0, own, repeats)))
    return (synthetic_cell("d", "m", "v", a, repeat_sizes=a_sizes),
            synthetic_cell("d", "m@baseline", "v", b, repeat_sizes=b_sizes))


def _runs(rng: np.random.Generator, ratio: float, repeats: int) -> Cell:
    """One stored run: its processes share the run's own level (a different day) and vary among themselves."""
    level = rng.normal(0, BETWEEN)
    samples, sizes = repeated_samples(rng, 10.0 * ratio, list(level + rng.normal(0, 0.03, repeats)))
    return synthetic_cell("d", "m", "v", samples, repeat_sizes=sizes)


def _decisions(changes: list) -> dict[Decision, int]:
    out = {d: 0 for d in Decision}
    for change in changes:
        out[change.decide(LIMIT)] += 1
    return out


def test_side_by_side_aa_never_fails_and_ab_is_detected() -> None:
    rng = np.random.default_rng(1)
    aa = _decisions([compare(*_pair(rng, 1.0, 5), paired=True) for _ in range(300)])
    assert aa[Decision.EXCEEDS] <= 3, aa  # a 95% CI above +5% for a true 0%: rarer than 1 in 100
    assert aa[Decision.WITHIN] >= 200, aa  # and most A/A comparisons PASS: the verdict is not "always WARN"
    ab = _decisions([compare(*_pair(rng, 1.15, 10), paired=True) for _ in range(200)])
    assert ab[Decision.EXCEEDS] >= 180, ab  # +15% true slowdown, 10 paired repeats: >= 90% detected
    # unpaired, the same data cannot see past the shared noise
    unpaired = _decisions([compare(*_pair(rng, 1.15, 10), paired=False) for _ in range(100)])
    assert unpaired[Decision.EXCEEDS] < ab[Decision.EXCEEDS] / 2, unpaired


def test_single_repeat_never_fails_on_significance() -> None:
    rng = np.random.default_rng(2)
    for ratio in (1.0, 1.3, 2.0):
        for _ in range(50):
            new, old = _pair(rng, ratio, 1)
            for kwargs in ({"paired": True}, {"paired": False}, {"paired": False, "floor_sigma": 0.01}):
                change = compare(new, old, **kwargs)
                assert change is not None and change.single
                assert change.decide(LIMIT) is not Decision.EXCEEDS
    # thousands of tight samples per side do not make one process evidence: no CI without a floor
    new, old = _pair(rng, 1.4, 1, own=0.0)
    assert compare(new, old).ci95 is None and compare(new, old).decide(LIMIT) is Decision.INCONCLUSIVE


def test_historical_aa_does_not_fail_and_the_floor_guards_it() -> None:
    rng = np.random.default_rng(3)
    plain = _decisions([compare(_runs(rng, 1.0, 5), _runs(rng, 1.0, 5)) for _ in range(200)])
    # without a floor, repeats of one run cannot see the run's own level: A/A would FAIL often
    assert plain[Decision.EXCEEDS] > 20, plain
    history = [point for i in range(30) for point in series_points(f"r{i}", [_runs(rng, 1.0, 3)])]
    floor = noise_floors(history)["d"]
    assert 0.7 * BETWEEN < floor.estimate < 1.3 * BETWEEN and floor.runs == 30
    assert floor.estimate < floor.sigma < 1.3 * floor.estimate  # the upper bound, tight after 30 runs
    guarded = _decisions([compare(_runs(rng, 1.0, 5), _runs(rng, 1.0, 5), floor_sigma=floor.sigma)
                          for _ in range(200)])
    assert guarded[Decision.EXCEEDS] <= 2, guarded
    # a change far beyond the floor still FAILs
    huge = _decisions([compare(_runs(rng, 3.0, 5), _runs(rng, 1.0, 5), floor_sigma=floor.sigma) for _ in range(50)])
    assert huge[Decision.EXCEEDS] >= 45, huge


def test_repeats_needed_shrinks_as_evidence_grows() -> None:
    rng = np.random.default_rng(4)
    new, old = _pair(rng, 1.06, 3)
    change = compare(new, old, paired=True)
    assert change is not None
    if change.decide(LIMIT) is Decision.INCONCLUSIVE:
        assert (change.repeats_needed(LIMIT) or 0) >= 1
    decided = compare(*_pair(rng, 1.5, 8), paired=True)
    assert decided is not None and decided.decide(LIMIT) is Decision.EXCEEDS and decided.repeats_needed(LIMIT) is None
    assert decided.ci95 is not None and decided.ci95[0] < 1.5 < decided.ci95[1]


@pytest.mark.parametrize("paired", [True, False])
def test_ratio_is_the_geometric_mean_of_repeat_medians(paired: bool) -> None:
    a = synthetic_cell("d", "m", "v", [10.0] * 5 + [20.0] * 5, repeat_sizes=[5, 5])
    b = synthetic_cell("d", "m", "v", [10.0] * 10, repeat_sizes=[5, 5])
    change = compare(a, b, paired=paired)
    assert change is not None and math.isclose(change.ratio, math.sqrt(2), rel_tol=1e-9)
    assert change.repeats == (2, 2)


def test_side_by_side_pairs_repeats_by_index_when_a_repeat_has_no_samples() -> None:
    rng = np.random.default_rng(5)
    rounds = [0.0, 0.35, -0.3, 0.25, -0.2, 0.3]  # what hit both processes of each round, large and shared
    new, new_sizes = repeated_samples(rng, 12.0, rounds, spread=0.01)  # truly x1.2 slower
    old, old_sizes = repeated_samples(rng, 10.0, rounds, spread=0.01)
    candidate = synthetic_cell("d", "m", "v", new, repeat_sizes=new_sizes)
    # the baseline's third process measured nothing: its place stays empty
    gap = synthetic_cell("d", "m@baseline", "v", old[:400] + old[600:], repeat_sizes=[200, 200, 0, 200, 200, 200])
    change = compare(candidate, gap, paired=True)
    assert change is not None and change.pairs == 5 and change.repeats == (6, 5)
    assert change.ci95 is not None and change.ci95[0] < 1.2 < change.ci95[1] and change.decide(LIMIT) is Decision.EXCEEDS
    assert "(6 vs 5 repeats, 5 paired)" in change.describe()
    # the same values without their places: pairing by position would set round 4 of one side beside round 3
    shifted = synthetic_cell("d", "m@baseline", "v", old[:400] + old[600:], repeat_sizes=[200] * 5)
    wrong = compare(candidate, shifted, paired=True)
    assert wrong is not None and wrong.decide(LIMIT) is Decision.INCONCLUSIVE
