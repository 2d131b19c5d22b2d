"""A budget's bounds as small parsed checks, like pytest-benchmark's ``min:5%``: each judges one cell and
explains itself ("p90 41.2 ms > 40 ms on pi-4b-01 mobilenet int8").

Every check x cell gets a verdict: PASS; WARN when the value passes but cannot be trusted (its 95% CI
straddles the bound, the cell is flagged throttled/too_few_samples, a regression is inconclusive, or data is
missing under allow_missing); FAIL otherwise. Missing data FAILs by default: a release cannot pass on numbers
nobody measured. A regression FAILs only when the whole 95% CI of the change is above the limit
(results.comparison): never on one repeat, never within a device's noise floor.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

from ..common.errors import EdgebenchError
from ..results.comparison import Change, Decision, compare
from ..results.record import Cell, Status, p50
from ..results.stats import quantile_ci95

# Uncertainty is not a flag here: the checks read the confidence interval of what they compare.
LATENCY_FLAGS = ("throttled",)


class Verdict(IntEnum):
    """Ordered so that max() of several verdicts is the worst one."""

    PASS = 0
    WARN = 1
    FAIL = 2


@dataclass(frozen=True)
class Metric:
    label: str  # as printed in explanations ("p90")
    unit: str
    upper: bool  # True: the value must stay <= the limit; False: >= the limit
    quantile: float | None = None  # latency percentile, for its confidence interval
    distrust: tuple[str, ...] = ()  # cell flags that make this number untrustworthy


BOUNDS: dict[str, Metric] = {
    "p50_ms": Metric("p50", "ms", True, 0.5, LATENCY_FLAGS),
    "p90_ms": Metric("p90", "ms", True, 0.9, (*LATENCY_FLAGS, "too_few_samples_p90")),
    "p99_ms": Metric("p99", "ms", True, 0.99, (*LATENCY_FLAGS, "too_few_samples_p99")),
    "init_ms": Metric("init", "ms", True, distrust=("throttled",)),
    "first_inference_ms": Metric("first inference", "ms", True, distrust=("throttled",)),
    # throttling is what a sustained run measures, not a reason to distrust it
    "sustained_p90_ms": Metric("sustained p90", "ms", True),
    "peak_rss_mb": Metric("peak RSS", "MB", True),
    "model_bytes": Metric("model size", "B", True),
    "cosine": Metric("cosine", "", False),
    "top1_agreement": Metric("top-1 agreement", "", False),
    "snr_db": Metric("SNR", "dB", False),
}
REGRESSION = "max_regression"


def fmt_number(value: float) -> str:
    return f"{value:.6g}" if abs(value) < 1e5 else f"{value:.0f}"


def _with_unit(value: float, unit: str) -> str:
    return f"{fmt_number(value)} {unit}".rstrip()


def cell_label(cell: Cell) -> str:
    return f"{cell['device']} {cell['model']} {cell['variant']}"


@dataclass(frozen=True)
class CheckResult:
    """One bound judged on one cell. `text` says what was measured, `note` why it is not a clean PASS."""

    metric: str
    verdict: Verdict
    value: float | None
    limit: float | None
    baseline: float | None
    text: str
    where: str  # the cell ("pi-4b-01 mobilenet int8") or the rule's selectors when no cell matched
    note: str | None = None
    missing: bool = False  # no data: FAIL, or WARN under allow_missing
    more_repeats: int | None = None  # an inconclusive regression: about how many more repeats would decide it

    @property
    def explanation(self) -> str:
        return f"{self.text} on {self.where}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Reference:
    """What a cell is compared with: its baseline cell, measured beside it in the same run (paired) or in a
    stored run, with the device's noise floor (results.noise) when history knows it."""

    cell: Cell
    paired: bool = False
    floor_sigma: float | None = None


class Check(ABC):
    """One parsed bound, like pytest-benchmark's `min:5%`: evaluates a cell and explains itself."""

    metric: str
    limit: float

    def evaluate(self, cell: Cell, reference: Reference | None = None) -> CheckResult:
        if cell.get("status") != Status.OK:
            reason = str(cell.get("status")) + (f": {cell['error']}" if cell.get("error") else "")
            return self.missing(cell_label(cell), f"not measured ({reason})")
        result = self._judge(cell, reference)
        if result.verdict is Verdict.PASS:
            distrusted = sorted(set(self._distrust()) & set(self._flags(cell, reference)))
            if distrusted:
                return replace(result, verdict=Verdict.WARN, note=f"untrustworthy: {', '.join(distrusted)}")
        return result

    def missing(self, where_: str, why: str) -> CheckResult:
        return CheckResult(self.metric, Verdict.FAIL, None, self.limit, None, f"{self.metric}: {why}", where_,
                           missing=True)

    @abstractmethod
    def describe(self) -> str:
        """The bound as a reader would write it: 'p90 <= 40 ms'."""

    @abstractmethod
    def _judge(self, cell: Cell, reference: Reference | None) -> CheckResult: ...

    @abstractmethod
    def _distrust(self) -> tuple[str, ...]: ...

    def _flags(self, cell: Cell, reference: Reference | None) -> list[str]:
        return list(cell.get("flags") or [])


class Bound(Check):
    def __init__(self, metric: str, limit: float):
        self.metric, self.limit, self.spec = metric, limit, BOUNDS[metric]

    def describe(self) -> str:
        return f"{self.spec.label} {'<=' if self.spec.upper else '>='} {_with_unit(self.limit, self.spec.unit)}"

    def _distrust(self) -> tuple[str, ...]:
        return self.spec.distrust

    def _read(self, cell: Cell) -> tuple[float | None, str | None]:
        """The cell's value for this metric, and which output it came from (accuracy: the worst one)."""
        if self.spec.quantile is not None:
            latency: Any = cell.get("latency_ms") or {}
            return latency.get(self.spec.label), None
        if self.metric in ("cosine", "top1_agreement", "snr_db"):
            per_output: list[tuple[float, str]] = [
                (value, name) for name, m in (cell.get("accuracy") or {}).items()
                if isinstance(value := m.get(self.metric), (int, float))]
            if not per_output:
                return None, None
            worst, output = min(per_output)
            return worst, output
        if self.metric == "sustained_p90_ms":
            sustained = cell.get("sustained")
            return (sustained["sustained_p90_ms"] if sustained else None), None
        measured: Any = cell.get(self.metric)
        return measured, None

    def _ci(self, cell: Cell) -> tuple[float, float] | None:
        latency = cell.get("latency_ms")
        if latency is None or self.spec.quantile is None:
            return None
        if self.spec.quantile == 0.5:
            ci = latency.get("p50_ci95")
            return (ci[0], ci[1]) if ci else None
        return quantile_ci95(latency.get("samples") or [], self.spec.quantile)

    def _judge(self, cell: Cell, reference: Reference | None) -> CheckResult:
        value, output = self._read(cell)
        label = cell_label(cell)
        if value is None:
            return self.missing(label, "not measured")
        spec = self.spec
        ok = value <= self.limit if spec.upper else value >= self.limit
        op = ("<=" if ok else ">") if spec.upper else (">=" if ok else "<")
        text = f"{spec.label} {_with_unit(value, spec.unit)} {op} {_with_unit(self.limit, spec.unit)}"
        if output is not None:
            text += f" (output {output!r})"
        if not ok:
            return CheckResult(self.metric, Verdict.FAIL, value, self.limit, None, text, label)
        ci = self._ci(cell)
        if ci is not None and ci[0] <= self.limit < ci[1]:
            note = f"its 95% CI [{fmt_number(ci[0])}, {fmt_number(ci[1])}] {spec.unit} straddles the bound"
            return CheckResult(self.metric, Verdict.WARN, value, self.limit, None, text, label, note)
        return CheckResult(self.metric, Verdict.PASS, value, self.limit, None, text, label)


class Regression(Check):
    """p50 slower than the baseline cell by more than `limit` percent: decided on the CI of the change."""

    metric = REGRESSION

    def __init__(self, percent: float):
        self.limit = percent

    def describe(self) -> str:
        return f"p50 regression <= {fmt_number(self.limit)}%"

    def missing(self, where_: str, why: str) -> CheckResult:
        # Results carry the allowed p50 in ms, which needs a baseline; a bare percentage would mix units.
        return replace(super().missing(where_, why), limit=None)

    def _distrust(self) -> tuple[str, ...]:
        return LATENCY_FLAGS

    def _flags(self, cell: Cell, reference: Reference | None) -> list[str]:
        # A throttled baseline makes the comparison as doubtful as a throttled run.
        return [*(cell.get("flags") or []), *((reference.cell["flags"] if reference else None) or [])]

    def _judge(self, cell: Cell, reference: Reference | None) -> CheckResult:
        label = cell_label(cell)
        new = cell.get("latency_ms")
        if not new or new.get("p50") is None:
            return self.missing(label, "no latency measured")
        assert new["p50"] is not None
        change = compare(cell, reference.cell, paired=reference.paired,
                         floor_sigma=reference.floor_sigma) if reference is not None else None
        if reference is None or change is None:
            # Nothing to regress from (a new cell, or one the baseline failed to measure): not this run's gap.
            why = "no baseline cell" if reference is None else f"baseline cell is {reference.cell.get('status')}"
            return CheckResult(self.metric, Verdict.WARN, new["p50"], None, None, f"p50 {fmt_number(new['p50'])} ms",
                               label, f"{why}: regression not checked")
        old_p50 = p50(reference.cell) or 0.0
        which = "in-run baseline" if reference.paired else "baseline"
        text = (f"p50 {fmt_number(new['p50'])} ms vs {which} {fmt_number(old_p50)} ms: {change.describe()}, "
                f"limit +{fmt_number(self.limit)}%")
        result = CheckResult(self.metric, Verdict.PASS, new["p50"], old_p50 * (1 + self.limit / 100), old_p50,
                             text, label)
        decision = change.decide(self.limit)
        if decision is Decision.WITHIN:
            return result
        if decision is Decision.EXCEEDS:
            return replace(result, verdict=Verdict.FAIL, note="the whole 95% CI is above the limit")
        return replace(result, verdict=Verdict.WARN, note=self._inconclusive(change),
                       more_repeats=change.repeats_needed(self.limit))

    def _inconclusive(self, change: Change) -> str:
        """Why the change is undecided, naming the actual cause (one repeat, the noise floor, a wide CI)."""
        n = change.pairs or min(change.repeats)
        after = f"inconclusive after {n} repeat{'s' * (n != 1)}"
        # only an in-run baseline can be measured again; a stored run's side is what it is
        more = "--until-conclusive" if change.paired else "--baseline-models with --until-conclusive"
        if change.single or change.ci95 is None:
            return (f"{after}: a single repeat cannot separate a regression from run-to-run noise (it gives no "
                    f"between-process CI); use --repeats N (3 or more) or {more}")
        lo, hi = change.ci95
        ci = f"the 95% CI [{lo:.3f}, {hi:.3f}]"
        if change.floor is not None and lo > 1 + self.limit / 100:
            return (f"{after}: {ci} is above the limit but within this device's run-to-run noise floor of "
                    f"{change.floor * 100:.1f}%; measure side by side (--baseline-models) to decide")
        limit = f"x{1 + self.limit / 100:.3f} (+{fmt_number(self.limit)}%)"
        return (f"{after}: {ci} straddles the limit {limit}; about {change.repeats_needed(self.limit)} more repeats "
                f"would decide (--repeats N or {more})")


def make_check(metric: str, value: Any, where_: str) -> Check:
    """Parse one bound from budgets.yaml (or assert_budget); errors name `where_`."""
    if metric == REGRESSION:
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                value = float(value.strip()[:-1])
            except ValueError:
                raise EdgebenchError(f"{metric} must be a percentage like '5%', not {value!r}", where=where_) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise EdgebenchError(f"{metric} must be a non-negative percentage like '5%', not {value!r}", where=where_)
        return Regression(float(value))
    if metric not in BOUNDS:
        raise EdgebenchError(f"unknown metric {metric!r} (known: {', '.join([*BOUNDS, REGRESSION])})", where=where_)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EdgebenchError(f"{metric} must be a number, not {value!r}", where=where_)
    if BOUNDS[metric].upper and value < 0:
        raise EdgebenchError(f"{metric} must not be negative", where=where_)
    return Bound(metric, float(value))
