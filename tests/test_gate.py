"""The release gate: budgets.yaml parsing, verdicts, JUnit/markdown/pytest-benchmark outputs, the pytest plugin.

Runs are built from harness.stats on seeded numpy samples: the gate is pure functions of the export JSON.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.common.errors import EdgebenchError, ExitCode
from harness.gate.budgets import load_budgets
from harness.gate.checks import Verdict, make_check
from harness.gate.evaluate import Evaluation, GateResult, evaluate
from harness.gate.writers import markdown_summary, text_summary, write_junit
from harness.results.export import pytest_benchmark_json
from harness.results.stats import latency_summary, median_ci95, quantile_ci95, validity_flags
from harness.results.store import Store

pytest_plugins = ["pytester"]

DEVICES = [
    {"name": "pi-4b-01", "groups": ["pis"], "tags": ["pi4"]},
    {"name": "pi-5-01", "groups": ["pis"], "tags": ["pi5", "usb-coral"]},
    {"name": "local", "groups": [], "tags": []},
]


def samples(mean: float, n: int = 200, sd: float = 0.3, seed: int = 0) -> list[float]:
    return [float(x) for x in np.random.default_rng(seed).normal(mean, sd, n)]


def make_cell(device: str = "pi-4b-01", model: str = "mobilenet", variant: str = "int8",
              lat: list[float] | None = None, status: str = "ok", **extra: Any) -> dict[str, Any]:
    latency = (latency_summary(lat if lat is not None else samples(10.0), extra.get("repeat_sizes"))
               if status == "ok" else None)
    cell: dict[str, Any] = {
        "device": device, "model": model, "variant": variant, "status": status,
        "error": None if status == "ok" else "agent did not answer in 60 s",
        "latency_ms": latency, "init_ms": 50.0, "first_inference_ms": 20.0, "peak_rss_mb": 80.0,
        "model_bytes": 3_600_000,
        "accuracy": {"logits": {"cosine": 0.9990, "snr_db": 31.0, "top1_agreement": 0.99},
                     "embedding": {"cosine": 0.9950, "snr_db": 24.0, "top1_agreement": None}},
        "thermal_before": None, "thermal_after": None,
    }
    cell.update(extra)
    cell["flags"] = validity_flags(latency, cell["thermal_before"], cell["thermal_after"]) if latency else []
    return cell


def make_export(*cells: dict[str, Any], run_id: str = "20261124-071500-ab12") -> dict[str, Any]:
    return {"schema_version": 1,
            "run": {"id": run_id, "label": None, "started_at": "2026-11-24T07:15:00+00:00",
                    "finished_at": "2026-11-24T07:20:00+00:00", "settings": {"runs": 200, "warmup": 1,
                                                                             "min_seconds": 1.0, "threads": None},
                    "inventory": None, "commit": "abc123", "host": {"hostname": "ci-1", "edgebench": "0.1.0"}},
            "devices": [{**d, "status": "ok", "env": {"arch": "aarch64"}} for d in DEVICES],
            "results": list(cells)}


def budgets(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "budgets.yaml"
    path.write_text(text)
    return path


def gate(tmp_path: Path, yaml_text: str, export: dict[str, Any], baseline: dict[str, Any] | None = None,
         allow_missing: bool = False) -> GateResult:
    return evaluate(export, load_budgets(budgets(tmp_path, yaml_text)), baseline, allow_missing)


# -- statistics ----------------------------------------------------------------
def test_quantile_ci95_is_median_ci95_at_half_and_covers_the_true_p90() -> None:
    s = samples(10.0, n=50)
    assert quantile_ci95(s, 0.5) == median_ci95(s)
    assert quantile_ci95(s, 0.99) is None  # 50 samples cannot bound a p99
    assert quantile_ci95(samples(10.0, n=700), 0.99) is not None
    rng = np.random.default_rng(7)
    true_p90 = 1.2815516  # standard normal
    hits = 0
    for _ in range(400):
        lo, hi = quantile_ci95(list(rng.normal(0, 1, 200)), 0.9) or (np.inf, -np.inf)
        hits += lo <= true_p90 <= hi
    assert 0.92 <= hits / 400 <= 0.985


# -- verdicts --------------------------------------------------------------------
def test_p90_pass_warn_fail_and_explanation(tmp_path: Path) -> None:
    cell = make_cell()
    p90 = cell["latency_ms"]["p90"]
    lo, hi = quantile_ci95(cell["latency_ms"]["samples"], 0.9) or (0, 0)
    assert lo < p90 < hi
    export = make_export(cell)

    def one(limit: float) -> Evaluation:
        return gate(tmp_path, f"budgets:\n  - model: mobilenet\n    p90_ms: {limit}\n", export).evaluations[0]

    assert one(hi + 0.5).verdict is Verdict.PASS
    warn = one(round((p90 + hi) / 2, 4))
    assert warn.verdict is Verdict.WARN and "straddles the bound" in warn.explanation
    fail = one(round(p90 - 0.05, 4))
    assert fail.verdict is Verdict.FAIL
    assert fail.explanation == f"p90 {p90:g} ms > {round(p90 - 0.05, 4):g} ms on pi-4b-01 mobilenet int8"


def test_p50_warn_reads_the_stored_ci(tmp_path: Path) -> None:
    cell = make_cell()
    lat = cell["latency_ms"]
    limit = round((lat["p50"] + lat["p50_ci95"][1]) / 2, 4)
    ev = gate(tmp_path, f"budgets:\n  - p50_ms: {limit}\n", make_export(cell)).evaluations[0]
    assert ev.verdict is Verdict.WARN
    assert f"[{lat['p50_ci95'][0]:g}, {lat['p50_ci95'][1]:g}]" in ev.explanation


@pytest.mark.parametrize(("metric", "passing", "failing", "shown"), [
    ("p99_ms", 20, 10.5, "p99"),
    ("init_ms", 60, 40, "init 50 ms > 40 ms"),
    ("first_inference_ms", 25, 15, "first inference 20 ms > 15 ms"),
    ("peak_rss_mb", 100, 64, "peak RSS 80 MB > 64 MB"),
    ("model_bytes", 4_000_000, 3_000_000, "model size 3600000 B > 3000000 B"),
    ("cosine", 0.99, 0.998, "cosine 0.995 < 0.998 (output 'embedding')"),
    ("snr_db", 20, 30, "SNR 24 dB < 30 dB (output 'embedding')"),
    ("top1_agreement", 0.95, 0.995, "top-1 agreement 0.99 < 0.995 (output 'logits')"),
])
def test_each_metric_kind(tmp_path: Path, metric: str, passing: float, failing: float, shown: str) -> None:
    export = make_export(make_cell(lat=samples(10.0, n=700)))  # enough samples to trust a p99
    assert gate(tmp_path, f"budgets:\n  - {metric}: {passing}\n", export).verdict is Verdict.PASS
    result = gate(tmp_path, f"budgets:\n  - {metric}: {failing}\n", export)
    assert result.verdict is Verdict.FAIL and result.exit_code is ExitCode.BUDGET_BROKEN
    assert shown in result.evaluations[0].explanation


def test_untrustworthy_flags_warn_a_pass_but_never_soften_a_fail(tmp_path: Path) -> None:
    hot = make_cell(thermal_after={"throttled": 0x4, "temperatures_c": None, "cpu_freq_khz": None, "loadavg": None})
    few = make_cell(device="local", lat=samples(10.0, n=30))
    assert "throttled" in hot["flags"] and "too_few_samples_p90" in few["flags"]
    export = make_export(hot, few)
    result = gate(tmp_path, "budgets:\n  - device: pi-4b-01\n    p50_ms: 20\n    peak_rss_mb: 100\n"
                            "  - device: local\n    p90_ms: 20\n    p50_ms: 20\n", export)
    hot_ev, few_ev = result.evaluations
    assert hot_ev.verdict is Verdict.WARN and "untrustworthy: throttled" in hot_ev.explanation
    assert [r.verdict for r in hot_ev.results] == [Verdict.WARN, Verdict.PASS]  # memory is not slowed by heat
    assert [r.verdict for r in few_ev.results] == [Verdict.WARN, Verdict.PASS]  # 30 samples: p50 fine, p90 not
    assert result.exit_code is ExitCode.OK  # WARN alone does not fail the gate
    assert gate(tmp_path, "budgets:\n  - device: pi-4b-01\n    p50_ms: 5\n", export).verdict is Verdict.FAIL


def test_selectors_glob_group_and_tag(tmp_path: Path) -> None:
    export = make_export(make_cell("pi-4b-01", "mobilenet_v2", "int8"), make_cell("pi-5-01", "mobilenet_v2", "fp32"),
                         make_cell("local", "mobilenet_v2", "int8"), make_cell("local", "efficientnet", "int8"))

    def matched(selectors: str) -> set[tuple[str, str, str]]:
        result = gate(tmp_path, f"budgets:\n  - {{{selectors}, p50_ms: 100}}\n", export)
        return {ev.cell for ev in result.evaluations if ev.cell}

    assert matched("device: 'pi-*'") == {("pi-4b-01", "mobilenet_v2", "int8"), ("pi-5-01", "mobilenet_v2", "fp32")}
    assert matched("device: pis") == matched("device: 'pi-*'")  # a group
    assert matched("device: usb-coral") == {("pi-5-01", "mobilenet_v2", "fp32")}  # a tag
    assert matched("model: 'mobile*', variant: int8") == {("pi-4b-01", "mobilenet_v2", "int8"),
                                                          ("local", "mobilenet_v2", "int8")}
    assert matched("device: local, model: '*net'") == {("local", "efficientnet", "int8")}


def test_missing_data_fails_unless_allowed(tmp_path: Path) -> None:
    export = make_export(make_cell(), make_cell(device="local", status="timeout"),
                         make_cell(device="pi-5-01", accuracy=None))
    text = "budgets:\n  - device: local\n    p90_ms: 40\n  - device: pi-5-01\n    cosine: 0.99\n"
    strict = gate(tmp_path, text, export)
    assert [ev.verdict for ev in strict.evaluations] == [Verdict.FAIL, Verdict.FAIL]
    assert "not measured (timeout: agent did not answer in 60 s)" in strict.evaluations[0].explanation
    assert "cosine: not measured on pi-5-01" in strict.evaluations[1].explanation
    assert strict.exit_code is ExitCode.BUDGET_BROKEN
    lenient = gate(tmp_path, text, export, allow_missing=True)
    assert [ev.verdict for ev in lenient.evaluations] == [Verdict.WARN, Verdict.WARN]
    assert lenient.exit_code is ExitCode.OK


def test_rule_matching_no_cell(tmp_path: Path) -> None:
    text = "budgets:\n  - name: resnet on pis\n    model: resnet*\n    p50_ms: 10\n"
    result = gate(tmp_path, text, make_export(make_cell()))
    (ev,) = result.evaluations
    assert ev.cell is None and ev.verdict is Verdict.FAIL
    assert ev.explanation == "p50_ms: no cell matched on model=resnet*"
    assert gate(tmp_path, text, make_export(make_cell()), allow_missing=True).verdict is Verdict.WARN


def _repeats(median: float, offsets: list[float], seed: int) -> dict[str, Any]:
    """The latency and repeat sizes of a cell measured in len(offsets) processes (levels median*exp(offset))."""
    rng = np.random.default_rng(seed)
    lat = [float(x) for off in offsets for x in median * np.exp(off) * rng.lognormal(0, 0.02, 100)]
    return {"lat": lat, "repeat_sizes": [100] * len(offsets), "repeats": len(offsets)}


def test_regression_decided_on_the_ci_of_the_change(tmp_path: Path) -> None:
    text = "budgets:\n  - model: mobilenet\n    max_regression: 5%\n"
    steady = [0.0, 0.01, -0.01, 0.005, -0.005]
    base = make_export(make_cell(**_repeats(10.0, steady, 1)), run_id="base")
    slower = gate(tmp_path, text, make_export(make_cell(**_repeats(12.0, steady, 2))), base)
    (ev,) = slower.evaluations
    assert ev.verdict is Verdict.FAIL and "x1.198 [1.1" in ev.explanation and "whole 95% CI is above" in ev.explanation
    assert slower.baseline_id == "base"
    assert gate(tmp_path, text, make_export(make_cell(**_repeats(9.0, steady, 2))), base).verdict is Verdict.PASS

    # +10% but the repeats disagree by +-20%: inconclusive, with how many more repeats would decide
    noisy = gate(tmp_path, text, make_export(make_cell(**_repeats(11.0, [0.2, -0.2, 0.1], 3))),
                 make_export(make_cell(**_repeats(10.0, [-0.1, 0.15, 0.0], 4))))
    (ev,) = noisy.evaluations
    assert ev.verdict is Verdict.WARN and "more repeats would decide" in ev.explanation
    assert ev.results[0].more_repeats and ev.results[0].more_repeats >= 1

    # one process per side: +30% with tight samples is still not evidence of a regression
    single = gate(tmp_path, text, make_export(make_cell(lat=samples(13.0, seed=2))),
                  make_export(make_cell(lat=samples(10.0, seed=1))))
    assert single.verdict is Verdict.WARN and "single repeat cannot separate" in single.evaluations[0].explanation

    # against history, a change inside the device's noise floor is not a FAIL
    floored = gate(tmp_path, text, make_export(make_cell(**_repeats(12.0, steady, 2))), base)
    assert floored.verdict is Verdict.FAIL
    assert evaluate(make_export(make_cell(**_repeats(12.0, steady, 2))), load_budgets(budgets(tmp_path, text)),
                    base, floors={"pi-4b-01": 0.15}).verdict is Verdict.WARN

    new_cell = gate(tmp_path, text, make_export(make_cell(lat=samples(11.0))), make_export())
    assert new_cell.verdict is Verdict.WARN and "no baseline cell" in new_cell.evaluations[0].explanation
    with pytest.raises(EdgebenchError, match="needs a baseline") as err:
        gate(tmp_path, text, make_export(make_cell()))
    assert err.value.where == f"{tmp_path / 'budgets.yaml'}:2"


def test_an_inconclusive_regression_names_its_actual_cause(tmp_path: Path) -> None:
    rules = load_budgets(budgets(tmp_path, "budgets:\n  - model: mobilenet\n    max_regression: 5%\n"))
    steady = [0.0, 0.01, -0.01, 0.005, -0.005]

    def note(new: dict[str, Any], old: dict[str, Any], floor: float | None = None) -> str:
        result = evaluate(make_export(new), rules, make_export(old, run_id="base"),
                          floors={"pi-4b-01": floor} if floor is not None else None)
        (ev,) = result.evaluations
        assert ev.verdict is Verdict.WARN
        return ev.results[0].note or ""

    # one process per side, +30% and beyond a tight floor: the cause is the single repeat, not the floor
    single = note(make_cell(lat=samples(13.0, seed=2)), make_cell(lat=samples(10.0, seed=1)), floor=0.01)
    assert single.startswith("inconclusive after 1 repeat: a single repeat cannot separate") and "floor" not in single
    assert "--repeats N" in single and "--until-conclusive" in single
    # five repeats a side, +20% with a tight CI, but this device's runs differ by up to ~50%: the floor
    floored = note(make_cell(**_repeats(12.0, steady, 2)), make_cell(**_repeats(10.0, steady, 1)), floor=0.15)
    assert re.fullmatch(r"inconclusive after 5 repeats: the 95% CI \[1\.1\d\d, 1\.2\d\d\] is above the limit but "
                        r"within this device's run-to-run noise floor of 5\d\.\d%; .*", floored), floored
    # repeats that disagree by +-20%: the CI is wider than the limit can split
    wide = note(make_cell(**_repeats(11.0, [0.2, -0.2, 0.1], 3)), make_cell(**_repeats(10.0, [-0.1, 0.15, 0.0], 4)))
    assert re.fullmatch(r"inconclusive after 3 repeats: the 95% CI \[0\.\d+, 1\.\d+\] straddles the limit x1\.050 \(\+5%\); "
                        r"about \d+ more repeats would decide \(--repeats N or --baseline-models with "
                        r"--until-conclusive\)", wide), wide


def test_in_run_baseline_is_paired_and_not_gated_itself(tmp_path: Path) -> None:
    text = "budgets:\n  - max_regression: 5%\n"
    rounds = [0.2, -0.15, 0.1, -0.05, 0.0, 0.12]  # large shared noise: it hits both sides of each round
    cand = make_cell(**_repeats(11.5, rounds, 5))
    base = make_cell(model="mobilenet@baseline", baseline_for="mobilenet", **_repeats(10.0, rounds, 6))
    result = gate(tmp_path, text, make_export(cand, base))
    (ev,) = result.evaluations  # the baseline cell is the reference, not a candidate
    assert ev.cell == ("pi-4b-01", "mobilenet", "int8")
    assert ev.verdict is Verdict.FAIL and "in-run baseline" in ev.explanation and "paired" in ev.explanation
    same = gate(tmp_path, text, make_export(make_cell(**_repeats(10.0, rounds, 7)), base))
    assert same.verdict is Verdict.PASS


def test_max_regression_accepts_percent_strings_and_numbers() -> None:
    assert make_check("max_regression", "5%", "x").limit == 5.0
    assert make_check("max_regression", 2.5, "x").limit == 2.5
    for bad in ("five%", "5", -1, True):
        with pytest.raises(EdgebenchError, match="max_regression must be"):
            make_check("max_regression", bad, "x")


# -- budgets.yaml errors -------------------------------------------------------
@pytest.mark.parametrize(("text", "line", "message"), [
    ("budgets:\n  - model: a\n   p90_ms: 3\n", 3, "invalid YAML"),
    ("schema_version: 1\nbudgets:\n  - model: a\n    p90_ms: 3\n    p95_ms: 4\n", 5, "unknown key 'p95_ms'"),
    ("budgets:\n  - model: a\n    chip: x\n    p90_ms: 3\n", 3, "unknown key 'chip'"),
    ("budgets:\n  - model: a\n\n    p90_ms: fast\n", 4, "p90_ms must be a number"),
    ("budgets:\n  - model: a\n    peak_rss_mb: -1\n", 3, "must not be negative"),
    ("budgets:\n  - name: x\n    model: a\n", 2, "has no bound"),
    ("budgets:\n  - p50_ms: 3\n  - 42\n", 3, "budget rule #2 must be a mapping"),
    ("budgets:\n  - variant: 8\n    p50_ms: 3\n", 2, "variant must be a non-empty string"),
    ("schema_version: 2\nbudgets: []\n", 1, "schema_version 2 is not supported"),
    ("budgets: []\n", 1, "non-empty list"),
    ("budgets:\n  - p50_ms: 3\n    max_regression: lots\n", 3, "max_regression must be"),
])
def test_bad_budgets_name_the_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = budgets(tmp_path, text)
    with pytest.raises(EdgebenchError, match=message) as err:
        load_budgets(path)
    assert str(err.value).startswith(f"{path}:{line}: ")


def test_rule_labels_and_descriptions(tmp_path: Path) -> None:
    rules = load_budgets(budgets(tmp_path, "schema_version: 1\nbudgets:\n"
                                           "  - {name: pis, device: 'pi-*', p90_ms: 40, cosine: 0.99}\n"
                                           "  - {model: m, variant: int8, max_regression: 3%}\n"))
    assert [r.label for r in rules] == ["pis", "model=m variant=int8"]
    assert [c.describe() for c in rules[0].checks] == ["p90 <= 40 ms", "cosine >= 0.99"]
    assert rules[1].checks[0].describe() == "p50 regression <= 3%"


# -- outputs -------------------------------------------------------------------
def mixed_result(tmp_path: Path) -> GateResult:
    """One FAIL, one WARN, four PASS; user names full of markup."""
    export = make_export(make_cell("<pi&1>", "mobile|net", "int8"), make_cell("pi-5-01", "mobile|net", "int8"),
                         make_cell("local", "mobile|net", "int8", lat=samples(10.0, n=30)))
    text = ("budgets:\n  - {name: 'fast <enough> & small', device: '<pi&1>', p50_ms: 5}\n"
            "  - {device: 'pi-5-01', p90_ms: 40, peak_rss_mb: 100}\n  - {device: local, p90_ms: 40}\n"
            "  - {device: '*', model: 'mobile?net', cosine: 0.9}\n")
    return gate(tmp_path, text, export)


def test_junit_xml_parses_back_with_escaped_names(tmp_path: Path) -> None:
    result = mixed_result(tmp_path)
    out = tmp_path / "reports" / "gate.xml"
    write_junit(result, out)
    raw = out.read_text(encoding="utf-8")
    assert "&lt;pi&amp;1&gt;" in raw
    root = ET.parse(out).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests", "")) == len(result.evaluations) == 6
    assert int(suite.get("failures", "")) == len(suite.findall("testcase/failure")) == 1
    failed = [c for c in cases if c.find("failure") is not None][0]
    assert failed.get("name") == "<pi&1>/mobile|net/int8" and failed.get("classname") == "fast <enough> & small"
    failure = failed.find("failure")
    assert failure is not None and "p50" in (failure.get("message") or "")
    props = {p.get("name"): p.get("value") for p in failed.iter("property")}
    assert props["p50_ms.limit"] == "5" and float(props["p50_ms.value"] or 0) > 5
    notes = [c.findtext("system-out") or "" for c in cases if c.find("system-out") is not None]
    assert len(notes) == 1 and notes[0].startswith("WARN: ") and "too_few_samples_p90" in notes[0]
    assert not list(suite.iter("skipped"))


def test_junit_survives_control_characters(tmp_path: Path) -> None:
    export = make_export(make_cell("pi\x01bad", "m", "v"))
    result = evaluate(export, load_budgets(budgets(tmp_path, "budgets:\n  - p50_ms: 100\n")))
    write_junit(result, tmp_path / "g.xml")
    case = ET.parse(tmp_path / "g.xml").getroot().find("testsuite/testcase")
    assert case is not None and case.get("name") == "pi\ufffdbad/m/v"


def test_markdown_summary(tmp_path: Path) -> None:
    result = mixed_result(tmp_path)
    md = markdown_summary(result)
    lines = md.splitlines()
    assert lines[0] == "## edgebench gate: ❌ FAIL"
    assert lines[2].startswith("**1 failed, 1 warned, 4 passed**") and "20261124-071500-ab12" in lines[2]
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| Verdict")]
    assert [r.split(" | ")[0] for r in rows] == ["| ❌ FAIL", "| ⚠️ WARN"] + ["| ✅ PASS"] * 4
    assert "&lt;pi&amp;1&gt;" in rows[0] and "mobile\\|net" in rows[0] and "<pi&1>" not in md
    assert all(row.count(" | ") == 5 for row in rows)  # escaped pipes do not add columns
    assert "fast &lt;enough&gt; &amp; small" in rows[0] and "&gt; 5 ms" in rows[0]
    assert "<details><summary>4 passed</summary>" in md
    assert text_summary(result).splitlines()[-1] == "gate FAIL: 1 failed, 1 warned, 4 passed"


def test_pytest_benchmark_json_is_read_by_pytest_benchmark(tmp_path: Path) -> None:
    good = make_cell("pi-4b-01", "mobilenet", "int8")
    data = pytest_benchmark_json(make_export(good, make_cell("local", "mobilenet", "fp32", status="crashed")))
    assert set(data) >= {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert data["commit_info"]["id"] == "abc123" and data["machine_info"]["node"] == "ci-1"
    (bench,) = data["benchmarks"]  # the crashed cell has nothing to show
    assert bench["name"] == "mobilenet[pi-4b-01-int8]" and bench["group"] == "mobilenet"
    stats = bench["stats"]
    assert set(stats) >= {"min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "rounds", "ops", "data"}
    assert stats["rounds"] == 200 and stats["median"] * 1000 == pytest.approx(good["latency_ms"]["p50"], abs=1e-3)
    assert stats["ops"] == pytest.approx(1000 / good["latency_ms"]["mean"], rel=1e-3)
    assert bench["options"]["min_rounds"] == 200
    path = tmp_path / "0001_edgebench.json"
    path.write_text(json.dumps(data))
    subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(path), f"--csv={tmp_path / 'c'}"],
                   check=True, capture_output=True, cwd=tmp_path, timeout=60)
    (row,) = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert row["name"] == bench["fullname"] == "pi-4b-01::mobilenet::int8"
    assert float(row["median"]) == pytest.approx(stats["median"])


# -- pytest plugin ---------------------------------------------------------------
def _plugin_args() -> list[str]:
    """Installed with the `pytest11` entry point the plugin loads itself; before that, load it by module.
    labgrid's own pytest plugin (installed with the lab extra) can start only once per process: keep it out."""
    installed = any(ep.name == "edgebench" for ep in importlib.metadata.entry_points(group="pytest11"))
    return ["-p", "no:labgrid"] + ([] if installed else ["-p", "harness.gate.pytest_plugin"])


def test_pytest_plugin_on_a_real_store(pytester: pytest.Pytester, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store_file = tmp_path / "store" / "results.sqlite"
    store = Store(store_file)
    run_id = store.create_run("v1", {"settings": {"runs": 200}})
    store.put_device(run_id, "local", {"groups": [], "tags": ["ci"], "status": "ok", "error": None})
    store.put_cell(run_id, make_cell("local", "mobilenet", "fp32"))
    store.finish_run(run_id)
    store.close()
    pytester.makepyfile(test_budgets="""
        from harness.gate.pytest_plugin import assert_budget

        def test_fits(edgebench_run):
            assert_budget(edgebench_run, model="mobile*", device="ci", p90_ms=100, peak_rss_mb=100)

        def test_too_slow(edgebench_run):
            assert_budget(edgebench_run, model="mobilenet", p50_ms=1)
    """)
    result = pytester.runpytest(*_plugin_args(), "--edgebench-store", str(store_file))
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: budget broken: p50 * ms > 1 ms on local mobilenet fp32*"])

    monkeypatch.setenv("EDGEBENCH_STORE", str(tmp_path / "nowhere.sqlite"))
    missing = pytester.runpytest(*_plugin_args())
    missing.assert_outcomes(errors=2)
    missing.stdout.fnmatch_lines(["*nowhere.sqlite: no edgebench results store*"])
