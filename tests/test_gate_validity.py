"""The regression gate end to end on the `local` device: A/A side by side must not FAIL, a truly slower
candidate must, and --until-conclusive adds repeats until the check is decided or the time is spent."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from tests.support.cli import export_run as _export, run_cli
from tests.support.scaled_models import scaled_models

FAST = ("--devices", "local", "--runs", "30", "--min-seconds", "0", "--warmup", "2", "-q")


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    return scaled_models(tmp_path_factory.mktemp("nets"), [24, 96])


def _budgets(tmp_path: Path) -> Path:
    path = tmp_path / "budgets.yaml"
    path.write_text("budgets:\n  - max_regression: 5%\n")
    return path



def test_aa_side_by_side_does_not_fail_and_is_shown_paired(nets: dict[int, Path], tmp_path: Path) -> None:
    twin = tmp_path / "release" / "net24.tflite"
    twin.parent.mkdir()
    shutil.copy(nets[24], twin)
    store = tmp_path / "s.sqlite"
    result = run_cli("run", "--models", nets[24], "--baseline-models", twin, "--repeats", "3",
                     "--budgets", _budgets(tmp_path), "--store", store, *FAST)
    assert result.code == 0, result.out + result.err  # identical files: PASS or WARN, never a broken budget
    assert "gate PASS" in result.out or "gate WARN" in result.out
    cells = {c["model"]: c for c in _export(store)["results"]}
    assert set(cells) == {"net24", "net24@baseline"}
    base = cells["net24@baseline"]
    assert base["baseline_for"] == "net24" and "baseline_for" not in cells["net24"]
    for cell in cells.values():
        assert cell["repeats"] == 3 and len(cell["repeat_sizes"]) == 3
        assert sum(cell["repeat_sizes"]) == len(cell["latency_ms"]["samples"])
    out = tmp_path / "r.html"
    assert run_cli("report", "--store", store, "-o", out).code == 0
    html = out.read_text()
    assert "compared with the in-run baseline" in html and "3 vs 3 repeats, side by side" in html


def test_a_truly_slower_candidate_fails_side_by_side(nets: dict[int, Path], tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    # the same network at 4x the input side: ~16x the work
    result = run_cli("run", "--models", nets[96], "--baseline-models", nets[24], "--repeats", "3",
                     "--budgets", _budgets(tmp_path), "--store", store, *FAST)
    assert result.code == 1, result.out + result.err
    assert "whole 95% CI is above the limit" in result.out
    # one model on each side: the baseline is named after the candidate it is compared with
    assert {c["model"] for c in _export(store)["results"]} == {"net96", "net96@baseline"}


def test_until_conclusive_adds_repeats_within_the_time(nets: dict[int, Path], tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    started = time.monotonic()
    # one repeat per side can never decide: the loop must add repeats
    result = run_cli("run", "--models", nets[96], "--baseline-models", nets[24], "--repeats", "1",
                     "--until-conclusive", "--max-time", "90s", "--budgets", _budgets(tmp_path),
                     "--store", store, *FAST)
    wall = time.monotonic() - started
    assert result.code == 1, result.out + result.err  # decided: the candidate is ~16x slower
    cells = {c["model"]: c for c in _export(store)["results"]}
    assert cells["net96"]["repeats"] == cells["net96@baseline"]["repeats"] >= 3
    assert len(cells["net96"]["repeat_sizes"]) == cells["net96"]["repeats"]
    assert wall < 150


def test_until_conclusive_without_max_time_stops_at_max_repeats_and_says_so(nets: dict[int, Path],
                                                                             tmp_path: Path) -> None:
    from harness.results.comparison import Decision, compare

    twin = tmp_path / "release" / "net24.tflite"
    twin.parent.mkdir()
    shutil.copy(nets[24], twin)
    (tmp_path / "zero.yaml").write_text("budgets:\n  - max_regression: 0%\n")
    store = tmp_path / "s.sqlite"
    # identical files against a 0% limit: the true ratio sits on the limit, where more repeats rarely decide
    result = run_cli("run", "--models", nets[24], "--baseline-models", twin, "--repeats", "1", "--until-conclusive",
                     "--max-repeats", "4", "--budgets", tmp_path / "zero.yaml", "--store", store, *FAST)
    assert result.code in (0, 1), result.out + result.err
    cells = {c["model"]: c for c in _export(store)["results"]}
    repeats = cells["net24"]["repeats"]
    assert 2 <= repeats <= 4 and cells["net24@baseline"]["repeats"] == repeats  # one repeat never decides
    change = compare(cells["net24"], cells["net24@baseline"], paired=True)
    assert change is not None
    decision = change.decide(0.0)
    assert result.code == (1 if decision is Decision.EXCEEDS else 0), result.out + result.err
    if decision is Decision.INCONCLUSIVE:  # the usual end: the loop stopped at the bound, and says so
        assert repeats == 4
        assert "until-conclusive: local/net24/tflite inconclusive after 4 repeats (--max-repeats 4)" in result.err
        assert "gate WARN" in result.out and "(inconclusive after 4 repeats: the 95% CI [" in result.out
    else:  # decided by chance before the bound: the loop stopped there
        assert "inconclusive after" not in result.err + result.out


def test_until_conclusive_needs_what_it_decides_with(nets: dict[int, Path], tmp_path: Path) -> None:
    no_baseline = run_cli("run", "--models", nets[24], "--until-conclusive", "--budgets", _budgets(tmp_path),
                          "--store", tmp_path / "s.sqlite", *FAST)
    assert no_baseline.code == 2 and "needs an in-run baseline" in no_baseline.err
    bad_time = run_cli("run", "--models", nets[24], "--baseline-models", nets[24], "--until-conclusive",
                       "--max-time", "soon", "--budgets", _budgets(tmp_path), "--store", tmp_path / "s.sqlite", *FAST)
    assert bad_time.code == 2 and "--max-time must be a duration" in bad_time.err
    no_repeats = run_cli("run", "--models", nets[24], "--baseline-models", nets[24], "--until-conclusive",
                         "--max-repeats", "0", "--budgets", _budgets(tmp_path), "--store", tmp_path / "s.sqlite", *FAST)
    assert no_repeats.code == 2 and "--max-repeats must be 1 or more" in no_repeats.err


def test_noise_floor_learnt_from_history_is_shown_and_guards_the_gate(tmp_path: Path) -> None:
    import numpy as np

    from harness.results.store import Store
    from tests.support.synthetic import repeated_samples, synthetic_cell, synthetic_device

    rng = np.random.default_rng(0)
    store = tmp_path / "s.sqlite"
    db = Store(store)
    for i, level in enumerate([0.0, 0.15, -0.1, 0.05, -0.12]):  # identical files, ±15% from run to run
        run = db.create_run(f"n{i}", {"settings": {}, "commit": None, "inventory": None, "suite": None,
                                      "host": {"hostname": "ci", "edgebench": "0"}})
        samples, sizes = repeated_samples(rng, 10.0, [level + o for o in (0.0, 0.005, -0.005)])
        db.put_device(run, "d", synthetic_device("d"))
        db.put_cell(run, synthetic_cell("d", "m", "fp32", samples, repeat_sizes=sizes))
        db.finish_run(run)
    db.close()
    out = tmp_path / "r.html"
    assert run_cli("report", "--store", store, "--baseline", "n3", "-o", out).code == 0
    assert re.search(r"identical files differ by up to \d+\.\d% run to run \(from 4 runs of 1 series\)", out.read_text())
    # n1 against n2 is +28%, beyond the 5% limit with a tight CI, but within this device's floor: not a FAIL
    budgets = _budgets(tmp_path)
    assert run_cli("gate", "--budgets", budgets, "--run", "n1", "--baseline", "n2", "--store", store).code == 0
