"""A run judged against budget rules: every rule on every cell it selects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..common.errors import EdgebenchError, ExitCode
from ..results.record import Export, cell_key
from .budgets import Rule
from .checks import CheckResult, Regression, Verdict


@dataclass(frozen=True)
class Evaluation:
    """One rule on one cell (cell None: the rule matched no cell)."""

    rule: Rule
    cell: tuple[str, str, str] | None  # (device, model, variant)
    results: tuple[CheckResult, ...]

    @property
    def verdict(self) -> Verdict:
        return max(r.verdict for r in self.results)

    @property
    def name(self) -> str:
        return "/".join(self.cell) if self.cell else "no cell matched"

    @property
    def explanation(self) -> str:
        """The reasons behind the verdict (all of them when it is a PASS)."""
        return "; ".join(r.explanation for r in self.results if r.verdict == self.verdict)


@dataclass(frozen=True)
class GateResult:
    run_id: str | None
    baseline_id: str | None
    evaluations: tuple[Evaluation, ...]

    @property
    def counts(self) -> dict[Verdict, int]:
        return {v: sum(e.verdict == v for e in self.evaluations) for v in Verdict}

    @property
    def verdict(self) -> Verdict:
        return max((e.verdict for e in self.evaluations), default=Verdict.PASS)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.BUDGET_BROKEN if self.verdict is Verdict.FAIL else ExitCode.OK

    def worst_first(self) -> list[Evaluation]:
        return sorted(self.evaluations, key=lambda e: -e.verdict)


def evaluate(export: Export, rules: Sequence[Rule], baseline: Export | None = None,
             allow_missing: bool = False) -> GateResult:
    """Judge every rule on every cell it selects; `baseline` is another run's export (for max_regression)."""
    labels = {d["name"]: {*(d.get("groups") or []), *(d.get("tags") or [])} for d in export.get("devices") or []}
    base_cells = {cell_key(c): c for c in (baseline["results"] if baseline else [])}
    evaluations = []
    for rule in rules:
        if baseline is None and any(isinstance(c, Regression) for c in rule.checks):
            raise EdgebenchError("max_regression needs a baseline run: pass --baseline ID or LABEL", where=rule.where)
        cells = [c for c in export.get("results") or [] if rule.matches(c, labels)]
        if not cells:
            results = tuple(c.missing(rule.selectors, "no cell matched") for c in rule.checks)
            evaluations.append(Evaluation(rule, None, _allow(results, allow_missing)))
        for cell in cells:
            key = cell_key(cell)
            results = tuple(c.evaluate(cell, base_cells.get(key)) for c in rule.checks)
            evaluations.append(Evaluation(rule, key, _allow(results, allow_missing)))
    return GateResult(export["run"].get("id"), baseline["run"].get("id") if baseline else None,
                      tuple(evaluations))


def _allow(results: tuple[CheckResult, ...], allow_missing: bool) -> tuple[CheckResult, ...]:
    if not allow_missing:
        return results
    return tuple(replace(r, verdict=Verdict.WARN, note="allowed missing") if r.missing else r for r in results)
