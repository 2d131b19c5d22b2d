"""Each device's noise floor: how much the p50 of the same files moves from one run to the next.

Repeats within one run share the run's day, image, neighbours and thermal history; a comparison against a
run from last week also carries the variation *between sessions*. The floor is learnt from history: for every
series of runs that measured the same thing (model sha256, variant, device, runtime and version, threads),
the standard deviation of log p50 between runs, pooled over the device's series (each weighted by its
degrees of freedom). A series needs at least MIN_RUNS runs to count. The floor uses the 90% upper confidence
bound of that deviation (chi-square): a short history errs on the side of not failing, and the floor tightens
as runs accumulate.

It is reported as ``pct``: the 95% range of the ratio between two runs of identical files
(``exp(1.96 * sqrt(2) * sigma) - 1``), so "floor 12%" reads "identical files differ by up to 12% here".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple


from .record import Cell, Status, p50
from .stats import Z95, chi2_quantile

MIN_RUNS = 3
UPPER_BOUND_TAIL = 0.10

SeriesKey = tuple[str, str, str, str, str]  # device, model sha256, variant, runtime and version, threads


class SeriesPoint(NamedTuple):
    run_id: str
    key: SeriesKey
    p50_ms: float


@dataclass(frozen=True)
class NoiseFloor:
    device: str
    sigma: float  # between-run standard deviation of log p50: the 90% upper bound, what comparisons use
    estimate: float  # the pooled estimate itself
    series: int  # how many series it is pooled from
    runs: int  # how many runs those series hold

    @property
    def pct(self) -> float:
        return (math.exp(Z95 * math.sqrt(2) * self.sigma) - 1) * 100


def series_key(cell: Cell) -> SeriesKey | None:
    """What must be equal for two runs' p50 to differ by noise alone; None when the cell cannot say."""
    runtime: dict[str, Any] = dict(cell.get("runtime") or {})
    if cell.get("status") != Status.OK or not cell.get("model_sha256") or not p50(cell):
        return None
    return (cell["device"], str(cell["model_sha256"]), cell["variant"],
            f"{runtime.get('name')} {runtime.get('version')}", str(cell.get("threads")))


def series_points(run_id: str, cells: Iterable[Cell]) -> list[SeriesPoint]:
    """The points a run's cells add to their series (Store.series_points reads the same from the database)."""
    return [SeriesPoint(run_id, key, median) for cell in cells
            if (key := series_key(cell)) is not None and (median := p50(cell))]


def noise_floors(points: Iterable[SeriesPoint]) -> dict[str, NoiseFloor]:
    """Per device, from the points of stored runs (leave out the run judged)."""
    in_run: dict[tuple[SeriesKey, str], list[float]] = {}
    for point in points:
        in_run.setdefault((point.key, point.run_id), []).append(math.log(point.p50_ms))
    series: dict[SeriesKey, list[float]] = {}
    for (key, _), logs in in_run.items():  # a run's own copies (an A/A run's baseline) are one observation
        series.setdefault(key, []).append(math.fsum(logs) / len(logs))  # short lists: numpy costs more here
    pooled: dict[str, list[tuple[float, int]]] = {}
    for key, logs in series.items():
        if len(logs) >= MIN_RUNS:
            mean = math.fsum(logs) / len(logs)
            pooled.setdefault(key[0], []).append((math.fsum((x - mean) ** 2 for x in logs) / (len(logs) - 1),
                                                  len(logs)))
    floors = {}
    for device, parts in pooled.items():
        dof = sum(n - 1 for _, n in parts)
        estimate = math.sqrt(sum(v * (n - 1) for v, n in parts) / dof)
        upper = estimate * math.sqrt(dof / chi2_quantile(UPPER_BOUND_TAIL, dof))
        floors[device] = NoiseFloor(device, upper, estimate, len(parts), sum(n for _, n in parts))
    return floors
