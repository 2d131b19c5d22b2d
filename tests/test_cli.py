"""The command-line contract: run, export, report, gate, exit codes and bad input, on the real local device."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import export_run as _export, run_cli

EXPORT_CELL_FIELDS = {"device", "model", "variant", "status", "error", "latency_ms", "init_ms", "first_inference_ms",
                      "peak_rss_mb", "model_bytes", "runtime", "threads", "delegate"}
LATENCY_FIELDS = {"samples", "p50", "p90", "p99", "mean", "std", "min", "max"}
VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int16x8")


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local device's cache (and the agent zip) live under $HOME: each test starts with none."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))



@pytest.fixture()
def measured(converted: Path, store: Path) -> dict[str, Any]:
    result = run_cli("run", "--models", converted, "--devices", "local", "--runs", "8", "--min-seconds", "0",
                     "--warmup", "1", "--label", "first", "--store", store, "-q")
    assert result.code == 0, result.err
    assert "run id:" in result.out
    return _export(store)


def test_run_stores_every_variant_with_the_export_fields(measured: dict[str, Any]) -> None:
    assert measured["schema_version"] == 1
    assert {"id", "label", "started_at", "finished_at"} <= set(measured["run"])
    assert measured["run"]["label"] == "first"
    cells = {c["variant"]: c for c in measured["results"]}
    assert {v: c["status"] for v, c in cells.items()} == dict.fromkeys(VARIANTS, "ok")
    for cell in cells.values():
        assert EXPORT_CELL_FIELDS <= set(cell) and cell["error"] is None
        assert LATENCY_FIELDS <= set(cell["latency_ms"])
        assert len(cell["latency_ms"]["samples"]) >= 8
        assert cell["runtime"]["name"] == "ai_edge_litert" and cell["runtime"]["version"]
        assert cell["init_ms"] > 0 and cell["peak_rss_mb"] > 0 and cell["model_bytes"] > 0
    # The accuracy of the float model against the Keras reference, measured from on-device outputs.
    (metrics,) = cells["fp32"]["accuracy"].values()
    assert metrics["cosine"] > 0.9999
    device = measured["devices"][0]
    assert device["name"] == "local" and device["env"]["runtime"]["name"] == "ai_edge_litert"


def test_second_run_ships_no_model_bytes(measured: dict[str, Any], converted: Path, store: Path) -> None:
    assert measured["devices"][0]["bytes_shipped"] > 0  # this test's own device cache started empty
    result = run_cli("run", "--models", converted, "--devices", "local", "--runs", "3", "--min-seconds", "0",
                     "--store", store, "-q")
    assert "shipped 0 bytes" in result.out, result.out


def test_resume_measures_only_what_is_missing(measured: dict[str, Any], converted: Path, store: Path) -> None:
    run_id = measured["run"]["id"]
    with sqlite3.connect(store) as db:
        db.execute("DELETE FROM cells WHERE run_id=? AND variant IN ('fp16', 'int8')", (run_id,))
    result = run_cli("run", "--models", converted, "--devices", "local",  # measured with the run's own settings
                     "--store", store, "--resume", run_id, "-q")
    assert result.code == 0, result.err
    assert "3 cell(s) already measured" in result.out
    again = _export(store, run_id)
    assert {c["variant"]: c["status"] for c in again["results"]} == dict.fromkeys(VARIANTS, "ok")
    fp32_before = next(c for c in measured["results"] if c["variant"] == "fp32")
    fp32_after = next(c for c in again["results"] if c["variant"] == "fp32")
    assert fp32_after["latency_ms"]["samples"] == fp32_before["latency_ms"]["samples"]  # not re-measured


def test_report_is_written(measured: dict[str, Any], store: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = run_cli("report", "--store", store, "-o", out)
    assert result.code == 0, result.err
    html = out.read_text()
    assert "int16x8" in html and "fp32" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained


def test_gate_exit_codes(measured: dict[str, Any], store: Path, tmp_path: Path) -> None:
    loose = tmp_path / "loose.yaml"
    loose.write_text("budgets:\n  - variant: fp32\n    p90_ms: 10000\n    peak_rss_mb: 100000\n")
    tight = tmp_path / "tight.yaml"
    tight.write_text("budgets:\n  - variant: fp32\n    p90_ms: 0.000001\n")
    junit = tmp_path / "junit.xml"
    assert run_cli("gate", "--budgets", loose, "--store", store, "--junit", junit).code == 0
    assert junit.exists()
    broken = run_cli("gate", "--budgets", tight, "--store", store)
    assert broken.code == 1 and "fp32" in broken.out
    bad = tmp_path / "bad.yaml"
    bad.write_text("budgets:\n  - variant: fp32\n    p91_ms: 3\n")
    result = run_cli("gate", "--budgets", bad, "--store", store)
    assert result.code == 2 and f"{bad}:3" in result.err and "p91_ms" in result.err


def test_corrupt_tflite_is_a_failed_cell_not_a_crash(tmp_path: Path, converted: Path, store: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "good.tflite").write_bytes((converted / "fp32.tflite").read_bytes())
    (models / "broken.tflite").write_bytes(b"TFL3" + b"\x00" * 200)
    result = run_cli("run", "--models", models, "--devices", "local", "--runs", "3", "--min-seconds", "0",
                     "--store", store, "-q")
    assert result.code == 3, result.err
    cells = {c["model"]: c for c in _export(store)["results"]}
    assert cells["good"]["status"] == "ok"
    assert cells["broken"]["status"] == "failed_to_load"
    assert "not a valid Flatbuffer" in cells["broken"]["error"]  # the runtime's own words


@pytest.mark.parametrize("text, line, words", [
    ("all:\n  hosts:\n    pi: {ansible_port: twenty}\n", 3, "ansible_port"),
    ("all:\n  hosts:\n    pi:\n      colour: red\n", 4, "unknown key 'colour'"),
    ("all:\n  hosts:\n    pi: [\n", 4, "invalid YAML"),
    ("all:\n  hosts:\n    pi:\n      transport: carrier-pigeon\n", 4, "transport"),
])
def test_malformed_inventory_names_the_line(tmp_path: Path, converted: Path, text: str, line: int, words: str) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(text)
    result = run_cli("run", "--models", converted, "--inventory", inv, "--store", tmp_path / "s.sqlite")
    assert result.code == 2
    assert f"{inv}:{line}" in result.err and words in result.err
    assert "Traceback" not in result.err


def test_bad_input_exit_codes(tmp_path: Path, converted: Path) -> None:
    missing = run_cli("convert", tmp_path / "nope.keras")
    assert missing.code == 2 and "nope.keras" in missing.err and "not found" in missing.err
    not_a_model = tmp_path / "notes.txt"
    not_a_model.write_text("hello")
    assert run_cli("convert", not_a_model).code == 2
    unknown_device = run_cli("run", "--models", converted, "--devices", "pi-99", "--store", tmp_path / "s.sqlite")
    assert unknown_device.code == 2 and "pi-99" in unknown_device.err
    assert run_cli("report", "--store", tmp_path / "empty.sqlite").code == 2
    assert run_cli("run", "--models", tmp_path / "missing", "--store", tmp_path / "s.sqlite").code == 2


def test_suite_file_drives_a_run(tmp_path: Path, converted: Path) -> None:
    suite = tmp_path / "suite.yaml"
    shutil.copytree(converted, tmp_path / "cnn")  # a suite's paths stay inside its directory
    suite.write_text("label: from-suite\nmodels:\n  - path: cnn\n    variants: [fp32, int8]\n"
                     "devices: [local]\nruns: 4\nmin_seconds: 0\nrepeats: 2\n")
    store = tmp_path / "s.sqlite"
    result = run_cli("run", suite, "--store", store, "-q")
    assert result.code == 0, result.err
    export = _export(store)
    assert export["run"]["label"] == "from-suite"
    assert sorted(c["variant"] for c in export["results"]) == ["fp32", "int8"]
    for cell in export["results"]:  # two interleaved repeats merged into one cell
        assert cell["repeats"] == 2 and cell["latency_ms"]["count"] >= 8
        assert cell["accuracy"]  # evaluated once, on the first repeat
    suite.write_text("models: []\nrunz: 3\n")
    bad = run_cli("run", suite, "--store", store)
    assert bad.code == 2 and f"{suite}:2" in bad.err


def test_report_of_a_real_run_in_chromium(measured: dict[str, Any], store: Path, tmp_path: Path) -> None:
    from tests.support.browser import Browser

    out = tmp_path / "real.html"
    assert run_cli("report", "--store", store, "-o", out).code == 0
    with Browser(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.goto(out.as_uri())
        assert page.errors() == []
        assert page.eval("document.querySelectorAll('#matrix tbody tr').length") == 5
        assert page.eval("document.querySelectorAll('#matrix svg.box').length") == 5  # one per measured cell
        assert "★" in page.eval("document.querySelector('table').textContent")  # a recommendation is shown
        assert all(u.startswith("file://") for u in page.requests())
        artifacts = Path(os.environ.get("EDGEBENCH_TEST_ARTIFACTS") or tmp_path)
        artifacts.mkdir(parents=True, exist_ok=True)
        assert page.screenshot(artifacts / "real-run-report.png", full_page=True).stat().st_size > 10_000


def _fake_python(tmp_path: Path, body: str) -> Path:
    """A device 'python' that ignores its arguments and prints what a broken agent would."""
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\ncat > /dev/null\n" + body)
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("body, words", [
    ("echo 'Traceback: something is wrong'\n", "not an agent frame"),
    ("printf 'EDGEBENCH1 99999999999\\n'\n", "exceeds"),
    ("printf 'EDGEBENCH1 10\\n{\"a\": NaN}\\n'\n", "NaN"),
])
def test_garbage_agent_output_is_invalid_output(tmp_path: Path, converted: Path, store: Path, body: str,
                                                words: str) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(f"all:\n  hosts:\n    odd:\n      transport: local\n"
                   f"      ansible_python_interpreter: {_fake_python(tmp_path, body)}\n")
    result = run_cli("run", "--models", converted / "fp32.tflite", "--inventory", inv, "--store", store, "-q")
    assert result.code == 3
    (cell,) = _export(store)["results"]
    assert cell["status"] == "invalid_output" and words in cell["error"]


def test_ctrl_c_leaves_a_resumable_run(converted: Path, store: Path) -> None:
    argv = [sys.executable, "-m", "harness", "run", "--models", str(converted), "--devices", "local",
            "--runs", "20", "--min-seconds", "0.5", "--store", str(store)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if store.exists():
            with sqlite3.connect(store) as db:
                try:
                    if db.execute("SELECT count(*) FROM cells").fetchone()[0]:
                        break
                except sqlite3.OperationalError:
                    pass
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    run_id = _export(store)["run"]["id"]
    assert run_cli("run", "--models", converted, "--devices", "local", "--store", store, "--resume", run_id,
                   "-q").code == 0
    assert {c["variant"]: c["status"] for c in _export(store, run_id)["results"]} == dict.fromkeys(VARIANTS, "ok")


def test_edge_tpu_detection_on_a_fabricated_sysfs(tmp_path: Path) -> None:
    """No Coral here: the probe script runs for real on a directory tree shaped like /dev and /sys."""
    from harness.commands.devices import edgetpu_info
    from harness.config.inventory import local_device
    from harness.fleet.transport.local import LocalTransport

    transport = LocalTransport(local_device())
    assert edgetpu_info(transport, str(tmp_path))["attached"] is None
    usb = tmp_path / "sys" / "bus" / "usb" / "devices" / "2-1"
    usb.mkdir(parents=True)
    (usb / "idVendor").write_text("18d1\n")
    (usb / "idProduct").write_text("9302\n")
    assert edgetpu_info(transport, str(tmp_path))["attached"] == "usb"
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "apex_0").touch()
    assert edgetpu_info(transport, str(tmp_path))["attached"] == "pcie,usb"


def test_taskset_pins_the_agent(tmp_path: Path, converted: Path, store: Path) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text('all:\n  hosts:\n    pinned:\n      transport: local\n      taskset: "1"\n')
    assert run_cli("run", "--models", converted / "fp32.tflite", "--inventory", inv, "--store", store, "--runs", "3",
                   "--min-seconds", "0", "-q").code == 0
    (device,) = _export(store)["devices"]
    assert device["env"]["cpu_affinity"] == [0]


def test_a_device_the_host_cannot_drive_fails_alone(tmp_path: Path, converted: Path, store: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"  # this host's tools, but no adb client
    bin_dir.mkdir()
    for tool in Path("/usr/bin").iterdir():
        if tool.name != "adb":
            (bin_dir / tool.name).symlink_to(tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    inv = tmp_path / "inventory.yaml"
    inv.write_text("all:\n  hosts:\n    local: {transport: local}\n    phone: {transport: adb, serial: ABC123}\n")
    result = run_cli("run", "--models", converted / "fp32.tflite", "--inventory", inv, "--store", store, "--runs", "3",
                     "--min-seconds", "0", "-q")
    assert result.code == 3 and "Traceback" not in result.err
    cells = {c["device"]: c for c in _export(store)["results"]}
    assert cells["local"]["status"] == "ok"
    assert cells["phone"]["status"] == "environment_error" and "adb" in cells["phone"]["error"]
