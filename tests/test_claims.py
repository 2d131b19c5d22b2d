"""What the README claims about `run`, `gate`, `report` and `export`, checked through the command line.

Real parts only: the built-in local transport (the real agent on ai-edge-litert), real sshd servers, a real
native delegate that hangs. Each device keeps its cache in this test's own directory, never in the real $HOME.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import export_run as _export, run_cli
from tests.support.sshd import SSHServer
from tests.support.venvs import device_python

QUICK = ("--runs", "3", "--min-seconds", "0", "--warmup", "1", "-q")


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local device's cache and the agent zip live under $HOME: a fresh one per test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))



def _statuses(store: Path, run: str = "latest") -> dict[tuple[str, str, str], str]:
    return {(c["device"], c["model"], c["variant"]): c["status"] for c in _export(store, run)["results"]}


def _locals(path: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    """An inventory of local-transport devices, each with its own workdir beside the inventory."""
    lines = ["all:", "  hosts:"]
    for name, extra in hosts.items():
        lines += [f"    {name}:", "      transport: local", f"      workdir: {path.parent / ('dev-' + name)}"]
        lines += [f"      {k}: {json.dumps(v)}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _interval(cell: dict[str, Any]) -> tuple[float, float]:
    """When a cell's work on the device surely started (latest bound) and surely ended (earliest bound).

    measured_at is when the host received the cell, in whole seconds, so the true end lies in [T, T + 1);
    cell_ms is everything the cell cost on the device (load, warm-up, timed runs)."""
    t = datetime.fromisoformat(cell["measured_at"]).timestamp()
    assert cell["cell_ms"] > 2000, cell["cell_ms"]  # long enough for the 1 s resolution not to matter
    return t + 1 - cell["cell_ms"] / 1000, t


def test_devices_are_measured_in_parallel(tmp_path: Path, converted: Path, store: Path) -> None:
    inv = _locals(tmp_path / "inv.yaml", {"a": {}, "b": {}})
    models = ("--models", converted / "fp32.tflite", "--models", converted / "fp16.tflite")
    # The test model takes microseconds: --max-runs lifts the cap so that every cell lasts its 2.5 s.
    result = run_cli("run", *models, "--inventory", inv, "--store", store, "--runs", "5", "--min-seconds", "2.5",
                     "--max-runs", "1000000", "--warmup-seconds", "0", "-q")
    assert result.code == 0, result.err
    cells = _export(store)["results"]
    assert {c["status"] for c in cells} == {"ok"} and len(cells) == 4
    a = [_interval(c) for c in cells if c["device"] == "a"]
    b = [_interval(c) for c in cells if c["device"] == "b"]
    # Some cell of a and some cell of b were on the devices at the same time (one after the other, b's
    # latest possible start would come after a's earliest possible end, whatever the load).
    overlapping = [(x, y) for x in a for y in b if max(x[0], y[0]) < min(x[1], y[1])]
    assert overlapping, (a, b)


def test_run_budgets_and_a_suites_budgets_exit_1(tmp_path: Path, converted: Path, store: Path) -> None:
    tight = tmp_path / "tight.yaml"
    tight.write_text("budgets:\n  - model: fp32\n    p90_ms: 0.000001\n")  # a bare .tflite: variant "tflite"
    loose = tmp_path / "loose.yaml"
    loose.write_text("budgets:\n  - model: fp32\n    p90_ms: 100000\n")
    model = ("--models", converted / "fp32.tflite", "--devices", "local", "--store", store)
    broken = run_cli("run", *model, "--budgets", tight, *QUICK)
    assert broken.code == 1, broken.err
    (failed,) = [line for line in broken.out.splitlines() if line.startswith("FAIL")]
    assert "local" in failed and "p90" in failed and "no cell matched" not in failed, failed
    assert run_cli("run", *model, "--budgets", loose, *QUICK).code == 0
    suite = tmp_path / "suite.yaml"  # budgets: a path relative to the suite file, from another directory
    shutil.copy(converted / "fp32.tflite", tmp_path / "fp32.tflite")  # a suite's paths stay inside its directory
    suite.write_text("models:\n  - path: fp32.tflite\ndevices: [local]\nruns: 3\nmin_seconds: 0\n"
                     "budgets: tight.yaml\n")
    assert run_cli("run", suite, "--store", store, "-q").code == 1
    suite.write_text(suite.read_text().replace("tight.yaml", "loose.yaml"))
    assert run_cli("run", suite, "--store", store, "-q").code == 0


def test_cell_timeout_through_the_runner(tmp_path: Path, converted: Path, store: Path, native_lib: Path) -> None:
    """A model that hangs inside the runtime (a real native delegate that never returns) costs its cell only."""
    inv = _locals(tmp_path / "inv.yaml", {
        "stuck": {"delegate_library": str(native_lib), "delegate_options": {"mode": "hang"}},
        "fine": {},
    })
    started = time.monotonic()
    result = run_cli("run", "--models", converted / "fp32.tflite", "--models", converted / "fp16.tflite",
                     "--inventory", inv, "--store", store, "--cell-timeout", "3", *QUICK)
    elapsed = time.monotonic() - started
    assert result.code == 3, result.err
    cells = {(c["device"], c["model"]): c for c in _export(store)["results"]}
    for model in ("fp32", "fp16"):
        assert cells[("fine", model)]["status"] == "ok"
        stuck = cells[("stuck", model)]
        assert stuck["status"] == "timeout", stuck
        assert "after 3 s" in stuck["error"] or "silent for 3 s" in stuck["error"], stuck["error"]
    assert _export(store)["run"]["settings"]["cell_timeout_s"] == 3.0
    assert elapsed < 120  # two 3 s timeouts, not the default 600 s each


def test_tags_select_devices(tmp_path: Path, converted: Path, store: Path) -> None:
    inv = _locals(tmp_path / "inv.yaml",
                  {"a": {"tags": ["fast", "arm"]}, "b": {"tags": ["slow"]}, "c": {"tags": ["fast"]}})
    model = ("--models", converted / "fp32.tflite", "--inventory", inv, "--store", store)
    assert run_cli("run", *model, "--devices", "fast", *QUICK).code == 0
    assert {d for d, _, _ in _statuses(store)} == {"a", "c"}
    assert run_cli("run", *model, "--devices", "slow,arm", *QUICK).code == 0
    assert {d for d, _, _ in _statuses(store)} == {"a", "b"}
    unknown = run_cli("run", *model, "--devices", "purple", *QUICK)
    assert unknown.code == 2 and "purple" in unknown.err


def test_baseline_label_pytest_benchmark_export_and_markdown(tmp_path: Path, converted: Path, store: Path) -> None:
    model = ("--models", converted / "fp32.tflite", "--devices", "local", "--store", store, "--runs", "100",
             "--min-seconds", "0", "-q")
    assert run_cli("run", *model, "--label", "v1").code == 0
    assert run_cli("run", *model, "--label", "v2").code == 0
    v1 = _export(store, "v1")["run"]["id"]
    report = tmp_path / "r" / "v2.html"
    result = run_cli("report", "--store", store, "--baseline", "v1", "-o", report)
    assert result.code == 0, result.err
    assert v1 in report.read_text()
    assert run_cli("report", "--store", store, "--baseline", "v0", "-o", report).code == 2  # no such label
    budgets = tmp_path / "b.yaml"
    budgets.write_text("budgets:\n  - variant: tflite\n    p90_ms: 100000\n    max_regression: 1000%\n")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    gate = run_cli("gate", "--budgets", budgets, "--baseline", "v1", "--markdown", summary, "--store", store)
    assert gate.code == 0, gate.out + gate.err
    md = summary.read_text()
    assert md.startswith("earlier step\n")  # appended: $GITHUB_STEP_SUMMARY is shared by a job's steps
    # PASS, or WARN when this shared machine makes the samples noisy: never FAIL at a 1000% bound.
    assert md.count("## edgebench gate:") == 1 and "FAIL" not in md
    assert f"against baseline `{v1}`" in md and "| local | fp32 | tflite |" in md and "vs baseline" in md
    exported = run_cli("export", "--store", store, "--run", "v2", "--format", "pytest-benchmark")
    assert exported.code == 0, exported.err
    (bench,) = json.loads(exported.out)["benchmarks"]
    assert bench["fullname"] == "local::fp32::tflite" and bench["stats"]["rounds"] >= 100
    pb = tmp_path / "0001_v2.json"
    pb.write_text(exported.out)
    # pytest-benchmark's own tool reads the file: the export is its format, not a look-alike.
    # (this interpreter's, not whatever `pytest-benchmark` PATH finds first)
    compared = subprocess.run([sys.executable, "-c", "import sys; from pytest_benchmark.cli import main; sys.exit(main())",
                               "compare", str(pb), "--columns", "min,median,rounds"],
                              capture_output=True, text=True, timeout=60)
    assert compared.returncode == 0, compared.stderr
    assert "local-tflite" in compared.stdout or "fp32[local-tflite]" in compared.stdout, compared.stdout


def test_stores_and_manifests_of_a_newer_schema_are_refused(tmp_path: Path, converted: Path, store: Path) -> None:
    assert run_cli("run", "--models", converted / "fp32.tflite", "--devices", "local", "--store", store,
                   *QUICK).code == 0
    with sqlite3.connect(store) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    for argv in (("export",), ("report", "-o", tmp_path / "r.html"), ("run", "--models", converted / "fp32.tflite",
                                                                        "--devices", "local", *QUICK)):
        result = run_cli(*argv, "--store", store)
        assert result.code == 2, (argv, result.err)
        assert "schema_version 99" in result.err and "upgrade edgebench" in result.err
    newer = tmp_path / "newer"
    newer.mkdir()
    for f in converted.iterdir():
        (newer / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((newer / "manifest.json").read_text())
    (newer / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 2}))
    result = run_cli("run", "--models", newer, "--devices", "local", "--store", tmp_path / "s2.sqlite", *QUICK)
    assert result.code == 2 and "manifest schema_version 2" in result.err and str(newer) in result.err


def test_a_lost_connection_comes_back_after_a_retry(sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path,
                                                   converted: Path, tmp_path: Path) -> None:
    """The device's sshd dies mid-run (its sessions with it) and is back within the runner's back-off."""
    (server,) = sshd_servers(1)
    (ssh_home / ".ssh" / "known_hosts").write_text(server.known_hosts_line + "\n")
    inv = tmp_path / "inv.yaml"
    inv.write_text(f"all:\n  hosts:\n    pi:\n      ansible_host: 127.0.0.1\n      ansible_port: {server.port}\n"
                   f"      ansible_user: {server.user}\n      ansible_ssh_private_key_file: {server.client_key_path}\n"
                   f"      ansible_python_interpreter: {device_python('litert')}\n")
    store = tmp_path / "s.sqlite"
    restarted = threading.Event()

    def power_cycle_after_first_cell() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with sqlite3.connect(store) as db:
                    if db.execute("SELECT count(*) FROM cells").fetchone()[0]:
                        server.kill()
                        server.restart()
                        restarted.set()
                        return
            except sqlite3.OperationalError:
                pass
            time.sleep(0.05)

    cycler = threading.Thread(target=power_cycle_after_first_cell)
    cycler.start()
    result = run_cli("run", "--models", converted, "--inventory", inv, "--store", store, "--runs", "30",
                     "--min-seconds", "0.5", "-q")
    cycler.join()
    assert restarted.is_set()
    assert result.code == 0, result.err
    assert _statuses(store) == {("pi", "cnn", v): "ok" for v in ("fp32", "fp16", "dynamic", "int8", "int16x8")}
    assert "Accepted publickey" in server.log()  # the restarted server's log: the host came back


@pytest.mark.parametrize("where", ["before", "after"])
def test_an_internal_error_is_exit_4_and_debug_reraises_it_on_either_side_of_the_command(
        where: str, monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    from harness import cli

    def bug(args: Any) -> int:
        raise ZeroDivisionError("a bug")

    help_text, add_arguments, _ = cli.COMMANDS["export"]
    monkeypatch.setitem(cli.COMMANDS, "export", (help_text, add_arguments, bug))
    plain = run_cli("export", "--store", store)
    assert plain.code == 4 and "Traceback" in plain.err and "internal error" in plain.err
    argv = ("--debug", "export", "--store", store) if where == "before" else ("export", "--store", store, "--debug")
    with pytest.raises(ZeroDivisionError):
        run_cli(*argv)
