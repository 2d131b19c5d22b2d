"""`edgebench run` end to end over adb: Debian's real adb server, test phones speaking the adb wire protocol.

Two runners: the Python agent (phones with Python, e.g. Termux: here the test
phone's shell runs this machine's Python), and LiteRT's native benchmark_model.
The real benchmark_model is an Android/ARM binary that cannot run here, so a
stand-in script prints output in its documented format; everything around it
(shipping, chmod, argv, parsing, storing) is the real path.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.adb_device import AdbTestDevice
from tests.support.cli import run_cli

STAND_IN = """#!/bin/sh
# Stand-in for LiteRT's benchmark_model (an ARM binary): records its argv, prints the documented output.
printf '%s\\n' "$@" > "$(dirname "$0")/../argv.txt"
cat <<'OUT'
INFO: STARTING!
INFO: Num threads: [2]
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: Replacing 5 out of 5 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 1 partitions for subgraph 0.
INFO: The input model file size (MB): 0.003
INFO: Initialized session in 1.25ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=4000 first=60 curr=12 min=11 max=60 avg=12.5 std=2 p5=11 median=12 p95=14
INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=8000 first=13 curr=12 min=11 max=40 avg=12.4 std=1 p5=11 median=12 p95=13
INFO: Inference timings in us: Init: 1250, First inference: 60, Warmup (avg): 12.5, Inference (avg): 12.4
INFO: Memory footprint delta from the start of the tool (MB): init=1.5 overall=2.25
INFO: Overall peak memory footprint (MB) via periodic monitoring: 9.5
INFO: Operator-wise Profiling Info for Regular Benchmark Runs:
INFO: ============================== Run Order ==============================
INFO: 	             [node type]	  [first]	 [avg ms]	     [%]	  [cdf%]	  [mem KB]	[times called]	[Name]
INFO: 	                 CONV_2D	    0.004	    0.004	 40.000%	 40.000%	     0.000	        1	[conv]
OUT
"""


@pytest.fixture(scope="module")
def two_phones(adb_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AdbTestDevice]]:
    root = tmp_path_factory.mktemp("fleet")
    phones = [AdbTestDevice(root / "p1").start(), AdbTestDevice(root / "p2", shell_v2=False).start()]
    yield phones
    for p in phones:
        p.stop()


def _inventory(tmp_path: Path, phones: list[AdbTestDevice], **extra: str) -> Path:
    hosts = "".join(
        f"        phone-{i}:\n          serial: \"{p.serial}\"\n"
        f"          workdir: {p.root / 'data/local/tmp/edgebench'}\n" for i, p in enumerate(phones, 1))
    extra_vars = "".join(f"        {k}: {v}\n" for k, v in extra.items())
    inv = tmp_path / "inventory.yaml"
    inv.write_text(f"all:\n  children:\n    phones:\n      vars:\n        transport: adb\n{extra_vars}"
                   f"      hosts:\n{hosts}")
    return inv


def test_run_with_the_python_agent_on_two_phones(two_phones: list[AdbTestDevice], converted: Path,
                                                 tmp_path: Path) -> None:
    inv = _inventory(tmp_path, two_phones, ansible_python_interpreter=sys.executable)
    store = tmp_path / "s.sqlite"
    result = run_cli("run", "--models", converted, "--inventory", inv, "--devices", "phones", "--runs", "5",
                     "--min-seconds", "0", "--store", store, "-q")
    assert result.code == 0, result.err
    export = json.loads(run_cli("export", "--store", store).out)
    assert {(c["device"], c["variant"]): c["status"] for c in export["results"]} == {
        (d, v): "ok" for d in ("phone-1", "phone-2") for v in ("fp32", "fp16", "dynamic", "int8", "int16x8")}
    assert all(len(c["latency_ms"]["samples"]) >= 5 for c in export["results"])
    assert all(d["status"] == "ok" and d["bytes_shipped"] > 0 for d in export["devices"])
    assert all(d["android"]["model"] and d["android"]["sdk"] for d in export["devices"])  # facts from getprop


def test_run_with_benchmark_model(two_phones: list[AdbTestDevice], converted: Path, tmp_path: Path) -> None:
    binary = tmp_path / "benchmark_model"
    binary.write_text(STAND_IN)
    phone = two_phones[0]
    inv = _inventory(tmp_path, [phone], runner="benchmark_model", benchmark_binary=str(binary), threads="2")
    store = tmp_path / "s.sqlite"
    result = run_cli("run", "--models", converted / "fp32.tflite", "--inventory", inv, "--devices", "phone-1",
                     "--runs", "50", "--store", store, "--op-profile", "-q")
    assert result.code == 0, result.err + result.out
    (cell,) = json.loads(run_cli("export", "--store", store).out)["results"]
    assert cell["status"] == "ok" and cell["runtime"]["name"] == "benchmark_model"
    assert cell["latency_ms"]["p50"] == pytest.approx(0.012) and cell["latency_ms"]["samples"] is None
    assert "latency_ms.samples" in cell["unavailable"]
    assert cell["init_ms"] == pytest.approx(1.25) and cell["peak_rss_mb"] == pytest.approx(9.5)
    argv = (phone.root / "data/local/tmp/edgebench/argv.txt").read_text().split("\n")
    assert any(a.startswith("--graph=") and a.endswith(".tflite") for a in argv)
    assert "--num_threads=2" in argv and "--num_runs=50" in argv and "--enable_op_profiling=true" in argv
    assert "CONV_2D" in cell["benchmark_model"]["op_profile"]


def test_benchmark_model_path_missing_is_a_cell_status(two_phones: list[AdbTestDevice], converted: Path,
                                                       tmp_path: Path) -> None:
    inv = _inventory(tmp_path, [two_phones[0]], runner="benchmark_model",
                     benchmark_binary=str(tmp_path / "nowhere"))
    store = tmp_path / "s.sqlite"
    assert run_cli("run", "--models", converted / "fp32.tflite", "--inventory", inv, "--devices", "phone-1",
                   "--store", store, "-q").code == 3
    (cell,) = json.loads(run_cli("export", "--store", store).out)["results"]
    assert cell["status"] == "environment_error" and "never downloads" in cell["error"]
