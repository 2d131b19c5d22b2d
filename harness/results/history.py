"""History at team scale: every stored run, and one small summary per cell instead of its raw samples.

A year of nightly runs on 50 devices x 10 variants is ~180k cells; loading them with their samples took
~100 s and ~20 GB. The store keeps each cell's median in a column of its own (``cells.p50_ms``, covered by an
index), so the history reads without touching any cell's JSON, and counts cells per run in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from .record import Export, RunHeader, Status, p50

# The index's trend charts show the newest TREND_RUNS runs: 50 devices x 10 variants over a year of nightlies
# would be 180k points (seconds to draw, tens of MB of SVG); the table of runs lists every run.
TREND_RUNS = 30


class CellSummary(NamedTuple):
    run_id: str
    label: str | None
    started_at: str | None
    device: str
    model: str
    variant: str
    status: str
    p50_ms: float | None


class RunCounts(NamedTuple):
    devices: int
    cells: int
    ok: int


@dataclass
class History:
    runs: list[RunHeader]  # every run, oldest first
    counts: dict[str, RunCounts]  # per run id
    cells: Iterable[CellSummary]  # of every run, or of the newest ones asked for (Store.history): iterate once

    def trends(self, window: int = TREND_RUNS) -> Trends:
        """The runs in start order (ties keep the store's order) and the p50 series of the newest ``window``."""
        runs = sorted(self.runs, key=lambda r: r.get("started_at") or "")
        shown = runs[max(0, len(runs) - window):]
        position = {run.get("id"): i for i, run in enumerate(shown)}
        series: dict[str, dict[str, list[tuple[int, float]]]] = {}
        for c in self.cells:
            i = position.get(c.run_id)
            if i is not None and c.status == Status.OK and c.p50_ms:
                series.setdefault(c.model, {}).setdefault(f"{c.device} · {c.variant}", []).append((i, c.p50_ms))
        for named in series.values():
            for points in named.values():
                points.sort()
        return Trends(runs, shown, dict(sorted(series.items())))

    @classmethod
    def of_exports(cls, exports: Iterable[Export]) -> History:
        """The history of exports held in memory (a tool's or a test's own runs)."""
        exports = list(exports)
        return cls(
            runs=[e["run"] for e in exports],
            counts={e["run"]["id"]: RunCounts(len(e.get("devices") or ()), len(e["results"]),
                                              sum(c["status"] == Status.OK for c in e["results"])) for e in exports},
            cells=[CellSummary(e["run"]["id"], e["run"].get("label"), e["run"].get("started_at"), c["device"],
                               c["model"], c["variant"], str(c["status"]), p50(c))
                   for e in exports for c in e["results"]],
        )


@dataclass
class Trends:
    runs: list[RunHeader]  # every run, by start time
    shown: list[RunHeader]  # the newest of them, which the trends cover
    series: dict[str, dict[str, list[tuple[int, float]]]]  # model -> "device · variant" -> [(index in shown, p50)]

    def values(self) -> list[list[float]]:
        """Every series' p50s, model by model: what the change points are looked for in."""
        return [[v for _, v in points] for named in self.series.values() for points in named.values()]
