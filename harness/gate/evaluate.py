"""A run judged against budget rules: every rule on every cell it selects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..common.errors import EdgebenchError, ExitCode
from ..results.record import Cell, Export, cell_key
from .budgets import Rule
from .checks import CheckResult, Reference, Regression, Verdict


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
             allow_missing: bool = False, floors: Mapping[str, float] | None = None) -> GateResult:
    """Judge every rule on every candidate cell it selects.

    max_regression compares a cell with its in-run baseline (a ``MODEL@baseline`` cell measured beside it)
    when the run has one, else with ``baseline`` (another run's export), where ``floors`` (device -> sigma of
    log p50 between runs, results.noise) widens what counts as noise.
    """
    labels = {d["name"]: {*(d.get("groups") or []), *(d.get("tags") or [])} for d in export.get("devices") or []}
    results = export.get("results") or []
    in_run = {(c["device"], c["baseline_for"], c["variant"]): c for c in results if c.get("baseline_for")}
    base_cells = {cell_key(c): c for c in (baseline["results"] if baseline else [])}

    def reference(cell: Cell) -> Reference | None:
        key = cell_key(cell)
        if key in in_run:
            return Reference(in_run[key], paired=True)
        if key in base_cells:
            return Reference(base_cells[key], floor_sigma=(floors or {}).get(cell["device"]))
        return None

    evaluations = []
    for rule in rules:
        if baseline is None and not in_run and any(isinstance(c, Regression) for c in rule.checks):
            raise EdgebenchError("max_regression needs a baseline: measure one side by side (run --baseline-models) "
                                 "or pass --baseline ID or LABEL", where=rule.where)
        # in-run baseline cells are what candidates are compared with, not candidates themselves
        cells = [c for c in results if not c.get("baseline_for") and rule.matches(c, labels)]
        if not cells:
            missing = tuple(c.missing(rule.selectors, "no cell matched") for c in rule.checks)
            evaluations.append(Evaluation(rule, None, _allow(missing, allow_missing)))
        for cell in cells:
            ref = reference(cell)
            checked = tuple(c.evaluate(cell, ref) for c in rule.checks)
            evaluations.append(Evaluation(rule, cell_key(cell), _allow(checked, allow_missing)))
    return GateResult(export["run"].get("id"), baseline["run"].get("id") if baseline else None,
                      tuple(evaluations))


def _allow(results: tuple[CheckResult, ...], allow_missing: bool) -> tuple[CheckResult, ...]:
    if not allow_missing:
        return results
    return tuple(replace(r, verdict=Verdict.WARN, note="allowed missing") if r.missing else r for r in results)
