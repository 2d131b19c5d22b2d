"""Stored runs stay readable, and read the same: a store written by edgebench 0.1.0 (tests/fixtures/golden,
made with `edgebench run` before the stages became packages) exports byte for byte as it did then, and its
report shows the same numbers.

Run 1: the local device, fp32/dynamic/int8 of a small CNN plus a corrupt .tflite, 2 repeats.
Run 2: the same variants on the local device and on an unreachable SSH device.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
RUN1, RUN2 = "20261202-070012-1eca", "20261202-070013-253b"


@pytest.fixture()
def golden_store(tmp_path: Path) -> Path:
    store = tmp_path / "golden.sqlite"
    shutil.copyfile(GOLDEN / "golden.sqlite", store)  # opening a store may migrate it: never the fixture itself
    return store


@pytest.mark.parametrize(("run", "fmt", "golden"), [(RUN1, "json", "export_run1.json"),
                                                    (RUN2, "json", "export_run2.json"),
                                                    (RUN1, "pytest-benchmark", "pb_run1.json")])
def test_a_stored_run_exports_byte_for_byte_as_before(golden_store: Path, run: str, fmt: str, golden: str) -> None:
    result = run_cli("export", "--run", run, "--format", fmt, "--store", golden_store)
    assert result.code == 0, result.err
    assert result.out == (GOLDEN / golden).read_text()


def _embedded(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="edgebench-data">(.*?)</script>', html, re.S)
    assert found is not None
    return json.loads(found.group(1))  # type: ignore[no-any-return]


# What a cell shows in the report: everything measured. The comparison with the baseline ("baseline") is
# the comparison method's, which is not a stored number.
SHOWN = ("device", "model", "variant", "status", "error", "latency_ms", "init_ms", "first_inference_ms", "peak_rss_mb",
         "rss_growth_mb", "model_bytes", "runtime", "threads", "delegate", "accuracy", "flags", "box_ms")


def test_the_report_of_a_stored_run_shows_the_same_numbers(golden_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "report" / "run1.html"
    result = run_cli("report", "--run", RUN1, "--baseline", RUN2, "--store", golden_store, "-o", out)
    assert result.code == 0, result.err
    now, then = _embedded(out.read_text()), json.loads((GOLDEN / "report_run1_data.json").read_text())
    assert len(now["results"]) == len(then["results"]) == 4
    for new, old in zip(now["results"], then["results"]):
        assert {k: new.get(k) for k in SHOWN} == {k: old.get(k) for k in SHOWN}
    for device, models in then["recommendations"].items():
        for model, rec in models.items():
            again = now["recommendations"][device][model]
            assert (again["winner"], again["runner_up"]) == (rec["winner"], rec["runner_up"])
            assert [c["variant"] for c in again["candidates"]] == [c["variant"] for c in rec["candidates"]]
