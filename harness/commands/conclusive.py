"""`run --until-conclusive`: add repeats to the cells whose regression check cannot decide yet.

After the run, the gate's max_regression checks are evaluated; every inconclusive one says about how many
more repeats would decide it. Those cells (the candidate and its in-run baseline, side by side again) get
that many more fresh processes, in rounds. The loop stops, and says why, when every gated cell is decided,
when an undecided cell has ``--max-repeats`` processes a side (default MAX_REPEATS; it stays "inconclusive
after N repeats"), when a cell's extra repeats fail, or when ``--max-time`` (counted from the start of the
run) would be overrun. The added repeats join the stored cells (results.record.extend_cell), so the cells keep
every sample and say how many processes they come from.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from ..common.errors import EdgebenchError
from ..config.inventory import Device
from ..config.settings import MeasureSettings, RunPolicy
from ..fleet.jobs import ModelVariant
from ..fleet.runner import measure_all
from ..gate.budgets import Rule
from ..gate.checks import Regression
from ..gate.evaluate import evaluate
from ..results.record import Cell, DeviceRecord, Status, cell_key, extend_cell
from ..results.store import Store

MAX_ROUND_REPEATS = 8  # more per round risks overrunning the time budget on a guess of what a repeat costs
# Processes a side, the first round's included: a change that 30 paired repeats cannot place on one side of
# its limit sits too close to it to be worth the time, and a CI step without --max-time must still end.
MAX_REPEATS = 30

CellKey = tuple[str, str, str]


def check_can_decide(rules: Sequence[Rule], variants: Sequence[ModelVariant], max_repeats: int) -> None:
    if max_repeats < 1:
        raise EdgebenchError("--max-repeats must be 1 or more", where="--max-repeats")
    if not any(isinstance(c, Regression) for rule in rules for c in rule.checks):
        raise EdgebenchError("--until-conclusive needs budgets with max_regression", where="--until-conclusive")
    if not any(mv.baseline_for for mv in variants):
        raise EdgebenchError("--until-conclusive needs an in-run baseline: give --baseline-models (or the suite's "
                             "baseline_models)", where="--until-conclusive")


def undecided(db: Store, run_id: str, rules: Sequence[Rule]) -> dict[CellKey, int]:
    """Gated cells whose regression check is inconclusive -> about how many more repeats would decide it."""
    result = evaluate(db.export_run(run_id), rules, allow_missing=True)
    return {ev.cell: max(r.more_repeats or 0 for r in ev.results)
            for ev in result.evaluations
            if ev.cell is not None and any(r.more_repeats for r in ev.results)}


def _subset(devices: Sequence[Device], variants: Sequence[ModelVariant],
            keys: set[CellKey]) -> list[tuple[Device, list[ModelVariant]]]:
    plan = []
    for d in devices:
        chosen = [mv for mv in variants if (d.name, mv.baseline_for or mv.model, mv.variant) in keys]
        if chosen:
            plan.append((d, chosen))
    return plan


def until_conclusive(db: Store, run_id: str, rules: Sequence[Rule], devices: Sequence[Device],
                     variants: Sequence[ModelVariant], settings: MeasureSettings, policy: RunPolicy,
                     started: float, max_time_s: float | None, max_repeats: int = MAX_REPEATS) -> None:
    per_repeat_s = (time.monotonic() - started) / settings.repeats  # the first round's cost, shipping included
    given_up: set[CellKey] = set()
    while True:
        stored = {cell_key(c): c for c in db.cells(run_id)}
        wanted = {k: n for k, n in undecided(db, run_id, rules).items() if k not in given_up}
        have = {k: stored[k].get("repeats") or 1 for k in wanted}
        given_up |= _give_up([k for k in wanted if have[k] >= max_repeats], have, f"--max-repeats {max_repeats}")
        wanted = {k: n for k, n in wanted.items() if k not in given_up}
        if not wanted:
            return
        affordable = MAX_ROUND_REPEATS
        if max_time_s is not None and per_repeat_s > 0:
            affordable = int((max_time_s - (time.monotonic() - started)) // per_repeat_s)
        # no cell of the round may pass max_repeats (cells of one run share their count of repeats)
        repeats = min(max(wanted.values()), MAX_ROUND_REPEATS, affordable, max_repeats - max(have[k] for k in wanted))
        if repeats < 1:
            _give_up(list(wanted), have, "--max-time is spent")
            return
        print(f"until-conclusive: {len(wanted)} cell(s) undecided, {repeats} more repeat(s)", file=sys.stderr)

        def on_cell(cell: Cell) -> None:
            key = cell_key(cell)
            before = stored.get(key)
            if cell["status"] == Status.OK and before is not None and before["status"] == Status.OK:
                db.put_cell(run_id, extend_cell(before, cell))
            else:  # keep what was measured; a cell whose extra repeats fail is not retried
                given_up.add((key[0], cell.get("baseline_for") or key[1], key[2]))

        def on_device(record: DeviceRecord) -> None:
            pass  # the run's device records stay those of its first round

        round_start = time.monotonic()
        measure_all(_subset(devices, variants, set(wanted)), replace(settings, repeats=repeats), policy,
                    on_cell, on_device)
        per_repeat_s = (time.monotonic() - round_start) / repeats


def _give_up(keys: Sequence[CellKey], have: dict[CellKey, int], why: str) -> set[CellKey]:
    """Say which cells stay undecided, and after how many repeats; the cells given up."""
    for key in sorted(keys):
        print(f"until-conclusive: {'/'.join(key)} inconclusive after {have[key]} repeats ({why})", file=sys.stderr)
    return set(keys)
