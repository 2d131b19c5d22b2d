"""`edgebench run`: a suite (or --models) on the selected devices, each cell stored as it arrives."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from ..common.errors import EdgebenchError, ExitCode
from ..config.inventory import Device, Inventory
from ..config.settings import MeasureSettings, RunPolicy, cli_flag
from ..config.suite import ModelEntry, Suite, load_suite
from ..conversion.recipes import parse_variants
from ..fleet.jobs import ModelVariant, discover, from_converted, side_by_side
from ..fleet.runner import measure_all
from ..gate.budgets import load_budgets
from ..results.record import Cell, DeviceRecord, Status
from ..results.store import Store, store_path
from .conclusive import MAX_REPEATS, check_can_decide, until_conclusive
from .convert import convert_validated
from .output import default_inventory, out, summary_table
from .progress import progress_for
from .results import cmd_gate, remember_trend_shifts
from .run_input import checked_variants, resume_run

DEFAULT_SUITE = Path("suite.yaml")
CONVERTED_DIR = Path(".edgebench") / "converted"


def _variants_for(entry: ModelEntry, stream: TextIO) -> list[ModelVariant]:
    if entry.is_source:
        name = entry.converted_name
        target = CONVERTED_DIR / name
        print(f"converting {entry.path} -> {target}", file=stream)
        convert_validated(entry.path, target, variants=parse_variants(entry.variants), calibration=entry.calibration,
                          eval_data=entry.eval_data, custom_objects=entry.custom_objects, name=name)
        return from_converted(target, entry.variants)
    return discover(entry.path, entry.variants)


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


@dataclass
class _Plan:
    suite: Suite
    inventory: Inventory
    devices: list[Device]
    settings: MeasureSettings
    variants: list[ModelVariant]


def _plan(suite_path: Path | None, models: list[Path] | None, inventory: Path | None, devices: str | None,
          measure: Mapping[str, Any], stream: TextIO, baseline_models: list[Path] | None = None) -> _Plan:
    """What to measure where, with which settings: the suite's, overridden by the command line."""
    if suite_path is None and not models and DEFAULT_SUITE.exists():
        suite_path = DEFAULT_SUITE
    suite = load_suite(suite_path) if suite_path else Suite(path=None)
    entries = [ModelEntry(p) for p in models] if models else suite.models
    if not entries:
        raise EdgebenchError("nothing to run: give a suite file, --models, or put a suite.yaml here")
    base_entries = [ModelEntry(p) for p in baseline_models] if baseline_models else suite.baseline_models
    inv = default_inventory(inventory or suite.inventory)
    settings = MeasureSettings().merged(suite.settings, lambda key: suite.settings_where.get(key, "suite"))
    settings = settings.merged(measure, lambda key: cli_flag(key) or key)
    variants = _checked(entries, stream)
    if base_entries:
        variants = side_by_side(variants, _checked(base_entries, stream))
    return _Plan(suite, inv, inv.select(devices or suite.devices), settings, variants)


def _checked(entries: list[ModelEntry], stream: TextIO) -> list[ModelVariant]:
    return checked_variants([(CONVERTED_DIR if entry.is_source else entry.path, mv)
                             for entry in entries for mv in _variants_for(entry, stream)])


def cmd_run(suite_path: Path | None = None, *, models: list[Path] | None = None, inventory: Path | None = None,
            devices: str | None = None, label: str | None = None, store: Path | None = None,
            resume: str | None = None, measure: Mapping[str, Any] | None = None, policy: RunPolicy = RunPolicy(),
            quiet: bool = False, gate_budgets: Path | None = None, stream: TextIO | None = None,
            baseline_models: list[Path] | None = None, until_decided: bool = False,
            max_time_s: float | None = None, max_repeats: int = MAX_REPEATS) -> int:
    """Benchmark every variant on every selected device; returns the exit code (run id printed).

    ``measure`` holds measurement settings by name (MeasureSettings), as given on the command line;
    ``baseline_models`` are measured side by side with the models (``MODEL@baseline`` cells);
    ``until_decided`` adds repeats until every max_regression check is decided, a cell has ``max_repeats``
    repeats a side, or ``max_time_s`` is spent.
    """
    started = time.monotonic()
    stream = out(stream)
    plan = _plan(suite_path, models, inventory, devices, measure or {}, stream, baseline_models)
    budgets = gate_budgets or plan.suite.budgets
    rules = load_budgets(budgets) if until_decided and budgets else []
    if until_decided:
        check_can_decide(rules, plan.variants, max_repeats)
    db = Store(store_path(store))
    if resume:  # the run's stored settings; its failed and missing cells are measured again
        run_id, done, plan.settings = resume_run(db, resume, plan.suite, measure or {})
    else:
        run_id = db.create_run(label or plan.suite.label, {
            "settings": plan.settings.describe(), "inventory": str(plan.inventory.path) if plan.inventory.path else None,
            "suite": str(plan.suite.path) if plan.suite.path else None, "commit": _git_commit(),
            "host": {"hostname": platform.node(), "edgebench": __version__, "python": platform.python_version()},
        })
        done = set()
    todo = [(d, [mv for mv in plan.variants if (d.name, mv.model, mv.variant) not in done]) for d in plan.devices]
    skipped = len(plan.devices) * len(plan.variants) - sum(len(v) for _, v in todo)
    print(f"run {run_id}: {len(plan.devices)} device(s) x {len(plan.variants)} variant(s)"
          + (f", {skipped} cell(s) already measured" if skipped else ""), file=stream)
    plan_now = [(d, v) for d, v in todo if v]
    progress = progress_for({d.name: len(v) for d, v in plan_now}, sys.stderr, quiet)

    def on_cell(cell: Cell) -> None:
        db.put_cell(run_id, cell)
        progress.cell(cell)

    def on_device(record: DeviceRecord) -> None:
        db.put_device(run_id, record["name"], record)
        progress.device(record)

    try:
        measure_all(plan_now, plan.settings, policy, on_cell, on_device)
    except KeyboardInterrupt:
        progress.close()
        print(f"\ninterrupted: measured cells are stored; continue with --resume {run_id}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    progress.close()
    if until_decided:
        until_conclusive(db, run_id, rules, plan.devices, plan.variants, plan.settings, policy, started, max_time_s,
                         max_repeats)
    db.finish_run(run_id)
    remember_trend_shifts(db)
    return _finish(db, run_id, budgets, store, stream)


def _finish(db: Store, run_id: str, budgets: Path | None, store: Path | None, stream: TextIO) -> int:
    """The summary, then the gate when budgets are given; the run's exit code."""
    export = db.export_run(run_id)
    print(summary_table(export["results"]), file=stream)
    shipped = sum(d.get("bytes_shipped") or 0 for d in export["devices"])
    print(f"shipped {shipped} bytes to {len(export['devices'])} device(s)", file=stream)
    print(f"run id: {run_id}", file=stream)
    code = ExitCode.OK if all(c["status"] == Status.OK for c in export["results"]) else ExitCode.CELL_FAILURES
    if budgets is not None and cmd_gate(budgets, run=run_id, store=store, stream=stream) == ExitCode.BUDGET_BROKEN:
        return ExitCode.BUDGET_BROKEN
    return code
