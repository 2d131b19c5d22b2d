"""The report's SVG: box plots of raw samples, trade-off scatters with their Pareto front, trend lines."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
from markupsafe import Markup, escape

from .format import num

PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4d7c0f", "#9a3412",
           "#475569")


def coord(v: float) -> str:
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
        return coord(2 + (min(max(v, lo), hi) - lo) / span * (width - 4))

    m = height // 2
    title = (f"p5 {num(q['p5'])} · p25 {num(q['p25'])} · median {num(q['p50'])} · p75 {num(q['p75'])} · "
             f"p95 {num(q['p95'])} ms (min {num(q['min'])}, max {num(q['max'])})")
    return Markup(
        f'<svg class="box" width="{width}" height="{height}" role="img"><title>{title}</title>'
        f'<path d="M{x(q["p5"])} {m}H{x(q["p25"])}M{x(q["p75"])} {m}H{x(q["p95"])}'
        f'M{x(q["p5"])} 4V{height - 4}M{x(q["p95"])} 4V{height - 4}"/>'
        f'<rect x="{x(q["p25"])}" y="3" width="{coord(max(float(x(q["p75"])) - float(x(q["p25"])), 1))}" '
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
        return coord(self.L + (v - self.x0) / ((self.x1 - self.x0) or 1) * (self.W - self.L - self.R))

    def sy(self, v: float) -> str:
        return coord(self.H - self.B - (v - self.y0) / ((self.y1 - self.y0) or 1) * (self.H - self.T - self.B))

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
        parts.append(f'<text x="{coord((l + r) / 2)}" y="{self.H - 4}" class="lx">{escape(self.x_label)}</text>'
                     f'<text transform="translate(11 {coord((self.T + b) / 2)}) rotate(-90)" class="lx">'
                     f'{escape(self.y_label)}</text>')
        return Markup("".join(parts + self.marks) + "</svg>")


def _padded(lo: float, hi: float, *, zero: bool) -> tuple[float, float]:
    """The axis range: from 0 when asked (and all values >= 0), else a margin below; always a margin above."""
    if zero and lo >= 0:
        return 0.0, hi + (hi * 0.08 or 1.0)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    return lo - pad, hi + pad


def tradeoff_svg(points: Sequence[tuple[str, float, float]], y_label: str, *, maximize_y: bool,
                 y_fmt: Callable[[float], str] = num) -> Markup:
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
                          f'<text x="{coord(float(plot.sx(x)) + 6)}" y="{coord(float(plot.sy(y)) - 5)}">'
                          f'{escape(label[:18])}</text><title>{escape(label)}: p50 {num(x)} ms, '
                          f'{escape(y_label)} {y_fmt(y)}'
                          f'{" (Pareto front)" if i in front else ""}</title></g>')
    return plot.svg(f"trade-off: p50 vs {y_label}")


def trend_svg(series: Mapping[str, Sequence[tuple[int, float]]], run_labels: Sequence[str],
              shifts: Mapping[str, Sequence[tuple[int, float]]] | None = None) -> Markup:
    """One line per series over the runs (x = run index), p50 relative to the series' first run on y;
    ``shifts`` (per series: run index where it shifted, ratio) are marked with a ring.

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
                                    f'{escape(run_labels[i])}: {num(v)} ms ({r:.2f}×)</title></circle>'
                                    for (i, v), (_, r) in zip(pts, rel[name]))
                          + "".join(f'<circle class="shift" cx="{plot.sx(i)}" cy="{plot.sy(dict(rel[name])[i])}" '
                                    f'r="6"><title>{escape(name)}: shifted ×{ratio:.2f} at '
                                    f'{escape(run_labels[i])}</title></circle>'
                                    for i, ratio in (shifts or {}).get(name, ()))
                          + "</g>")
    return plot.svg("p50 over runs, relative to each series' first run")
