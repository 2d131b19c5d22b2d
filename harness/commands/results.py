"""`edgebench report`, `export` and `gate`: a stored run rendered, exported, or judged."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from ..common.errors import EdgebenchError, ExitCode
from ..gate.budgets import load_budgets
from ..gate.evaluate import evaluate
from ..gate.writers import markdown_summary, text_summary, write_junit
from ..report.render import render_index, render_report, written_by_edgebench
from ..results.changepoints import cached_change_points
from ..results.export import pytest_benchmark_json, write_json
from ..results.history import TREND_RUNS
from ..results.noise import NoiseFloor, noise_floors
from ..results.store import Store, store_path
from .output import out

EXPORT_FORMATS = ("json", "pytest-benchmark")


def cmd_report(*, run: str | None = None, baseline: str | None = None, out_path: Path | None = None,
               store: str | Path | None = None, stream: TextIO | None = None) -> int:
    with Store(store_path(store), create=False) as db:
        run_id = db.resolve(run)
        export = db.export_run(run_id)
        base = db.export_run(db.resolve(baseline)) if baseline else None
        path = render_report(export, out_path or Path("reports") / f"{run_id}.html", baseline=base,
                             floors=floors_from_history(db, run_id))
        print(f"report: {path}", file=out(stream))
        index = path.parent / "index.html"
        if index.exists() and not written_by_edgebench(index):  # -o into a directory of other pages
            print(f"index not written: {index} exists and edgebench did not write it", file=sys.stderr)
        elif index != path:
            render_index(db.history(recent=TREND_RUNS), index,
                             shifts_of=partial(cached_change_points, cache=db))
    return ExitCode.OK


def cmd_export(*, run: str | None = None, fmt: str = "json", store: str | Path | None = None,
               stream: TextIO | None = None) -> int:
    if fmt not in EXPORT_FORMATS:
        raise EdgebenchError(f"unknown export format {fmt!r} ({', '.join(EXPORT_FORMATS)})", where="--format")
    with Store(store_path(store), create=False) as db:
        export = db.export_run(db.resolve(run))
    if fmt == "json":
        write_json(export, out(stream))
    else:
        data: Any = pytest_benchmark_json(export)
        write_json(data, out(stream))
    return ExitCode.OK


def cmd_gate(budgets: Path, *, run: str | None = None, baseline: str | None = None, junit: Path | None = None,
             markdown: Path | None = None, allow_missing: bool = False, store: str | Path | None = None,
             stream: TextIO | None = None) -> int:
    rules = load_budgets(budgets)
    with Store(store_path(store), create=False) as db:
        export = db.export_run(db.resolve(run))
        base = db.export_run(db.resolve(baseline)) if baseline else None
        floors = {d: f.sigma for d, f in floors_from_history(db, export["run"]["id"]).items()} if base else None
    result = evaluate(export, rules, base, allow_missing, floors)
    print(text_summary(result), file=out(stream))
    if junit:
        write_junit(result, junit)
    if markdown:  # appended: $GITHUB_STEP_SUMMARY is shared by every step of a job
        with open(markdown, "a", encoding="utf-8") as fh:
            fh.write(markdown_summary(result) + "\n")
    return int(result.exit_code)


FLOOR_RUNS = 60  # the newest runs a noise floor is learnt from: recent enough to describe the lab as it is


def floors_from_history(db: Store, run_id: str) -> dict[str, NoiseFloor]:
    """Each device's run-to-run noise floor from the newest stored runs but the one judged."""
    runs = [str(r["id"]) for r in db.runs() if r["id"] != run_id]
    return noise_floors(db.series_points(runs[-FLOOR_RUNS:]))


def remember_trend_shifts(db: Store) -> None:
    """Find the index's change points while ``run`` has the store open, so that ``report`` only reads them."""
    cached_change_points(db.history(recent=TREND_RUNS).trends(TREND_RUNS).values(), db)
