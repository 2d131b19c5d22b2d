"""What the commands print on a terminal: plain aligned tables, numbers, and where output goes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from ..config.inventory import Inventory, load_inventory
from ..results.record import Cell, Status

DEFAULT_INVENTORY = Path("inventory.yaml")


def out(stream: TextIO | None) -> TextIO:
    return stream or sys.stdout


def default_inventory(path: Path | None) -> Inventory:
    """An explicit inventory must exist; ./inventory.yaml is used when present; else just `local`."""
    if path is not None:
        return load_inventory(path)
    return load_inventory(DEFAULT_INVENTORY if DEFAULT_INVENTORY.exists() else None)


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def summary_table(cells: list[Cell]) -> str:
    rows = []
    for c in cells:
        lat: Any = c.get("latency_ms") or {}
        note = c["error"] if c["status"] != Status.OK else ", ".join(c.get("flags") or [])
        size = c.get("model_bytes")
        rows.append([c["device"], c["model"], c["variant"], str(c["status"]), fmt(lat.get("p50"), 3),
                     fmt(lat.get("p90"), 3), fmt(c.get("init_ms")), fmt(c.get("peak_rss_mb"), 1),
                     fmt(round(size / 1024) if size else None), (note or "")[:110]])
    return table(rows, ["device", "model", "variant", "status", "p50 ms", "p90 ms", "init ms", "rss MB", "KiB", "notes"])
