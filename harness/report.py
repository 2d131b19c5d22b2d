"""Self-contained HTML reports: one file per run, and an index of every run over time.

Python computes everything the page shows (summaries, box-plot quantiles, SVG plots, recommendations,
baseline deltas); the Jinja templates only lay it out (autoescape on: device, model and variant names and
error texts come from users and devices); the page's small inline script only sorts and filters rows.
The file opens from file:// with no network: inline CSS, JS and SVG, no fonts, no CDNs.

The data is embedded as JSON in ``<script type="application/json" id="edgebench-data">`` for tools that
scrape reports. Raw samples are NOT embedded (50 devices x 10 variants x 1000 samples would be megabytes):
the export in the store has them; the report keeps summaries and the box-plot quantiles.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from .errors import EdgebenchError
from .gate import LATENCY_FLAGS, GateResult, Verdict
from .stats import MIN_SAMPLES, THROTTLE_NOW_MASK, mann_whitney_p, validity_flags

REPORT_SCHEMA_VERSION = 1  # of the HTML report (meta tag + embedded JSON), not of the export
EXPORT_SCHEMA_VERSIONS = (1,)
DEFAULT_ACCURACY_BAR: dict[str, float] = {"cosine": 0.99, "top1_agreement": 0.99}
SIGNIFICANCE_P = 0.01
NOISE_PCT = 2.0  # a significant change smaller than this is machine noise, not a regression
TEMPLATES = Path(__file__).parent / "templates"
PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4d7c0f", "#9a3412",
           "#475569")


# -- formatting ------------------------------------------------------------------
def _num(v: float | None, unit: str = "") -> str:
    """About three significant digits: enough to compare, few enough to read."""
    if v is None:
        return "—"
    a = abs(v)
    # a 2 us model must not read "0.00 ms": keep three significant digits below 1
    digits = min(6, 2 - math.floor(math.log10(a))) if 0 < a < 1 else 2 if a < 10 else 1 if a < 100 else 0
    return f"{v:.{digits}f}{unit}"


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _g4(v: float) -> str:
    return f"{v:.4g}"


def _pct(v: float) -> str:
    return f"{v:+.1f}%"


def _hex(v: Any) -> str:
    return f"0x{v:x}" if isinstance(v, int) else "—"


# -- accuracy --------------------------------------------------------------------
def _accuracy_bar(bar: Mapping[str, float] | None) -> dict[str, float]:
    merged = dict(DEFAULT_ACCURACY_BAR)
    for key, value in (bar or {}).items():
        if key not in DEFAULT_ACCURACY_BAR:
            raise EdgebenchError(f"unknown accuracy bar metric {key!r} (known: cosine, top1_agreement)",
                                 where="accuracy bar")
        merged[key] = float(value)
    return merged


def cell_accuracy(cell: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Per-output accuracy and where it was measured: on the device, else at conversion on the host."""
    if cell.get("accuracy"):
        return cell["accuracy"], "device"
    conv = (cell.get("conversion") or {}).get("accuracy")
    return (conv, "conversion") if conv else (None, None)


def accuracy_failure(accuracy: Mapping[str, Any], bar: Mapping[str, float]) -> str | None:
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


def _measured(accuracy: Mapping[str, Any] | None) -> bool:
    return any(m.get("cosine") is not None or m.get("top1_agreement") is not None
               for m in (accuracy or {}).values())


def _acc_min(accuracy: Mapping[str, Any] | None, key: str) -> float | None:
    values = [m[key] for m in (accuracy or {}).values() if m.get(key) is not None]
    return min(values) if values else None


# -- budgets (harness.gate result) -------------------------------------------------
def budget_failures(result: GateResult | None) -> dict[tuple[str, str, str], list[str]]:
    """The gate's FAIL explanations per (device, model, variant); a WARN (untrusted pass) does not reject."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for ev in result.evaluations if result is not None else ():
        if ev.cell is not None and ev.verdict is Verdict.FAIL:
            out.setdefault(ev.cell, []).append(ev.explanation)
    return out


# -- recommendation ----------------------------------------------------------------
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


def _rejection(cell: Mapping[str, Any], bar: Mapping[str, float], broken: list[str]) -> tuple[str, str] | None:
    if cell.get("status") != "ok":
        return "failed", f"{cell.get('status')}: {_short(cell.get('error')) or 'no error text'}"
    if not (cell.get("latency_ms") or {}).get("p50"):
        return "failed", "no latency samples"
    accuracy, _ = cell_accuracy(cell)
    failure = accuracy_failure(accuracy, bar) if accuracy else None
    if failure:
        return "inaccurate", failure
    if broken:
        return "over_budget", "over budget: " + "; ".join(broken)
    return None


def _short(text: str | None, limit: int = 200) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def recommend(export: Mapping[str, Any], accuracy_bar: Mapping[str, float] | None = None,
              budgets_result: GateResult | None = None) -> dict[str, dict[str, Recommendation]]:
    """Per device, per model: the fastest ok variant (by p50) that meets the accuracy bar and the budgets.

    Keyed by model too: accuracy is measured against each model's own fp32 reference, so "int8 of model A beats
    fp32 of model B" would compare unlike things. A cell without accuracy data is allowed but marked.
    """
    bar = _accuracy_bar(accuracy_bar)
    broken = budget_failures(budgets_result)
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for cell in export.get("results") or ():
        groups.setdefault((cell["device"], cell["model"]), []).append(cell)
    out: dict[str, dict[str, Recommendation]] = {}
    for (device, model), cells in groups.items():
        accepted: list[Mapping[str, Any]] = []
        rejected: list[Candidate] = []
        for cell in cells:
            why = _rejection(cell, bar, broken.get((device, model, cell["variant"]), []))
            if why:
                rejected.append(_candidate(cell, *why))
            else:
                accepted.append(cell)
        accepted.sort(key=lambda c: (c["latency_ms"]["p50"], c["variant"]))
        ranked = _rank(accepted)
        order = {"inaccurate": 0, "over_budget": 1, "failed": 2}
        rejected.sort(key=lambda c: (order[c.verdict], c.variant))
        out.setdefault(device, {})[model] = Recommendation(
            device, model, ranked[0] if ranked else None, ranked[1] if len(ranked) > 1 else None,
            tuple(ranked + rejected))
    return out


def _rank(accepted: list[Mapping[str, Any]]) -> list[Candidate]:
    if not accepted:
        return []
    best = accepted[0]
    best_p50 = best["latency_ms"]["p50"]
    ranked = []
    for i, cell in enumerate(accepted):
        p50 = cell["latency_ms"]["p50"]
        slower = f"{_pct((p50 / best_p50 - 1) * 100)} p50 vs {best['variant']} ({_num(best_p50)} ms)"
        if i == 0:
            verdict, reason = "winner", "fastest variant that meets the bar"
            if len(accepted) > 1 and _ci_overlap(cell, accepted[1]):
                reason += f"; its 95% CI overlaps {accepted[1]['variant']}'s: treat them as equally fast"
        elif i == 1:
            verdict, reason = "runner_up", f"runner-up: {slower}"
        else:
            verdict, reason = "slower", f"too slow: {slower}"
        accuracy, _ = cell_accuracy(cell)
        if not _measured(accuracy):
            reason += " (accuracy not measured)"
        distrust = [f for f in cell.get("flags") or () if f in LATENCY_FLAGS]
        if distrust:
            reason += f"; measurement flagged {', '.join(distrust)}: re-measure before relying on it"
        ranked.append(_candidate(cell, verdict, reason))
    return ranked


def _ci_overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    ca, cb = a["latency_ms"].get("p50_ci95"), b["latency_ms"].get("p50_ci95")
    return bool(ca and cb and ca[1] >= cb[0])


def _candidate(cell: Mapping[str, Any], verdict: str, reason: str) -> Candidate:
    accuracy, _ = cell_accuracy(cell)
    return Candidate(cell["variant"], str(cell.get("status")), (cell.get("latency_ms") or {}).get("p50"), verdict,
                     reason, _measured(accuracy), tuple(cell.get("flags") or ()))


# -- baseline comparison -------------------------------------------------------------
@dataclass(frozen=True)
class Delta:
    kind: str  # slower | faster | same | untested | new | regressed | fixed
    text: str
    detail: str = ""
    pct: float | None = None
    p_value: float | None = None

    @property
    def significant(self) -> bool:
        return self.kind in ("slower", "faster")


def baseline_delta(cell: Mapping[str, Any], base: Mapping[str, Any] | None, *, alpha: float = SIGNIFICANCE_P,
                   noise_pct: float = NOISE_PCT) -> Delta:
    """p50 change vs the baseline cell; a change only when Mann-Whitney p < alpha AND |delta| >= noise_pct."""
    if base is None:
        return Delta("new", "new in this run")
    ok, base_ok = cell.get("status") == "ok", base.get("status") == "ok"
    if base_ok and not ok:
        return Delta("regressed", "fails now; ok in baseline")
    if not ok:
        return Delta("untested", f"failed in both ({base.get('status')} in baseline)")
    if not base_ok:
        return Delta("fixed", f"ok now; {base.get('status')} in baseline")
    lat, base_lat = cell.get("latency_ms") or {}, base.get("latency_ms") or {}
    if not lat.get("p50") or not base_lat.get("p50"):
        return Delta("untested", "no latency to compare")
    pct = (lat["p50"] / base_lat["p50"] - 1) * 100
    p = mann_whitney_p(lat.get("samples") or [], base_lat.get("samples") or [])
    if p is None:
        return Delta("untested", "too few samples to test", _pct(pct), pct)
    if p < alpha and abs(pct) >= noise_pct:
        return Delta("slower" if pct > 0 else "faster", f"{_pct(pct)} {'slower' if pct > 0 else 'faster'}",
                     _p(p), pct, p)
    return Delta("same", "no significant change", f"{_pct(pct)}, {_p(p)}", pct, p)


# -- SVG ----------------------------------------------------------------------------
def _p(p: float) -> str:
    return "p<1e-6" if p < 1e-6 else f"p={p:.2g}"


def _f(v: float) -> str:
    """Coordinates with one decimal: sub-pixel precision is bytes nobody sees."""
    return f"{v:.1f}".rstrip("0").rstrip(".")


def box_quantiles(samples: Sequence[float]) -> dict[str, float] | None:
    if not samples:
        return None
    q = np.percentile(np.asarray(samples, dtype=np.float64), [5, 25, 50, 75, 95, 0, 100])
    return {k: round(float(v), 4) for k, v in zip(("p5", "p25", "p50", "p75", "p95", "min", "max"), q)}


def box_svg(q: Mapping[str, float], lo: float, hi: float, width: int = 120, height: int = 16) -> Markup:
    """Box p25-p75, median bar, whiskers p5-p95, min/max dots when inside lo..hi (shared by a device+model group)."""
    span = (hi - lo) or 1.0

    def x(v: float) -> str:
        return _f(2 + (min(max(v, lo), hi) - lo) / span * (width - 4))

    m = height // 2
    title = (f"p5 {_num(q['p5'])} · p25 {_num(q['p25'])} · median {_num(q['p50'])} · p75 {_num(q['p75'])} · "
             f"p95 {_num(q['p95'])} ms (min {_num(q['min'])}, max {_num(q['max'])})")
    return Markup(
        f'<svg class="box" width="{width}" height="{height}" role="img"><title>{title}</title>'
        f'<path d="M{x(q["p5"])} {m}H{x(q["p25"])}M{x(q["p75"])} {m}H{x(q["p95"])}'
        f'M{x(q["p5"])} 4V{height - 4}M{x(q["p95"])} 4V{height - 4}"/>'
        f'<rect x="{x(q["p25"])}" y="3" width="{_f(max(float(x(q["p75"])) - float(x(q["p25"])), 1))}" '
        f'height="{height - 6}"/><path class="med" d="M{x(q["p50"])} 1V{height - 1}"/>'
        + "".join(f'<circle cx="{x(v)}" cy="{m}" r="1.3"/>' for v in (q["min"], q["max"]) if lo <= v <= hi)
        + "</svg>")


def pareto_front(points: Sequence[tuple[float, float]], *, maximize_y: bool) -> list[int]:
    """Indices of points no other point beats: lower x and better (or equal) y, one of them strictly."""
    def better_or_equal(a: float, b: float) -> bool:
        return a >= b if maximize_y else a <= b

    front = []
    for i, (x, y) in enumerate(points):
        if not any(ox <= x and better_or_equal(oy, y) and (ox < x or oy != y)
                   for j, (ox, oy) in enumerate(points) if j != i):
            front.append(i)
    return front


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


class _Plot:
    """A small x/y chart frame: axes, ticks, labels; callers add marks in data coordinates."""

    H, L, R, T, B = 230, 52, 14, 12, 38

    def __init__(self, xs: Iterable[float], ys: Iterable[float], x_label: str, y_label: str, *,
                 x_ticks: Sequence[tuple[float, str]] | None = None, y_zero: bool = True, width: int = 380):
        xs, ys = list(xs), list(ys)
        self.W = width
        self.x0, self.x1 = _padded(min(xs), max(xs), zero=x_ticks is None)
        self.y0, self.y1 = _padded(min(ys), max(ys), zero=y_zero)
        self.x_label, self.y_label = x_label, y_label
        self.x_ticks = x_ticks
        self.marks: list[str] = []

    def sx(self, v: float) -> str:
        return _f(self.L + (v - self.x0) / ((self.x1 - self.x0) or 1) * (self.W - self.L - self.R))

    def sy(self, v: float) -> str:
        return _f(self.H - self.B - (v - self.y0) / ((self.y1 - self.y0) or 1) * (self.H - self.T - self.B))

    def svg(self, title: str) -> Markup:
        b, l, r = self.H - self.B, self.L, self.W - self.R
        parts = [f'<svg class="plot" width="{self.W}" height="{self.H}" viewBox="0 0 {self.W} {self.H}" role="img">'
                 f'<title>{escape(title)}</title><path class="axis" d="M{l} {self.T}V{b}H{r}"/>']
        x_ticks = self.x_ticks or [(v, f"{v:g}") for v in _ticks(self.x0, self.x1)]
        for v, label in x_ticks:
            parts.append(f'<text x="{self.sx(v)}" y="{b + 13}" class="tx">{escape(label)}</text>')
        for v in _ticks(self.y0, self.y1):
            y = self.sy(v)
            parts.append(f'<path class="grid" d="M{l} {y}H{r}"/><text x="{l - 4}" y="{y}" class="ty">{v:g}</text>')
        parts.append(f'<text x="{_f((l + r) / 2)}" y="{self.H - 4}" class="lx">{escape(self.x_label)}</text>'
                     f'<text transform="translate(11 {_f((self.T + b) / 2)}) rotate(-90)" class="lx">'
                     f'{escape(self.y_label)}</text>')
        return Markup("".join(parts + self.marks) + "</svg>")


def _padded(lo: float, hi: float, *, zero: bool) -> tuple[float, float]:
    """The axis range: from 0 when asked (and all values >= 0), else a margin below; always a margin above."""
    if zero and lo >= 0:
        return 0.0, hi + (hi * 0.08 or 1.0)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    return lo - pad, hi + pad


def tradeoff_svg(points: Sequence[tuple[str, float, float]], y_label: str, *, maximize_y: bool,
                 y_fmt: Callable[[float], str] = _num) -> Markup:
    """Scatter of (label, p50 ms, y) with the Pareto front filled and joined; others hollow."""
    plot = _Plot((p[1] for p in points), (p[2] for p in points), "p50 latency (ms)", y_label,
                 y_zero=not maximize_y)
    front = set(pareto_front([(p[1], p[2]) for p in points], maximize_y=maximize_y))
    line = sorted((points[i] for i in front), key=lambda p: p[1])
    if len(line) > 1:
        plot.marks.append('<polyline class="front" points="'
                          + " ".join(f"{plot.sx(p[1])},{plot.sy(p[2])}" for p in line) + '"/>')
    for i, (label, x, y) in enumerate(points):
        cls = "pt on" if i in front else "pt"
        plot.marks.append(f'<g class="{cls}"><circle cx="{plot.sx(x)}" cy="{plot.sy(y)}" r="4"/>'
                          f'<text x="{_f(float(plot.sx(x)) + 6)}" y="{_f(float(plot.sy(y)) - 5)}">'
                          f'{escape(label[:18])}</text><title>{escape(label)}: p50 {_num(x)} ms, '
                          f'{escape(y_label)} {y_fmt(y)}'
                          f'{" (Pareto front)" if i in front else ""}</title></g>')
    return plot.svg(f"trade-off: p50 vs {y_label}")


def trend_svg(series: Mapping[str, Sequence[tuple[int, float]]], run_labels: Sequence[str]) -> Markup:
    """One line per series over the runs (x = run index), p50 relative to the series' first run on y.

    Relative, because variants of one model can differ 70x in speed: on an absolute axis the fast ones are a
    flat line at zero and their regressions invisible. Points keep the absolute p50 in their tooltip.
    """
    xs = [float(i) for i in range(len(run_labels))]
    rel = {name: [(i, v / pts[0][1]) for i, v in pts] for name, pts in series.items()}
    ys = [r for pts in rel.values() for _, r in pts] + [1.0]
    step = max(1, math.ceil(len(run_labels) / 8))
    ticks = [(float(i), run_labels[i][:12]) for i in range(0, len(run_labels), step)]
    plot = _Plot(xs, ys, "run", "p50 vs its first run (×)", x_ticks=ticks, width=760)
    for n, (name, pts) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        coords = " ".join(f"{plot.sx(i)},{plot.sy(r)}" for i, r in rel[name])
        plot.marks.append(f'<g class="series" style="--c:{color}"><title>{escape(name)}</title>'
                          f'<polyline points="{coords}"/>'
                          + "".join(f'<circle cx="{plot.sx(i)}" cy="{plot.sy(r)}" r="2.5"><title>{escape(name)} · '
                                    f'{escape(run_labels[i])}: {_num(v)} ms ({r:.2f}×)</title></circle>'
                                    for (i, v), (_, r) in zip(pts, rel[name]))
                          + "</g>")
    return plot.svg("p50 over runs, relative to each series' first run")


# -- view model -------------------------------------------------------------------------
# flag -> (column it marks, message); the too-few-samples ones are common and mild: dimmed, not highlighted.
FLAG_TEXT = {
    "throttled": ("p50", "device throttled during the run (before {tb}, after {ta}): cool it down or pin the governor"),
    "high_cv": ("mean", "unstable: CV {cv}; close other work, pin the governor or measure longer"),
    "too_few_samples_p90": ("p90", "p90 from {n} samples: needs ≥{p90} to mean anything (--runs)"),
    "too_few_samples_p99": ("p99", "p99 from {n} samples: needs ≥{p99} to mean anything (--runs)"),
    "random_calibration": ("cosine", "int8 calibrated on random data: accuracy here says little; "
                                     "give representative calibration data"),
    "same_as_fp32": ("variant", "quantization left the weights float: effectively the fp32 model"),
    "cpu_fallback": ("delegate", "some ops fell back to the CPU (not delegated): see the cell's delegate coverage"),
    "not_delegated": ("delegate", "nothing was delegated: the whole graph ran on the runtime's reference kernels"),
}


MILD_FLAGS = {"too_few_samples_p90", "too_few_samples_p99"}


class Td(NamedTuple):
    text: str
    v: str | None = None  # sort key when it differs from the text ("" = missing: sorts last)
    warn: str | None = None  # validity warning shown in place
    sub: str | None = None  # second line (CI of the median)
    mild: bool = False  # only mild warnings: dim the value instead of highlighting it


def _flag_message(flag: str, cell: Mapping[str, Any]) -> str:
    lat = cell.get("latency_ms") or {}
    cv = lat.get("cv")
    return FLAG_TEXT[flag][1].format(
        tb=_hex((cell.get("thermal_before") or {}).get("throttled")),
        ta=_hex((cell.get("thermal_after") or {}).get("throttled")),
        cv=f"{cv:.0%}" if cv is not None else "?", n=lat.get("count"), **MIN_SAMPLES)


def _cell_flags(cell: Mapping[str, Any]) -> list[str]:
    flags = set(cell.get("flags") or ())
    if cell.get("latency_ms"):
        flags |= set(validity_flags(cell["latency_ms"], cell.get("thermal_before"), cell.get("thermal_after")))
    return sorted(flags)


def predicted_compatibility(cells: list[Mapping[str, Any]], variants: list[str]) -> list[dict[str, Any]]:
    """Per runtime a device may have, whether each variant loads there, read from the converted files' ops."""
    by_runtime: dict[str, dict[str, Mapping[str, Any]]] = {}
    for cell in cells:
        diagnostics = (cell.get("conversion") or {}).get("diagnostics") or {}
        for runtime, verdict in (diagnostics.get("compatibility") or {}).items():
            by_runtime.setdefault(runtime, {})[cell["variant"]] = verdict
    return [{"runtime": rt, "verdicts": [found.get(v) for v in variants]} for rt, found in sorted(by_runtime.items())]


def _key(v: float | None) -> str:
    return "" if v is None else f"{v:.7g}"


def _numtd(v: float | None, unit: str = "") -> Td:
    return Td(_num(v, unit), _key(v))


def _row(cell: Mapping[str, Any], box: Markup | None, delta: Delta | None, rec: Recommendation | None,
         bar: Mapping[str, float]) -> dict[str, Any]:
    lat = cell.get("latency_ms") or {}
    flags = _cell_flags(cell)
    warns: dict[str, list[str]] = {}
    mild: dict[str, bool] = {}
    for flag in flags:
        if flag in FLAG_TEXT:
            col = FLAG_TEXT[flag][0]
            warns.setdefault(col, []).append(_flag_message(flag, cell))
            mild[col] = mild.get(col, True) and flag in MILD_FLAGS
    accuracy, source = cell_accuracy(cell)
    below = accuracy_failure(accuracy, bar) if accuracy else None
    if below:
        warns.setdefault("cosine", []).append(below)
        mild["cosine"] = False
    cos, snr, top1 = (_acc_min(accuracy, k) for k in ("cosine", "snr_db", "top1_agreement"))
    ci = lat.get("p50_ci95")
    deleg = cell.get("delegate") or {}
    cov = deleg.get("coverage") or {}
    deleg_text = "—" if not deleg else (f"{deleg.get('name')} {cov.get('partitions')}p/{cov.get('cpu_ops')}cpu"
                                        if cov else str(deleg.get("name")))
    mean = lat.get("mean")
    tds = {
        "device": Td(cell["device"]), "model": Td(cell["model"]), "variant": Td(cell["variant"]),
        "p50": Td(_num(lat.get("p50")), _key(lat.get("p50")),
                  sub=f"{_num(ci[0])}–{_num(ci[1])}" if ci else None),
        "p90": _numtd(lat.get("p90")), "p99": _numtd(lat.get("p99")),
        "mean": Td("—" if mean is None else f"{_num(mean)} ± {_num(lat.get('std'))}",
                   _key(mean)),
        "init": _numtd(cell.get("init_ms")), "first": _numtd(cell.get("first_inference_ms")),
        "rss": _numtd(cell.get("peak_rss_mb")), "size": Td(_size(cell.get("model_bytes")),
                                                           str(cell.get("model_bytes") or "")),
        "cosine": Td("—" if cos is None else f"{cos:.4f}" + ("*" if source == "conversion" else ""),
                     _key(cos)),
        "snr": _numtd(snr, " dB"),
        "top1": Td("—" if top1 is None else f"{top1:.1%}", _key(top1)),
        "delegate": Td(deleg_text),
    }
    for col, messages in warns.items():
        tds[col] = tds[col]._replace(warn="\n".join(messages), mild=mild[col])
    if delta is not None:
        tds["delta"] = Td(delta.text, _key(delta.pct), sub=delta.detail or None)
    ok = cell.get("status") == "ok"
    verdict = next((c for c in rec.candidates if c.variant == cell["variant"]), None) if rec else None
    return {
        "cell": cell, "tds": tds, "box": box, "ok": ok, "flags": flags, "delta": delta, "verdict": verdict,
        "flag_titles": {f: _flag_message(f, cell) if f in FLAG_TEXT else f for f in flags},
        "error": _short(cell.get("error"), 300), "stderr": cell.get("stderr_tail"),
    }


def _device_views(export: Mapping[str, Any]) -> list[dict[str, Any]]:
    cells_by_device: dict[str, list[Mapping[str, Any]]] = {}
    for cell in export.get("results") or ():
        cells_by_device.setdefault(cell["device"], []).append(cell)
    devices = {d["name"]: d for d in export.get("devices") or ()}
    for name in cells_by_device:
        devices.setdefault(name, {"name": name})
    views = []
    for i, (name, dev) in enumerate(devices.items()):
        cells = sorted(cells_by_device.get(name, []), key=lambda c: c.get("measured_at") or "")
        before = next((c["thermal_before"] for c in cells if c.get("thermal_before")), None)
        after = next((c["thermal_after"] for c in reversed(cells) if c.get("thermal_after")), None)
        env = dev.get("env") or {}
        runtime = env.get("runtime") or next((c["runtime"] for c in cells if c.get("runtime")), None) or {}
        delegates = sorted({str(c["delegate"]["name"]) for c in cells if c.get("delegate")})
        temps = [t for c in cells for state in (c.get("thermal_before"), c.get("thermal_after"))
                 for t in ((state or {}).get("temperatures_c") or {}).values()]
        throttled = [f"{c['model']} {c['variant']}" for c in cells if "throttled" in _cell_flags(c)]
        views.append({
            "id": f"dev-{i}", "name": name, "dev": dev, "env": env,
            "runtime": " ".join(str(v) for v in (runtime.get("name"), runtime.get("version")) if v) or "—",
            "delegates": ", ".join(delegates) or "none (CPU)",
            "thermal": [("before", _thermal(before)), ("after", _thermal(after))],
            "peak_temp": f"{max(temps):.1f} °C" if temps else "—",
            "throttled": throttled,
        })
    return views


def _thermal(state: Mapping[str, Any] | None) -> dict[str, Any]:
    state = state or {}
    temps = state.get("temperatures_c") or {}
    throttled = state.get("throttled")
    return {
        "temp": f"{max(temps.values()):.1f} °C" if temps else "—",
        "zones": ", ".join(f"{k} {v:.1f} °C" for k, v in temps.items()),
        "throttled": _hex(throttled),
        "bad": isinstance(throttled, int) and bool(throttled & THROTTLE_NOW_MASK),
    }


def _tradeoffs(cells: list[Mapping[str, Any]]) -> dict[str, Any]:
    ok = [c for c in cells if c.get("status") == "ok" and (c.get("latency_ms") or {}).get("p50")]
    sized = [(c["variant"], c["latency_ms"]["p50"], c["model_bytes"] / 1e6) for c in ok if c.get("model_bytes")]
    accurate = [(c["variant"], c["latency_ms"]["p50"], v) for c in ok
                if (v := _acc_min(cell_accuracy(c)[0], "cosine")) is not None]
    return {
        "size": tradeoff_svg(sized, "size (MB)", maximize_y=False) if sized else None,
        "accuracy": tradeoff_svg(accurate, "min cosine vs fp32", maximize_y=True, y_fmt=_g4) if accurate else None,
        "missing": [f"{c['variant']} ({c.get('status')})" for c in cells if not any(c is o for o in ok)],
        "unmeasured": [c["variant"] for c in ok if _acc_min(cell_accuracy(c)[0], "cosine") is None],
    }


def _check_schema(export: Mapping[str, Any], where: str) -> None:
    version = export.get("schema_version") if isinstance(export, Mapping) else None
    if version not in EXPORT_SCHEMA_VERSIONS:
        raise EdgebenchError(f"export schema_version {version!r} is not supported (this edgebench reads "
                             f"{', '.join(map(str, EXPORT_SCHEMA_VERSIONS))}): upgrade edgebench", where=where)


def _lean_cell(cell: Mapping[str, Any], box: Mapping[str, float] | None, delta: Delta | None) -> dict[str, Any]:
    """The cell as embedded: without raw samples, with the box-plot quantiles and the baseline delta."""
    out = dict(cell)
    if cell.get("latency_ms"):
        out["latency_ms"] = {k: v for k, v in cell["latency_ms"].items() if k != "samples"}
    out["box_ms"] = box
    out["baseline"] = asdict(delta) if delta else None
    return out


# -- rendering ------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    env.filters["short"] = _short
    return env


def script_json(obj: Any) -> Markup:
    """JSON safe inside <script>: "<", ">" and "&" as \\u escapes, so no "</script>" or "<!--" can appear."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return Markup(text)


def _write_atomic(out: Path, text: str) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise EdgebenchError(f"cannot write the report: {exc.strerror}", where=str(out)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be shared
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def render_report(export: dict[str, Any], out: Path, *, baseline: dict[str, Any] | None = None,
                  accuracy_bar: dict[str, float] | None = None, budgets_result: GateResult | None = None) -> Path:
    """Write the run's report as ONE self-contained HTML file (atomically) and return its path."""
    _check_schema(export, "export")
    if baseline is not None:
        _check_schema(baseline, "baseline export")
    cells = list(export.get("results") or ())
    bar = _accuracy_bar(accuracy_bar)
    recs = recommend(export, bar, budgets_result)
    base_cells = {(c["device"], c["model"], c["variant"]): c for c in (baseline or {}).get("results") or ()}

    boxes = [box_quantiles((c.get("latency_ms") or {}).get("samples") or []) for c in cells]
    # One x-scale per device+model, so a row's box compares with its neighbours' at a glance.
    scale: dict[tuple[str, str], tuple[float, float]] = {}
    for cell, q in zip(cells, boxes):
        if q:
            group = (cell["device"], cell["model"])
            lo, hi = scale.get(group, (q["p5"], q["p95"]))
            scale[group] = (min(lo, q["p5"]), max(hi, q["p95"]))
    scale = {k: (lo - (hi - lo) * 0.1, hi + (hi - lo) * 0.1) for k, (lo, hi) in scale.items()}

    rows, lean = [], []
    by_device: dict[str, list[Mapping[str, Any]]] = {}
    for cell, q in zip(cells, boxes):
        key = (cell["device"], cell["model"], cell["variant"])
        delta = baseline_delta(cell, base_cells.get(key)) if baseline is not None else None
        box = box_svg(q, *scale[key[:2]]) if q else None
        rows.append(_row(cell, box, delta, recs.get(cell["device"], {}).get(cell["model"]), bar))
        lean.append(_lean_cell(cell, q, delta))
        by_device.setdefault(cell["device"], []).append(cell)

    devices = _device_views(export)
    for view in devices:
        dev_cells = by_device.get(view["name"], [])
        models = sorted({c["model"] for c in dev_cells})
        view["models"] = [{"model": m, "rec": recs[view["name"]][m],
                           "plots": _tradeoffs([c for c in dev_cells if c["model"] == m])} for m in models]

    variants: dict[str, list[str]] = {}
    for cell in cells:
        if cell["variant"] not in variants.setdefault(cell["model"], []):
            variants[cell["model"]].append(cell["variant"])
    row_at = {(r["cell"]["device"], r["cell"]["model"], r["cell"]["variant"]): r for r in rows}
    compat = [{"model": m, "variants": vs, "devices": [
        {"name": d["name"], "cells": [row_at.get((d["name"], m, v)) for v in vs]}
        for d in devices if d["name"] in by_device],
        "predicted": predicted_compatibility([c for c in cells if c["model"] == m], vs)} for m, vs in variants.items()]

    data = {
        "schema_version": REPORT_SCHEMA_VERSION, "export_schema_version": export["schema_version"],
        "run": export.get("run") or {}, "devices": export.get("devices") or [], "results": lean,
        "baseline_run": (baseline or {}).get("run"),
        "accuracy_bar": bar,
        "recommendations": {d: {m: asdict(r) for m, r in ms.items()} for d, ms in recs.items()},
    }
    counts = {"cells": len(rows), "ok": sum(r["ok"] for r in rows), "failed": sum(not r["ok"] for r in rows),
              "flagged": sum(bool(r["flags"]) for r in rows)}
    if baseline is not None:
        counts["changed"] = sum(bool(r["delta"] and r["delta"].significant) for r in rows)
    html = _env().get_template("report.html.j2").render(
        schema_version=REPORT_SCHEMA_VERSION, run=export.get("run") or {}, devices=devices, rows=rows,
        compat=compat, counts=counts, baseline=(baseline or {}).get("run") if baseline is not None else None,
        bar=bar, budgets=budgets_result is not None, data_json=script_json(data),
        min_samples=MIN_SAMPLES, noise_pct=NOISE_PCT, alpha=SIGNIFICANCE_P)
    return _write_atomic(Path(out), html)


def render_index(runs: list[dict[str, Any]], out: Path) -> Path:
    """reports/index.html: every run over time, with p50 trends per (device, model, variant)."""
    for i, export in enumerate(runs):
        _check_schema(export, f"run #{i + 1}")
    runs = sorted(runs, key=lambda e: ((e.get("run") or {}).get("started_at") or "", (e.get("run") or {}).get("id")
                                       or ""))
    out = Path(out)
    labels, rows = [], []
    trends: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for i, export in enumerate(runs):
        run = export.get("run") or {}
        cells = export.get("results") or []
        labels.append(str(run.get("label") or run.get("id") or f"run {i + 1}"))
        report = f"{run.get('id')}.html"
        rows.append({"run": run, "cells": len(cells), "ok": sum(c.get("status") == "ok" for c in cells),
                     "devices": len(export.get("devices") or []),
                     "href": report if (out.parent / report).exists() else None})
        for c in cells:
            p50 = (c.get("latency_ms") or {}).get("p50")
            if c.get("status") == "ok" and p50:
                trends.setdefault(c["model"], {}).setdefault(f"{c['device']} · {c['variant']}", []).append((i, p50))
    charts = [{"model": m, "svg": trend_svg(series, labels),
               "legend": [(name, PALETTE[n % len(PALETTE)]) for n, name in enumerate(series)]}
              for m, series in sorted(trends.items())]
    data = {"schema_version": REPORT_SCHEMA_VERSION,
            "runs": [{**r["run"], "cells": r["cells"], "ok": r["ok"]} for r in rows]}
    html = _env().get_template("index.html.j2").render(
        schema_version=REPORT_SCHEMA_VERSION, rows=list(reversed(rows)), charts=charts, data_json=script_json(data))
    return _write_atomic(out, html)
