"""What "changed against the baseline" means: one definition, used by the gate and the report alike."""

from __future__ import annotations

from dataclasses import dataclass

from .record import Cell, LatencySummary, Status
from .stats import mann_whitney_p

SIGNIFICANCE = 0.01
MIN_CHANGE_PCT = 2.0  # a significant change smaller than this is machine noise, not a regression


@dataclass(frozen=True)
class Change:
    """The p50 of a cell against its baseline cell."""

    pct: float  # +12.0: 12% slower
    p_value: float | None  # None: too few samples to test
    noise_pct: float  # the larger relative half-width of the two p50 CIs: each run's own noise

    @property
    def significant(self) -> bool:
        return (self.p_value is not None and self.p_value < SIGNIFICANCE
                and abs(self.pct) >= max(MIN_CHANGE_PCT, self.noise_pct))


def _relative_halfwidth(latency: LatencySummary) -> float:
    ci = latency.get("p50_ci95")
    p50 = latency.get("p50")
    return (ci[1] - ci[0]) / 2 / p50 * 100 if ci and p50 else 0.0


def comparable(cell: Cell) -> bool:
    latency = cell.get("latency_ms")
    return cell.get("status") == Status.OK and bool(latency and latency.get("p50"))


def p50_change(new: Cell, old: Cell) -> Change | None:
    """The change of p50 from ``old`` to ``new``; None unless both cells were measured."""
    if not (comparable(new) and comparable(old)):
        return None
    lat_new, lat_old = new["latency_ms"], old["latency_ms"]
    assert lat_new is not None and lat_old is not None and lat_new["p50"] and lat_old["p50"]
    pct = (lat_new["p50"] / lat_old["p50"] - 1) * 100
    p = mann_whitney_p(lat_new.get("samples") or [], lat_old.get("samples") or [])
    return Change(pct, p, max(_relative_halfwidth(lat_new), _relative_halfwidth(lat_old)))
