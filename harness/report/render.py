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
from collections.abc import Callable, Mapping
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ..common.errors import EdgebenchError
from ..common.files import atomic_write
from ..gate.evaluate import GateResult
from ..results.changepoints import Shift, change_points
from ..results.comparison import MIN_CHANGE_PCT
from ..results.history import TREND_RUNS, History, RunCounts
from ..results.noise import NoiseFloor
from ..results.record import Cell, Export, Status, cell_key, samples
from ..results.stats import MIN_SAMPLES
from .complete import complete_export, complete_run
from .format import num, short
from .plots import PALETTE, box_quantiles, box_svg, trend_svg
from .recommend import recommend, resolve_accuracy_bar
from .sustained_view import sustained_views
from .view import Delta, baseline_delta, device_views, doctor_hint, lean_cell, predicted_compatibility, row, tradeoffs

REPORT_SCHEMA_VERSION = 1  # of the HTML report (meta tag + embedded JSON), not of the export
EXPORT_SCHEMA_VERSIONS = (1,)
TEMPLATES = Path(__file__).parent / "templates"


def _check_schema(export: Any, where: str) -> None:
    version = export.get("schema_version") if isinstance(export, dict) else None
    if version not in EXPORT_SCHEMA_VERSIONS:
        raise EdgebenchError(f"export schema_version {version!r} is not supported (this edgebench reads "
                             f"{', '.join(map(str, EXPORT_SCHEMA_VERSIONS))}): upgrade edgebench", where=where)


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = num
    env.filters["short"] = short
    return env


def script_json(obj: Any) -> Markup:
    """JSON safe inside <script>: "<", ">" and "&" as \\u escapes, so no "</script>" or "<!--" can appear."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return Markup(text)


def _box_scales(cells: list[Cell], boxes: list[dict[str, float] | None]) -> dict[tuple[str, str], tuple[float, float]]:
    """One x-scale per device+model, so a row's box compares with its neighbours' at a glance."""
    scale: dict[tuple[str, str], tuple[float, float]] = {}
    for cell, q in zip(cells, boxes):
        if q:
            group = (cell["device"], cell["model"])
            lo, hi = scale.get(group, (q["p5"], q["p95"]))
            scale[group] = (min(lo, q["p5"]), max(hi, q["p95"]))
    return {k: (lo - (hi - lo) * 0.1, hi + (hi - lo) * 0.1) for k, (lo, hi) in scale.items()}


def _compatibility(cells: list[Cell], rows: list[dict[str, Any]], devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: measured status per device and variant, and the status predicted per runtime."""
    variants: dict[str, list[str]] = {}
    for cell in cells:
        if cell["variant"] not in variants.setdefault(cell["model"], []):
            variants[cell["model"]].append(cell["variant"])
    row_at = {cell_key(r["cell"]): r for r in rows}
    measured_on = {c["device"] for c in cells}
    return [{"model": m, "variants": vs, "devices": [
        {"name": d["name"], "cells": [row_at.get((d["name"], m, v)) for v in vs]}
        for d in devices if d["name"] in measured_on],
        "predicted": predicted_compatibility([c for c in cells if c["model"] == m], vs)} for m, vs in variants.items()]


def _deltas(cells: list[Cell], baseline: Export | None, floors: Mapping[str, NoiseFloor] | None) -> list[Delta | None]:
    """Each candidate against its in-run baseline when the run has them (paired), else against the stored
    baseline run's cell (with the device's noise floor); None for baseline cells and without a baseline."""
    in_run = {(c["device"], c["baseline_for"], c["variant"]): c for c in cells if c.get("baseline_for")}
    base_cells = {cell_key(c): c for c in (baseline["results"] if baseline else [])}
    sigmas = {d: f.sigma for d, f in (floors or {}).items()}
    out: list[Delta | None] = []
    for cell in cells:
        if cell.get("baseline_for") or not (in_run or baseline is not None):
            out.append(None)
        elif in_run:
            out.append(baseline_delta(cell, in_run.get(cell_key(cell)), paired=True))
        else:
            out.append(baseline_delta(cell, base_cells.get(cell_key(cell)), floor_sigma=sigmas.get(cell["device"])))
    return out


def render_report(export: Export, out: Path, *, baseline: Export | None = None,
                  accuracy_bar: dict[str, float] | None = None, budgets_result: GateResult | None = None,
                  floors: Mapping[str, NoiseFloor] | None = None) -> Path:
    """Write the run's report as ONE self-contained HTML file (atomically) and return its path.

    Each candidate is compared with its in-run baseline (``MODEL@baseline`` cells, measured side by side)
    when the run has one, else with ``baseline``'s cell, where the device's noise floor applies."""
    _check_schema(export, "export")
    export = complete_export(export)
    if baseline is not None:
        _check_schema(baseline, "baseline export")
        baseline = complete_export(baseline)
    cells = list(export.get("results") or ())
    bar = resolve_accuracy_bar(accuracy_bar)
    recs = recommend(export, bar, budgets_result)
    boxes = [box_quantiles(samples(c)) for c in cells]
    scale = _box_scales(cells, boxes)
    deltas = _deltas(cells, baseline, floors)

    rows, lean = [], []
    for cell, q, delta in zip(cells, boxes, deltas):
        key = cell_key(cell)
        box = box_svg(q, *scale[key[:2]]) if q else None
        rows.append(row(cell, box, delta, recs.get(cell["device"], {}).get(cell["model"]), bar))
        lean.append(lean_cell(cell, q, delta))

    devices = device_views(export, floors)
    for view in devices:
        dev_cells = [c for c in cells if c["device"] == view["name"]]
        view["models"] = [{"model": m, "rec": recs[view["name"]][m],
                           "plots": tradeoffs([c for c in dev_cells if c["model"] == m]),
                           "doctor": doctor_hint([c for c in dev_cells if c["model"] == m], bar, Path(out).parent)}
                          for m in sorted({c["model"] for c in dev_cells})]

    data = {
        "schema_version": REPORT_SCHEMA_VERSION, "export_schema_version": export["schema_version"],
        "run": export.get("run") or {}, "devices": export.get("devices") or [], "results": lean,
        "baseline_run": baseline["run"] if baseline else None,
        "accuracy_bar": bar,
        "recommendations": {d: {m: asdict(r) for m, r in ms.items()} for d, ms in recs.items()},
    }
    counts = {"cells": len(rows), "ok": sum(r["ok"] for r in rows), "failed": sum(not r["ok"] for r in rows),
              "flagged": sum(bool(r["flags"]) for r in rows)}
    side_by_side = any(c.get("baseline_for") for c in cells)
    compared = baseline is not None or side_by_side
    if compared:
        counts["changed"] = sum(bool(r["delta"] and r["delta"].significant) for r in rows)
    html = _env().get_template("report.html.j2").render(
        schema_version=REPORT_SCHEMA_VERSION, run=export.get("run") or {}, devices=devices, rows=rows,
        compat=_compatibility(cells, rows, devices), counts=counts, baseline=baseline["run"] if baseline else None,
        compared=compared, side_by_side=side_by_side,
        bar=bar, budgets=budgets_result is not None, data_json=script_json(data), sustained=sustained_views(cells),
        min_samples=MIN_SAMPLES, noise_pct=MIN_CHANGE_PCT)
    return atomic_write(Path(out), html, mode=0o644)  # a report is meant to be shared


MARKER = b'<meta name="edgebench-schema-version"'


def _each_searched(series: list[list[float]]) -> list[list[Shift]]:
    return [change_points(values) for values in series]


def written_by_edgebench(path: Path) -> bool:
    """Whether the HTML file at ``path`` is one edgebench wrote (its head carries the schema meta tag)."""
    try:
        with open(path, "rb") as f:
            return MARKER in f.read(4096)
    except OSError:
        return False


def render_index(history: History, out: Path,
                 shifts_of: Callable[[list[list[float]]], list[list[Shift]]] | None = None) -> Path:
    """reports/index.html: every run over time, with p50 trends per (device, model, variant) over the newest
    TREND_RUNS runs. Reads per-run counts and per-cell summaries, never a cell's samples: a store of 200k cells
    renders in about a second. ``shifts_of`` finds the change points of many series at once (the store's
    cache: cached_change_points); by default each is searched here."""
    trends = history.trends(TREND_RUNS)
    runs = [complete_run(r) for r in trends.runs]
    out = Path(out)
    rows = []
    for run in runs:
        counts = history.counts.get(run.get("id") or "") or RunCounts(0, 0, 0)
        report = f"{run.get('id')}.html"
        rows.append({"run": run, "cells": counts.cells, "ok": counts.ok, "devices": counts.devices,
                     "href": report if (out.parent / report).exists() else None})
    labels = [str(run.get("label") or run.get("id") or f"run {i + 1}") for i, run in enumerate(trends.shown)]
    found = iter((shifts_of or _each_searched)(trends.values()))
    charts = []
    for m, series in trends.series.items():
        shifts = {name: [(pts[s.index][0], s.ratio) for s in next(found)] for name, pts in series.items()}
        charts.append({"model": m, "svg": trend_svg(series, labels, shifts),
                       "legend": [(name, PALETTE[n % len(PALETTE)]) for n, name in enumerate(series)],
                       "shifts": [(name, labels[i], ratio) for name, found_here in shifts.items()
                                  for i, ratio in found_here]})
    data = {"schema_version": REPORT_SCHEMA_VERSION,
            "runs": [{**run, "cells": r["cells"], "ok": r["ok"]} for r, run in zip(rows, runs)]}
    html = _env().get_template("index.html.j2").render(
        schema_version=REPORT_SCHEMA_VERSION, rows=list(reversed(rows)), charts=charts, data_json=script_json(data),
        trend_runs=len(trends.shown))
    return atomic_write(out, html, mode=0o644)
