"""The report's sustained section: per cell a timeline (latency, temperature, CPU frequency on one time
axis, change points marked), burst vs sustained p90, energy, and the ranking flips between them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from ..results.record import Cell
from ..results.sustained import Sustained, TelemetryReading, ranking_flips
from .format import num
from .plots import _Plot


def _line(plot: _Plot, points: Sequence[tuple[float, float]], css: str, name: str, unit: str) -> None:
    if not points:
        return
    coords = " ".join(f"{plot.sx(t)},{plot.sy(v)}" for t, v in points)
    plot.marks.append(f'<g class="series {css}"><title>{escape(name)}</title><polyline points="{coords}"/></g>')
    # a tooltip per point would be thousands of nodes on a long run: the ends and the extremes say enough
    for t, v in (points[0], points[-1], max(points, key=lambda p: p[1])):
        plot.marks.append(f'<circle class="{css}" cx="{plot.sx(t)}" cy="{plot.sy(v)}" r="2.2">'
                          f'<title>{escape(name)} at {t:.0f} s: {num(v)} {unit}</title></circle>')


def _panel(points: list[tuple[float, float]], x_range: tuple[float, float], label: str, css: str, unit: str,
           marks_at: Sequence[float] = ()) -> Markup | None:
    if not points:
        return None
    plot = _Plot([x_range[0], x_range[1]], [v for _, v in points], "time (s)", label, y_zero=False, width=520)
    plot.H = 150
    for t in marks_at:
        plot.marks.append(f'<path class="cp" d="M{plot.sx(t)} {plot.T}V{plot.H - plot.B}"><title>change point at '
                          f'{t:.0f} s</title></path>')
    _line(plot, points, css, label, unit)
    return plot.svg(f"{label} over time")


def _hottest(r: TelemetryReading) -> float | None:
    temps = r.get("temperatures_c") or {}
    return max(temps.values()) if temps else None


def _mean_mhz(r: TelemetryReading) -> float | None:
    freqs = r.get("cpu_freq_khz") or []
    return sum(freqs) / len(freqs) / 1000 if freqs else None


def timeline(s: Sustained) -> list[Markup]:
    """Latency (window medians), the hottest thermal zone and the mean CPU frequency, on one time axis."""
    x_range = (0.0, max(s["duration_s"], 1.0))
    readings = s.get("telemetry") or []
    temp = [(r["t_ms"] / 1000, v) for r in readings if (v := _hottest(r)) is not None]
    freq = [(r["t_ms"] / 1000, v) for r in readings if (v := _mean_mhz(r)) is not None]
    panels = [_panel(list(zip(s["series_t_s"], s["series_p50_ms"])), x_range, "p50 per second (ms)", "lat", "ms",
                     [p["t_s"] for p in s["change_points"]]),
              _panel(temp, x_range, "hottest zone (°C)", "temp", "°C"),
              _panel(freq, x_range, "mean CPU frequency (MHz)", "freq", "MHz")]
    return [p for p in panels if p is not None]


ANDROID_THERMAL = ("none", "light", "moderate", "severe", "critical", "emergency", "shutdown")


def _status_text(s: Sustained) -> str | None:
    """Android's own verdict on the device's heat during the cell (PowerManager thermal status)."""
    worst = s.get("thermal_status_max")
    if worst is None:
        return None
    name = ANDROID_THERMAL[worst] if 0 <= worst < len(ANDROID_THERMAL) else str(worst)
    return f"Android thermal status reached {worst} ({name})"


def _slowdown_text(s: Sustained) -> str | None:
    if s["first_slowdown_s"] is None:
        return None
    point = next(p for p in s["change_points"] if p["t_s"] == s["first_slowdown_s"])
    text = f"slower ×{point['ratio']:.2f} from {s['first_slowdown_s']:.0f} s"
    around = s.get("at_slowdown") or {}
    before, after = around.get("before"), around.get("after")
    if before and after:
        t0, t1 = _hottest(before), _hottest(after)
        f0, f1 = _mean_mhz(before), _mean_mhz(after)
        if t0 is not None and t1 is not None:
            text += f"; hottest zone {t0:.1f} → {t1:.1f} °C"
        if f0 is not None and f1 is not None:
            text += f"; CPU {f0:.0f} → {f1:.0f} MHz"
        if before.get("throttled") != after.get("throttled"):
            text += f"; throttle flags {before.get('throttled')} → {after.get('throttled')}"
    return text


def sustained_views(cells: Sequence[Cell]) -> dict[str, Any] | None:
    """What the report shows of sustained cells; None when the run has none."""
    views = []
    for cell in cells:
        s = cell.get("sustained")
        if not s:
            continue
        views.append({"device": cell["device"], "model": cell["model"], "variant": cell["variant"],
                      "duration_s": s["duration_s"], "burst_p90_ms": s["burst_p90_ms"],
                      "sustained_p90_ms": s["sustained_p90_ms"], "slowdown": _slowdown_text(s),
                      "energy": s["energy_mj_per_inference"], "energy_method": s["energy_method"],
                      "android_thermal": _status_text(s),
                      "panels": timeline(s)})
    return {"cells": views, "flips": ranking_flips(cells)} if views else None
