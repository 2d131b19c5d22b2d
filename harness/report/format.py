"""How the report writes numbers: about three significant digits, sizes, percentages, p-values."""

from __future__ import annotations

import math
from typing import Any


def num(v: float | None, unit: str = "") -> str:
    """About three significant digits: enough to compare, few enough to read."""
    if v is None:
        return "—"
    a = abs(v)
    # a 2 us model must not read "0.00 ms": keep three significant digits below 1
    digits = min(6, 2 - math.floor(math.log10(a))) if 0 < a < 1 else 2 if a < 10 else 1 if a < 100 else 0
    return f"{v:.{digits}f}{unit}"


def size(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def g4(v: float) -> str:
    return f"{v:.4g}"


def pct(v: float) -> str:
    return f"{v:+.1f}%"


def hexval(v: Any) -> str:
    return f"0x{v:x}" if isinstance(v, int) else "—"


def short(text: str | None, limit: int = 200) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sort_key(v: float | None) -> str:
    return "" if v is None else f"{v:.7g}"
