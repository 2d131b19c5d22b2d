"""DIR/doctor.html: the quantization doctor's findings as one self-contained page.

It takes doctor.json as it is written (harness.commands.doctor) and lays it out with the report's Jinja
environment (autoescape on: layer and tensor names come from users' models): the ranked layers as a bar
chart, per device the accuracy-vs-latency front of the candidates, and the candidates' table.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from .format import num
from .plots import coord, tradeoff_svg
from .render import _env, script_json

MAX_BARS = 20


def layer_bars(layers: list[dict[str, Any]], metric: str, higher_is_worse: bool) -> Markup:
    """Horizontal bars, worst layer on top; the bar's length is how bad the layer is."""
    rows = [(e["name"], e["op"], e["metrics"].get(metric)) for e in layers[:MAX_BARS]]
    values = [v for _, _, v in rows if v is not None]
    if not values:
        return Markup("")
    lo, hi = min(values + [0.0]), max(values + [0.0])
    span = (hi - lo) or 1.0
    width, label_w, bar_w, h = 560, 220, 280, 18
    parts = [f'<svg class="plot bars" width="{width}" height="{h * len(rows) + 6}" role="img">'
             f'<title>layers ranked by {escape(metric)}</title>']
    for i, (name, op, value) in enumerate(rows):
        y = 3 + i * h
        badness = 0.0 if value is None else ((value - lo) if higher_is_worse else (hi - value)) / span
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" class="ty">{escape(name[:34])}</text>'
                     f'<rect x="{label_w}" y="{y + 2}" width="{coord(max(badness * bar_w, 1.0))}" height="{h - 5}" '
                     f'class="{"bar worst" if i == 0 else "bar"}"><title>{escape(name)} ({escape(op)}): '
                     f'{escape(metric)} {num(value)}</title></rect>'
                     f'<text x="{coord(label_w + max(badness * bar_w, 1.0) + 4)}" y="{y + 12}">{num(value)}</text>')
    return Markup("".join(parts) + "</svg>")


def front_plots(doc: dict[str, Any]) -> dict[str, Markup]:
    """Per device: candidates by p50 and accuracy (task top-1 when labelled, else cosine to float)."""
    plots = {}
    for device in doc["recommendation"]:
        points = []
        for c in doc["candidates"]:
            latency = (c["latency"].get(device) or {}).get("p50_ms")
            accuracy = c["top1"] if c["top1"] is not None else c["accuracy"]["cosine"]
            if latency is not None and accuracy is not None:
                points.append((c["name"], float(latency), float(accuracy)))
        if points:
            label = "top-1 (labels)" if doc.get("labels") else "cosine to float"
            plots[device] = tradeoff_svg(points, label, maximize_y=True)
    return plots


def render_doctor(doc: dict[str, Any]) -> str:
    metric = doc["ranked_by"]["metric"]
    return _env().get_template("doctor.html.j2").render(
        doc=doc, bars=layer_bars(doc["layers"], metric, doc["ranked_by"]["higher_is_worse"]),
        fronts=front_plots(doc), data_json=script_json(doc), metric=metric)
