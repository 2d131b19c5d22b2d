"""The HTML report: recommendation logic, baseline significance, escaping, size, and the page in real Chromium."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.common.errors import EdgebenchError
from harness.gate.budgets import load_budgets
from harness.gate.evaluate import evaluate
from harness.report.plots import pareto_front
from harness.report.recommend import recommend
from harness.report.render import render_index, render_report, script_json
from harness.report.view import baseline_delta
from harness.results.history import History
from harness.results.record import Cell

from tests.support.synthetic import fleet_export, synthetic_cell, synthetic_export

from tests.support.browser import Browser, find_chromium

XSS = "<script>alert(1)</script>"
WEIRD_DEVICE = 'rpi<b>5</b> & "lab"'


def _lat(rng: np.random.Generator, median_ms: float, n: int = 200, spread: float = 0.03) -> list[float]:
    return [round(float(v), 4) for v in median_ms * rng.lognormal(0, spread, n)]


def _cells() -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    return [
        synthetic_cell("pi-4b-01", "mobilenet_v2", "fp32", _lat(rng, 11.0), cosine=1.0, model_bytes=13_600_000),
        synthetic_cell("pi-4b-01", "mobilenet_v2", "fp16", _lat(rng, 11.2), cosine=0.99999, model_bytes=6_800_000),
        synthetic_cell("pi-4b-01", "mobilenet_v2", "dynamic", _lat(rng, 9.0), cosine=0.95, model_bytes=3_600_000),
        synthetic_cell("pi-4b-01", "mobilenet_v2", "int8", _lat(rng, 6.5), cosine=0.995, top1=0.99,
                       model_bytes=3_900_000, flags=["random_calibration"]),
        synthetic_cell("pi-4b-01", "mobilenet_v2", "int16x8", None, status="failed_to_prepare",
                       error=f"{XSS} Node number 15 (DEPTHWISE_CONV_2D) failed to prepare.",
                       stderr_tail="kernel_util.cc:349 no_integer_overflow_from_quantization was not true.\n"
                                   "</script><script>alert(2)</script>"),
        # throttled during the run (0x80008: soft temperature limit now and since boot)
        synthetic_cell(WEIRD_DEVICE, "mobilenet_v2", "fp32", _lat(rng, 45.0), cosine=1.0, throttled=0x80008),
        # uncertain: its three processes disagree by +-20%
        synthetic_cell(WEIRD_DEVICE, "mobilenet_v2", "int8", _lat(rng, 24.0) + _lat(rng, 30.0) + _lat(rng, 36.0),
                       cosine=0.996, repeat_sizes=[200, 200, 200]),
        # too few samples for a p90, and no accuracy data
        synthetic_cell(WEIRD_DEVICE, "mobilenet_v2", "dynamic", _lat(rng, 25.0, n=40), cosine=None,
                       flags=["same_as_fp32"]),
    ]


@pytest.fixture(scope="module")
def export() -> dict[str, Any]:
    return synthetic_export(_cells())


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("EDGEBENCH_TEST_ARTIFACTS")
    path = Path(env) / "report" if env else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def report(export: dict[str, Any], artifacts: Path) -> Path:
    rng = np.random.default_rng(8)

    def fp32(median_ms: float) -> Cell:  # measured in three processes, so a change can be told from noise
        return synthetic_cell("pi-4b-01", "mobilenet_v2", "fp32", [v for level in (1.0, 1.01, 0.99)
                              for v in _lat(rng, median_ms * level)], cosine=1.0, repeat_sizes=[200] * 3)

    export = {**export, "results": [fp32(11.0), *export["results"][1:]]}
    base_cells = [fp32(9.5), *_cells()[1:]]  # fp32 got slower
    baseline = synthetic_export(base_cells, run_id="20261120-090000-cd34", label="v1.1")
    return render_report(export, artifacts / "report.html", baseline=baseline)


# -- recommend() ------------------------------------------------------------------
def test_fastest_accurate_variant_wins_and_rejections_say_why(export: dict[str, Any]) -> None:
    rec = recommend(export)["pi-4b-01"]["mobilenet_v2"]
    assert rec.winner is not None and rec.winner.variant == "int8"  # 6.5 ms, cosine 0.995 >= 0.99
    assert rec.runner_up is not None and rec.runner_up.variant == "fp32"  # 11.0 beats fp16's 11.2
    assert re.match(r"runner-up: \+\d+\.\d% p50 vs int8", rec.why("fp32"))
    assert rec.why("fp16").startswith("too slow: +")
    assert rec.why("dynamic") == "too inaccurate: cosine 0.9500 < 0.99 on output 'logits'"  # faster than fp32, but
    assert rec.why("int16x8").startswith(f"failed_to_prepare: {XSS} Node number 15")
    assert [c.verdict for c in rec.candidates] == ["winner", "runner_up", "slower", "inaccurate", "failed"]


def test_unmeasured_accuracy_is_allowed_but_marked(export: dict[str, Any]) -> None:
    rec = recommend(export)[WEIRD_DEVICE]["mobilenet_v2"]
    assert rec.winner is not None and rec.winner.variant == "dynamic"  # 25 ms, no accuracy data
    assert not rec.winner.accuracy_measured and rec.winner.reason.endswith("(accuracy not measured)")
    assert rec.runner_up is not None and rec.runner_up.accuracy_measured
    assert rec.runner_up.variant == "int8" and rec.why("int8").endswith(
        "measurement flagged uncertain_p50: re-measure before relying on it")


def test_classifier_top1_rule_and_custom_bar() -> None:
    rng = np.random.default_rng(1)
    cells = [synthetic_cell("d", "m", "fp32", _lat(rng, 10.0), cosine=1.0),
             synthetic_cell("d", "m", "int8", _lat(rng, 5.0), cosine=0.98, top1=0.995),  # classifier: top-1 rescues
             synthetic_cell("d", "m", "int8-bad", _lat(rng, 4.0), cosine=0.98, top1=0.90)]
    rec = recommend(synthetic_export(cells))["d"]["m"]
    assert rec.winner is not None and rec.winner.variant == "int8"
    assert rec.why("int8-bad") == "too inaccurate: cosine 0.9800 < 0.99, top-1 agreement 0.900 < 0.99 on output 'logits'"
    strict = recommend(synthetic_export(cells), {"cosine": 0.999, "top1_agreement": 0.999})["d"]["m"]
    assert strict.winner is not None and strict.winner.variant == "fp32"
    with pytest.raises(EdgebenchError, match="unknown accuracy bar metric 'snr'"):
        recommend(synthetic_export(cells), {"snr": 30})


def test_broken_budget_rejects_a_variant(export: dict[str, Any], tmp_path: Path) -> None:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("schema_version: 1\nbudgets:\n  - device: pi-4b-01\n    variant: int8\n    p50_ms: 6\n"
                       "  - device: pi-4b-01\n    variant: fp32\n    p50_ms: 20\n")
    gate = evaluate(export, load_budgets(budgets))
    rec = recommend(export, None, gate)["pi-4b-01"]["mobilenet_v2"]
    assert rec.winner is not None and rec.winner.variant == "fp32"  # int8 is faster, but over its budget
    assert re.fullmatch(r"over budget: p50 6\.\d+ ms > 6 ms on pi-4b-01 mobilenet_v2 int8", rec.why("int8"))
    html = render_report(export, tmp_path / "r.html", budgets_result=gate).read_text()
    assert "and the budgets" in html and "over budget: p50" in html


def test_no_winner_when_nothing_passes() -> None:
    cells = [synthetic_cell("d", "m", "int8", None, status="failed_to_load", error="Didn't find op for builtin opcode")]
    rec = recommend(synthetic_export(cells))["d"]["m"]
    assert rec.winner is None and rec.runner_up is None
    assert rec.why("int8") == "failed_to_load: Didn't find op for builtin opcode"


# -- baseline significance ------------------------------------------------------------
def _runs_of(rng: np.random.Generator, median_ms: float, levels: list[float], spread: float = 0.03) -> Cell:
    """A cell measured in len(levels) processes, process k at median_ms * levels[k]."""
    lat = [v for level in levels for v in _lat(rng, median_ms * level, spread=spread)]
    return synthetic_cell("d", "m", "v", lat, repeat_sizes=[200] * len(levels))


def test_baseline_delta_marks_only_changes_beyond_the_noise() -> None:
    rng = np.random.default_rng(3)
    steady = [1.0, 1.01, 0.99, 1.005, 0.995]
    base = _runs_of(rng, 10.0, steady)
    same = baseline_delta(_runs_of(rng, 10.0, steady), base)
    assert same.kind == "same" and not same.significant and same.text.startswith("×") and same.ci95 is not None
    slower = baseline_delta(_runs_of(rng, 11.0, steady), base)
    assert slower.kind == "slower" and slower.significant and slower.ci95 is not None and slower.ci95[0] > 1.05
    assert slower.pct is not None and 7 < slower.pct < 13 and "5 vs 5 repeats" in slower.detail
    assert baseline_delta(base, _runs_of(rng, 11.0, steady)).kind == "faster"
    # 1% slower, certain: under the 2% a report marks
    assert baseline_delta(_runs_of(rng, 10.1, [1.0, 1.001, 0.999], spread=0.002),
                          _runs_of(rng, 10.0, [1.0, 1.001, 0.999], spread=0.002)).kind == "same"
    # one process each: +40% with tight samples cannot be told from run-to-run noise
    one = baseline_delta(synthetic_cell("d", "m", "v", _lat(rng, 14.0, n=2000, spread=0.002)),
                         synthetic_cell("d", "m", "v", _lat(rng, 10.0, n=2000, spread=0.002)))
    assert one.kind == "undecided" and not one.significant and "one repeat" in one.text
    # repeats that disagree: the change is within their noise
    assert baseline_delta(_runs_of(rng, 11.0, [1.3, 0.8, 1.1]), _runs_of(rng, 10.0, [0.9, 1.2, 1.0])).kind == "same"
    failed = synthetic_cell("d", "m", "v", None, status="crashed", error="SIGSEGV")
    assert baseline_delta(failed, base).kind == "regressed"
    assert baseline_delta(base, failed).kind == "fixed"
    assert baseline_delta(base, None).kind == "new"


def test_report_marks_baseline_changes(report: Path) -> None:
    html = report.read_text()
    row = re.search(r'<tr data-s="ok"[^>]* data-d="1">\s*<td>pi-4b-01</td><td>mobilenet_v2</td><td>fp32</td>.*?</tr>', html, re.S)
    assert row and 'class="dl d-slower"' in row.group(0) and re.search(r"×1\.1\d\d \[1\.\d+, 1\.\d+\] slower<small>\+1\d\.\d%; 3 vs 3 repeats",
                                                                       row.group(0))
    # the other cells were measured once: the report says it cannot tell, not "same" nor "slower"
    assert html.count('class="dl d-undecided"') >= 3 and "one repeat cannot tell" in html


# -- the HTML file -------------------------------------------------------------------
def test_script_json_cannot_close_the_script() -> None:
    data = {"e": "</script><script>alert(1)</script><!-- & \u2028"}
    text = str(script_json(data))
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == data


def test_report_is_self_contained_escaped_and_versioned(report: Path, export: dict[str, Any]) -> None:
    html = report.read_text()
    assert '<meta name="edgebench-schema-version" content="1">' in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html, re.I)
    assert "@import" not in html and "url(" not in html and "<link rel=\"stylesheet\"" not in html
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>5</b>" not in html and "rpi&lt;b&gt;5&lt;/b&gt; &amp; &#34;lab&#34;" in html
    assert html.count("<script") == 2  # the JSON block and the page script, nothing injected
    block = re.search(r'<script type="application/json" id="edgebench-data">(.*?)</script>', html, re.S)
    assert block
    data = json.loads(block.group(1))
    assert data["schema_version"] == 1 and len(data["results"]) == len(export["results"])
    assert all("samples" not in (c["latency_ms"] or {}) for c in data["results"])
    assert data["results"][4]["error"].startswith(XSS)
    assert data["recommendations"]["pi-4b-01"]["mobilenet_v2"]["winner"]["variant"] == "int8"
    assert oct(report.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in report.parent.iterdir() if p.name.startswith(".report.html")] == []  # no temp left


def test_unknown_export_version_is_refused(export: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(EdgebenchError, match="schema_version 2 is not supported"):
        render_report({**export, "schema_version": 2}, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_pareto_front() -> None:
    pts = [(5.0, 4.0), (6.0, 3.0), (7.0, 3.5), (10.0, 1.0), (10.0, 2.0)]
    assert pareto_front(pts, maximize_y=False) == [0, 1, 3]
    assert pareto_front(pts, maximize_y=True) == [0]


def test_index_lists_runs_with_trend_lines(export: dict[str, Any], report: Path) -> None:
    later = json.loads(json.dumps(export))
    later["run"].update(id="20261125-080000-ef56", label="v1.3", started_at="2026-11-25T08:00:00+00:00")
    # the report of `export` exists next to the index: its row links there
    first = json.loads(json.dumps(export))
    first["run"]["id"] = report.stem
    index = render_index(History.of_exports([later, first]), report.parent / "index.html")
    html = index.read_text()
    assert html.index("20261125-080000-ef56") < html.index(report.stem)  # newest first
    assert f'href="{report.stem}.html"' in html and 'href="20261125-080000-ef56.html"' not in html
    ok_series = {(c["device"], c["variant"]) for c in export["results"] if c["status"] == "ok"}
    assert html.count("<polyline") == len(ok_series)
    assert "rpi&lt;b&gt;5&lt;/b&gt;" in html and "<b>5</b>" not in html


def test_index_marks_where_a_series_shifted(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    runs = []
    for i in range(14):
        level = 10.0 if i < 7 else 13.0  # a +30% regression landed with run 7
        cells = [synthetic_cell("pi", "m", "fp32", _lat(rng, level * float(rng.lognormal(0, 0.02)))),
                 synthetic_cell("pi", "m", "int8", _lat(rng, 5.0 * float(rng.lognormal(0, 0.02))))]
        runs.append(synthetic_export(cells, run_id=f"20261101-0000{i:02d}-aa00", label=f"n{i}",
                                     started_at=f"2026-11-01T00:{i:02d}:00+00:00"))
    html = render_index(History.of_exports(runs), tmp_path / "index.html").read_text()
    assert html.count('class="shift"') == 1  # the steady int8 series claims none
    assert re.search(r"<b>pi · fp32</b> shifted ×1\.(2|3)\d at run n7", html)


def test_fleet_report_stays_small(tmp_path: Path) -> None:
    """Its speed is measured by benchmarks/bench_report.py (a time on a shared machine is no unit test)."""
    out = render_report(fleet_export(50, 10, 1000), tmp_path / "fleet.html")
    size = out.stat().st_size
    assert size <= 3_000_000, f"{size / 1e6:.2f} MB > 3 MB: raw samples embedded?"


# -- in real Chromium ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if find_chromium() is None:
        pytest.fail("chromium is not installed: apt-get install chromium")
    with Browser(tmp_path_factory.mktemp("chromium-profile")) as b:
        yield b


def test_report_in_chromium(browser: Browser, report: Path, export: dict[str, Any], artifacts: Path) -> None:
    page = browser.new_page()
    page.goto(report.as_uri())
    n = len(export["results"])
    assert page.eval("document.querySelectorAll('#matrix tbody tr').length") == n
    ok_cells = sum(c["status"] == "ok" for c in export["results"])
    assert page.eval("document.querySelectorAll('#matrix svg.box').length") == ok_cells
    assert page.eval("document.querySelectorAll('svg.plot').length") >= 4  # size + accuracy per device
    assert page.eval("document.querySelectorAll('svg.plot g.pt.on').length") >= 2  # Pareto fronts marked
    # the injected error text is text, not markup, and survived the JSON block intact
    assert page.eval("document.scripts.length") == 2
    assert XSS in page.eval("document.querySelector('#matrix tr.bad summary').textContent")
    assert page.eval("JSON.parse(document.getElementById('edgebench-data').textContent).results[4].error").startswith(XSS)
    # warnings in place: throttled p50, uncertain p50, too-few-samples p90
    warned = page.eval("Array.from(document.querySelectorAll('#matrix td.w, #matrix td.wl'), td => td.title).join('\\n')")
    assert "throttled" in warned and "uncertain: the p50" in warned and "p90 from 40 samples" in warned

    # sort by p50: click the header, rows follow p50 ascending, missing values last; again: descending
    p50s = "Array.from(document.querySelectorAll('#matrix tbody tr'), r => r.cells[4].dataset.v)"
    before = page.eval(p50s)
    page.click("#matrix thead th:nth-child(5)")
    asc = page.eval(p50s)
    numbers = [float(v) for v in asc if v]
    assert asc != before and numbers == sorted(numbers) and asc[-1] == "" and len(numbers) == n - 1
    page.click("#matrix thead th:nth-child(5)")
    desc = [float(v) for v in page.eval(p50s) if v]
    assert desc == sorted(numbers, reverse=True)
    assert page.eval("document.querySelector('#matrix thead th:nth-child(5)').getAttribute('aria-sort')") == "descending"

    # filter: typed text hides rows; the status filter narrows to failures
    visible = "Array.from(document.querySelectorAll('#matrix tbody tr')).filter(r => !r.hidden).map(r => r.cells[2].textContent.trim())"
    page.type("#q", "int8")
    shown = page.eval(visible)
    assert shown and len(shown) < n and all("int8" in v for v in shown)
    assert page.eval("document.getElementById('shown').textContent") == f"{len(shown)} of {n} cells"
    set_field = "(([id, value, ev]) => {{ const e = document.getElementById(id); e.value = value; " \
                "e.dispatchEvent(new Event(ev)); }})({})"
    page.eval(set_field.format(json.dumps(["q", "", "input"])))
    page.eval(set_field.format(json.dumps(["sf", "fail", "change"])))
    assert page.eval(visible) == ["int16x8"]
    page.eval(set_field.format(json.dumps(["sf", "warn", "change"])))
    assert len(page.eval(visible)) == sum(bool(c["flags"]) for c in export["results"])
    page.eval(set_field.format(json.dumps(["sf", "all", "change"])))

    # 2 devices: sections start open; a link to a device section keeps it open
    page.eval("document.querySelector('#dev-1 details').open = false")
    page.click("#recs a[href='#dev-1']")
    assert page.eval("document.querySelector('#dev-1 details').open") is True

    page.eval("window.scrollTo(0, 0)")
    shot = page.screenshot(artifacts / "report.png")
    full = page.screenshot(artifacts / "report-full.png", full_page=True)
    for png in (shot, full):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000

    later = json.loads(json.dumps(export))
    later["run"].update(id="20261125-080000-ef56", label="v1.3", started_at="2026-11-25T08:00:00+00:00")
    for cell in later["results"]:
        if cell["latency_ms"]:
            cell["latency_ms"]["p50"] *= 0.9
    index = render_index(History.of_exports([export, later]), report.parent / "index.html")
    page.goto(index.as_uri())
    assert page.eval("document.querySelectorAll('svg.plot polyline').length") == 7
    page.screenshot(artifacts / "index.png")

    assert page.errors() == []
    assert page.dialogs() == []
    requests = page.requests()
    assert report.as_uri() in requests and index.as_uri() in requests  # the network log works...
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []  # ...and saw nothing else


def test_predicted_compatibility_from_the_converted_files() -> None:
    from harness.report.view import predicted_compatibility

    def cell(variant: str, loadable: bool) -> dict[str, Any]:
        verdict = {"loadable": loadable, "problems": [] if loadable else ["FULLY_CONNECTED version 12"], "unknowns": []}
        return {"variant": variant, "conversion": {"diagnostics": {"compatibility": {"tflite_runtime 2.14.0": verdict}}}}

    rows = predicted_compatibility([cell("fp32", True), cell("dynamic", False), {"variant": "x"}],
                                   ["fp32", "dynamic", "x"])
    assert [r["runtime"] for r in rows] == ["tflite_runtime 2.14.0"]
    assert [v and v["loadable"] for v in rows[0]["verdicts"]] == [True, False, None]
