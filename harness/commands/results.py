"""`edgebench report`, `export` and `gate`: a stored run rendered, exported, or judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from ..common.errors import EdgebenchError, ExitCode
from ..gate.budgets import load_budgets
from ..gate.evaluate import evaluate
from ..gate.writers import markdown_summary, text_summary, write_junit
from ..report.render import render_index, render_report
from ..results.export import pytest_benchmark_json, write_json
from ..results.noise import NoiseFloor, noise_floors
from ..results.store import Store, store_path
from .output import out

EXPORT_FORMATS = ("json", "pytest-benchmark")


def cmd_report(*, run: str | None = None, baseline: str | None = None, out_path: Path | None = None,
               store: Path | None = None, stream: TextIO | None = None) -> int:
    db = Store(store_path(store))
    run_id = db.resolve(run)
    export = db.export_run(run_id)
    base = db.export_run(db.resolve(baseline)) if baseline else None
    path = render_report(export, out_path or Path("reports") / f"{run_id}.html", baseline=base,
                         floors=floors_from_history(db, run_id))
    render_index([db.export_run(r["id"]) for r in db.runs()], path.parent / "index.html")
    print(f"report: {path}", file=out(stream))
    return ExitCode.OK


def cmd_export(*, run: str | None = None, fmt: str = "json", store: Path | None = None,
               stream: TextIO | None = None) -> int:
    if fmt not in EXPORT_FORMATS:
        raise EdgebenchError(f"unknown export format {fmt!r} ({', '.join(EXPORT_FORMATS)})", where="--format")
    db = Store(store_path(store))
    export = db.export_run(db.resolve(run))
    if fmt == "json":
        write_json(export, out(stream))
    else:
        data: Any = pytest_benchmark_json(export)
        write_json(data, out(stream))
    return ExitCode.OK


def cmd_gate(budgets: Path, *, run: str | None = None, baseline: str | None = None, junit: Path | None = None,
             markdown: Path | None = None, allow_missing: bool = False, store: Path | None = None,
             stream: TextIO | None = None) -> int:
    rules = load_budgets(budgets)
    db = Store(store_path(store))
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


def floors_from_history(db: Store, run_id: str) -> dict[str, NoiseFloor]:
    """Each device's run-to-run noise floor from every stored run but the one judged."""
    return noise_floors(db.cells(r["id"]) for r in db.runs() if r["id"] != run_id)
