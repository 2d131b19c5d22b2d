"""Which variant to ship on each device: the fastest one that meets the accuracy bar and the budgets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..common.errors import EdgebenchError
from ..gate.checks import LATENCY_FLAGS, Verdict
from ..gate.evaluate import GateResult
from ..results.comparison import comparable
from ..results.record import Accuracy, Cell, Export, Status, p50
from .format import num, pct, short

DEFAULT_ACCURACY_BAR: dict[str, float] = {"cosine": 0.99, "top1_agreement": 0.99}
DOCTOR_VARIANTS = ("int8", "int16x8", "dynamic")  # the quantized variants `edgebench doctor` diagnoses


def resolve_accuracy_bar(bar: Mapping[str, float] | None) -> dict[str, float]:
    """The default bar with the user's overrides; unknown metrics are refused."""
    merged = dict(DEFAULT_ACCURACY_BAR)
    for key, value in (bar or {}).items():
        if key not in DEFAULT_ACCURACY_BAR:
            raise EdgebenchError(f"unknown accuracy bar metric {key!r} (known: cosine, top1_agreement)",
                                 where="accuracy bar")
        merged[key] = float(value)
    return merged


def cell_accuracy(cell: Cell) -> tuple[Accuracy | None, str | None]:
    """Per-output accuracy and where it was measured: on the device, else at conversion on the host."""
    measured = cell.get("accuracy")
    if measured:
        return measured, "device"
    conv: Accuracy | None = (cell.get("conversion") or {}).get("accuracy")
    return (conv, "conversion") if conv else (None, None)


def accuracy_failure(accuracy: Accuracy, bar: Mapping[str, float]) -> str | None:
    """Why the accuracy misses the bar, or None. Each output needs cosine >= bar or (classifiers) top-1 >= bar."""
    for name, m in accuracy.items():
        cos, top1 = m.get("cosine"), m.get("top1_agreement")
        if cos is None and top1 is None:
            continue
        if (cos is not None and cos >= bar["cosine"]) or (top1 is not None and top1 >= bar["top1_agreement"]):
            continue
        parts = [f"cosine {cos:.4f} < {bar['cosine']}" if cos is not None else "no cosine"]
        if top1 is not None:
            parts.append(f"top-1 agreement {top1:.3f} < {bar['top1_agreement']}")
        return f"too inaccurate: {', '.join(parts)} on output {name!r}"
    return None


def accuracy_measured(accuracy: Accuracy | None) -> bool:
    return any(m.get("cosine") is not None or m.get("top1_agreement") is not None
               for m in (accuracy or {}).values())


def acc_min(accuracy: Accuracy | None, key: str) -> float | None:
    values: list[float] = [v for m in (accuracy or {}).values() if (v := m.get(key)) is not None]  # type: ignore[misc]
    return min(values) if values else None


def budget_failures(result: GateResult | None) -> dict[tuple[str, str, str], list[str]]:
    """The gate's FAIL explanations per (device, model, variant); a WARN (untrusted pass) does not reject."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for ev in result.evaluations if result is not None else ():
        if ev.cell is not None and ev.verdict is Verdict.FAIL:
            out.setdefault(ev.cell, []).append(ev.explanation)
    return out


@dataclass(frozen=True)
class Candidate:
    variant: str
    status: str
    p50_ms: float | None
    verdict: str  # winner | runner_up | slower | inaccurate | over_budget | failed
    reason: str
    accuracy_measured: bool
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recommendation:
    device: str
    model: str
    winner: Candidate | None
    runner_up: Candidate | None
    candidates: tuple[Candidate, ...]  # winner, runner-up, slower ones by p50, then the rejected

    def why(self, variant: str) -> str:
        return {c.variant: c.reason for c in self.candidates}[variant]


def _p50(cell: Cell) -> float:
    """The p50 of a cell known to have one (see _rejection)."""
    latency = cell.get("latency_ms")
    assert latency is not None and latency["p50"] is not None
    return latency["p50"]


def _rejection(cell: Cell, bar: Mapping[str, float], broken: list[str]) -> tuple[str, str] | None:
    if cell.get("status") != Status.OK:
        return "failed", f"{cell.get('status')}: {short(cell.get('error')) or 'no error text'}"
    if not comparable(cell):
        return "failed", "no latency samples"
    accuracy, _ = cell_accuracy(cell)
    failure = accuracy_failure(accuracy, bar) if accuracy else None
    if failure:
        return "inaccurate", failure
    if broken:
        return "over_budget", "over budget: " + "; ".join(broken)
    return None


def recommend(export: Export, accuracy_bar: Mapping[str, float] | None = None,
              budgets_result: GateResult | None = None) -> dict[str, dict[str, Recommendation]]:
    """Per device, per model: the fastest ok variant (by p50) that meets the accuracy bar and the budgets.

    Keyed by model too: accuracy is measured against each model's own fp32 reference, so "int8 of model A beats
    fp32 of model B" would compare unlike things. A cell without accuracy data is allowed but marked.
    """
    bar = resolve_accuracy_bar(accuracy_bar)
    broken = budget_failures(budgets_result)
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in export.get("results") or ():
        groups.setdefault((cell["device"], cell["model"]), []).append(cell)
    out: dict[str, dict[str, Recommendation]] = {}
    for (device, model), cells in groups.items():
        accepted: list[Cell] = []
        rejected: list[Candidate] = []
        for cell in cells:
            why = _rejection(cell, bar, broken.get((device, model, cell["variant"]), []))
            if why:
                rejected.append(_candidate(cell, *why))
            else:
                accepted.append(cell)
        accepted.sort(key=lambda c: (_p50(c), c["variant"]))
        ranked = _rank(accepted)
        order = {"inaccurate": 0, "over_budget": 1, "failed": 2}
        rejected.sort(key=lambda c: (order[c.verdict], c.variant))
        out.setdefault(device, {})[model] = Recommendation(
            device, model, ranked[0] if ranked else None, ranked[1] if len(ranked) > 1 else None,
            tuple(ranked + rejected))
    return out


def _rank(accepted: list[Cell]) -> list[Candidate]:
    if not accepted:
        return []
    best = accepted[0]
    best_p50 = _p50(best)
    ranked = []
    for i, cell in enumerate(accepted):
        p50 = _p50(cell)
        slower = f"{pct((p50 / best_p50 - 1) * 100)} p50 vs {best['variant']} ({num(best_p50)} ms)"
        if i == 0:
            verdict, reason = "winner", "fastest variant that meets the bar"
            if len(accepted) > 1 and _ci_overlap(cell, accepted[1]):
                reason += f"; its 95% CI overlaps {accepted[1]['variant']}'s: treat them as equally fast"
        elif i == 1:
            verdict, reason = "runner_up", f"runner-up: {slower}"
        else:
            verdict, reason = "slower", f"too slow: {slower}"
        accuracy, _ = cell_accuracy(cell)
        if not accuracy_measured(accuracy):
            reason += " (accuracy not measured)"
        distrust = [f for f in cell.get("flags") or () if f in (*LATENCY_FLAGS, "uncertain_p50")]
        if distrust:
            reason += f"; measurement flagged {', '.join(distrust)}: re-measure before relying on it"
        ranked.append(_candidate(cell, verdict, reason))
    return ranked


def _ci_overlap(a: Cell, b: Cell) -> bool:
    la, lb = a.get("latency_ms"), b.get("latency_ms")
    ca, cb = (la["p50_ci95"] if la else None), (lb["p50_ci95"] if lb else None)
    return bool(ca and cb and ca[1] >= cb[0])


def _candidate(cell: Cell, verdict: str, reason: str) -> Candidate:
    accuracy, _ = cell_accuracy(cell)
    return Candidate(cell["variant"], str(cell.get("status")), p50(cell), verdict,
                     reason, accuracy_measured(accuracy), tuple(cell.get("flags") or ()))
