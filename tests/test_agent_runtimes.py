"""The shipped agent zip in real device environments without TensorFlow: ai-edge-litert, tflite-runtime 2.14.

Each environment is a real Python 3.11 virtual environment installed from the
package index and cached under ~/.cache/edgebench/test-venvs/NAME-HASH (HASH of
the Python version and the requirements; $EDGEBENCH_TEST_VENVS moves it), so a
second session reuses it. The whole file takes ~10 s warm and ~25 s cold (four
venvs, 380 MB, on this machine's package mirror). The models are tiny,
converted by real TensorFlow in a child process; every runtime must give
TensorFlow's numbers for them, matched by output name, or fail the cell with
the runtime's own message.
"""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import device_agent
from harness.fleet.protocol import check_cell, encode_job, read_frame
from harness.fleet.shipping import agent_zip
from tests.support.venvs import VENVS, device_python

RUNTIMES = {"litert": ("ai_edge_litert", "2.3.0"), "tflite": ("tflite_runtime", "2.14.0")}
# dtype models: name -> (input dtypes, allowed error relative to the largest reference value)
DTYPE_MODELS = {
    "float32": (["float32"], 1e-5),
    "float16": (["float16"], 1e-3),
    "int8": (["int8"], 0.02),
    "uint8": (["uint8"], 0.02),
    "int16": (["int16"], 0.01),
    "bool": (["bool", "float32"], 1e-6),
    "dynamic_batch": (["float32"], 1e-6),
}
MODELS = [*DTYPE_MODELS, "multi_output", "stateful", "custom_op", "fc_v12", "cpu_fallback"]


@pytest.fixture(scope="session")
def venvs() -> dict[str, Path]:
    return {name: device_python(name) for name in VENVS}


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("agent-models")
    done = subprocess.run([sys.executable, str(Path(__file__).parent / "support" / "agent_models.py"), str(out)],
                          capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _cell(cid: str, models: Path, name: str, **extra: Any) -> dict[str, Any]:
    return {"id": cid, "model_path": str(models / f"{name}.tflite"), "runs": 20, "min_seconds": 0, "warmup": 1,
            "warmup_seconds": 0, "max_runs": 1000, "threads": 1, "eval_inputs": str(models / f"{name}.inputs.npz"),
            **extra}


def _serve(python: Path, cells: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """Run the agent zip in serve mode, as the host does; every frame, cells validated by the host's checks."""
    proc = subprocess.run([str(python), str(agent_zip()), "serve"], input=encode_job(cells, "auto"),
                          capture_output=True, timeout=300)
    stream, frames = io.BytesIO(proc.stdout), []
    while (frame := read_frame(stream)) is not None:
        frames.append(check_cell(frame, frame["id"]) if frame["type"] == "cell" else frame)
    return proc.returncode, frames


@pytest.fixture(scope="session")
def served(venvs: dict[str, Path], models: Path) -> dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]]:
    """One serve job per runtime with every model: runtime -> (hello frame, {cell id: cell})."""
    cells = [_cell(name, models, name) for name in MODELS]
    cells += [
        # The same stateful model after ten times more invokes: evaluation must not see them.
        _cell("stateful_longer", models, "stateful", runs=200),
        _cell("by_count", models, "float32", runs=50, warmup=2, eval_inputs=None),
        _cell("missing", models, "no_such_model"),
        _cell("by_time", models, "float32", runs=3, min_seconds=0.05, warmup=1, warmup_seconds=0.05,
              max_runs=10**6, eval_inputs=None),
    ]
    results = {}
    for runtime in RUNTIMES:
        code, frames = _serve(venvs[runtime], cells)
        assert code == 0 and [f["type"] for f in frames] == ["hello"] + ["cell"] * len(cells) + ["done"], frames
        results[runtime] = (frames[0], {f["id"]: f for f in frames[1:-1]})
    return results


def _expected(models: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(models / f"{name}.expected.npz") as data:
        return {k: data[k] for k in data.files}


def _assert_matches(cell: dict[str, Any], expected: dict[str, np.ndarray], rel: float) -> None:
    assert cell["status"] == "ok", cell
    assert set(cell["eval_outputs"]) == set(expected)
    for name, want in expected.items():
        got = cell["eval_outputs"][name]
        assert got.shape == want.shape, (name, got.shape, want.shape)
        tolerance = rel * float(np.abs(want).max()) + 1e-6
        assert float(np.abs(got - want).max()) <= tolerance, (cell["id"], name, got, want)


def test_agent_code_is_python_3_9_and_avoids_tensor_details() -> None:
    paths = sorted(Path(device_agent.__file__).parent.glob("*.py"))
    assert len(paths) >= 5
    for path in paths:
        tree = ast.parse(path.read_text(), str(path), feature_version=(3, 9))
        # These read every tensor's details, which segfaults tflite-runtime 2.14 on some models.
        calls = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        assert not calls & {"get_tensor_details", "_get_ops_details", "_get_op_details"}, path


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_hello_names_the_runtime_and_environment(served: dict[str, Any], runtime: str) -> None:
    hello, _ = served[runtime]
    assert (hello["runtime"]["name"], hello["runtime"]["version"]) == RUNTIMES[runtime]
    env = hello["env"]
    assert env["python"].startswith("3.11.") and env["cores"] and env["arch"]
    assert env["numpy"].startswith("1." if runtime == "tflite" else "2.")
    assert all(key in env for key in ("cpu_model", "os", "kernel", "hostname", "governor"))


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", DTYPE_MODELS)
def test_every_input_dtype_gives_tensorflows_numbers(served: dict[str, Any], models: Path, runtime: str,
                                                     name: str) -> None:
    cell = served[runtime][1][name]
    dtypes, rel = DTYPE_MODELS[name]
    assert [i["dtype"] for i in cell["inputs"]] == dtypes
    _assert_matches(cell, _expected(models, name), rel)
    if dtypes[0] in ("int8", "uint8", "int16"):
        assert cell["inputs"][0]["scale"] > 0  # quantized I/O: the agent quantized the float evaluation inputs


def test_both_runtimes_compute_the_same_numbers(served: dict[str, Any]) -> None:
    litert, tflite = served["litert"][1], served["tflite"][1]
    both = [cid for cid in litert if litert[cid]["status"] == tflite[cid]["status"] == "ok" and litert[cid]["eval_outputs"]]
    assert set(both) == set(MODELS) - {"custom_op", "fc_v12"} | {"stateful_longer"}
    for cid in both:
        for name, array in litert[cid]["eval_outputs"].items():
            np.testing.assert_allclose(tflite[cid]["eval_outputs"][name], array, rtol=1e-5, atol=1e-6, err_msg=cid)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_dynamic_batch_is_resized_to_one(served: dict[str, Any], runtime: str) -> None:
    (tensor,) = served[runtime][1]["dynamic_batch"]["inputs"]
    assert tensor["shape"] == [1, 4] and tensor["shape_signature"] == [-1, 4]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_outputs_are_matched_by_signature_name(served: dict[str, Any], models: Path, runtime: str) -> None:
    cell = served[runtime][1]["multi_output"]
    assert sorted(o["name"] for o in cell["outputs"]) == ["alpha_value", "zeta_scores"]
    _assert_matches(cell, _expected(models, "multi_output"), 1e-5)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_stateful_model_evaluates_from_its_initial_state(served: dict[str, Any], models: Path,
                                                         runtime: str) -> None:
    cells = served[runtime][1]
    short, longer = cells["stateful"], cells["stateful_longer"]
    assert short["stateful"] is True and cells["float32"]["stateful"] is False
    assert len(longer["samples_ms"]) == 10 * len(short["samples_ms"])
    expected = _expected(models, "stateful")  # TensorFlow accumulating from zero over the evaluation inputs
    _assert_matches(short, expected, 1e-5)
    np.testing.assert_array_equal(short["eval_outputs"]["total"], longer["eval_outputs"]["total"])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_unresolved_custom_op_is_a_failed_cell(served: dict[str, Any], runtime: str) -> None:
    cell = served[runtime][1]["custom_op"]
    assert cell["status"] in ("failed_to_load", "failed_to_prepare")
    assert "unresolved custom op" in cell["error"] and "BesselI0e" in cell["error"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_missing_model_file_is_a_failed_cell(served: dict[str, Any], runtime: str) -> None:
    cell = served[runtime][1]["missing"]
    assert cell["status"] == "failed_to_load" and "no_such_model.tflite" in cell["error"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_op_version_too_new_fails_only_on_the_old_runtime(served: dict[str, Any], models: Path, runtime: str) -> None:
    cell = served[runtime][1]["fc_v12"]
    if runtime == "tflite":
        assert cell["status"] == "failed_to_load"
        assert "FULLY_CONNECTED" in cell["error"] and "version '12'" in cell["error"]
    else:
        _assert_matches(cell, _expected(models, "fc_v12"), 0.03)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_delegate_coverage_shows_cpu_fallback(served: dict[str, Any], runtime: str) -> None:
    cells = served[runtime][1]
    full = cells["float32"]["delegate"]["coverage"]
    assert full == {"ops": 1, "partitions": 1, "cpu_ops": 0, "cpu_op_names": [], "fully_delegated": True}
    # XNNPACK has no CUMSUM: it runs on the CPU kernels between two XNNPACK partitions.
    fallback = cells["cpu_fallback"]["delegate"]["coverage"]
    assert fallback == {"ops": 3, "partitions": 2, "cpu_ops": 1, "cpu_op_names": ["CUMSUM"], "fully_delegated": False}
    stateful = cells["stateful"]["delegate"]["coverage"]
    assert stateful["cpu_ops"] >= 1 and "CALL_ONCE" in stateful["cpu_op_names"]
    int8 = cells["int8"]["delegate"]["coverage"]
    # tflite-runtime 2.14 applies no XNNPACK to int8 graphs: everything on the CPU kernels.
    assert int8["fully_delegated"] is (runtime == "litert") and (int8["partitions"] == 0) is (runtime == "tflite")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_warmup_and_runs_by_count_and_by_time(served: dict[str, Any], runtime: str) -> None:
    cells = served[runtime][1]
    by_count, by_time = cells["by_count"], cells["by_time"]
    assert len(by_count["samples_ms"]) == 50 and by_count["warmup_runs"] == 2
    # A ~1 us model asked for 3 runs and 0.05 s: the time rule wins (and for the warm-up).
    assert len(by_time["samples_ms"]) > 1000 and by_time["warmup_runs"] > 100


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_samples_keep_sub_microsecond_resolution(served: dict[str, Any], runtime: str) -> None:
    cell = served[runtime][1]["by_count"]
    samples = cell["samples_ms"]
    assert all(0 < s < 1 for s in samples)  # a tiny model: well under a millisecond, never rounded to 0
    assert any(round(s * 1e3, 9) != round(s * 1e3) for s in samples)  # digits below 1 us survive
    assert cell["init_ms"] > 0 and cell["first_inference_ms"] > 0 and cell["threads"] == 1
    assert cell["peak_rss_mb"] >= cell["rss_after_mb"] > 10
    assert cell["rss_growth_mb"] == pytest.approx(cell["rss_after_mb"] - cell["rss_before_mb"], abs=0.01)
    assert 0 < cell["clock_ns"]["load"] < cell["clock_ns"]["timed"]


def _standalone(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), str(agent_zip()), *args], capture_output=True, text=True, timeout=120)


def test_standalone_defaults_are_50_runs_and_1_second(venvs: dict[str, Path], models: Path) -> None:
    started = time.monotonic()
    done = _standalone(venvs["litert"], str(models / "float32.tflite"), "--json", "--max-runs", "1000000")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert elapsed >= 1.5  # 0.5 s of warm-up, then 1 s of timed runs
    assert result["warmup_runs"] > 1 and len(result["samples_ms"]) > 50
    assert result["latency_ms"]["count"] == len(result["samples_ms"])


def test_standalone_json_on_tflite_runtime(venvs: dict[str, Path], models: Path) -> None:
    done = _standalone(venvs["tflite"], str(models / "float32.tflite"), "--json", "--runs", "5", "--min-seconds", "0")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["runtime"] == {"name": "tflite_runtime", "version": "2.14.0"} and result["status"] == "ok"
    done = _standalone(venvs["tflite"], str(models / "fc_v12.tflite"), "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["status"] == "failed_to_load" and "version '12'" in result["error"]


def test_tflite_runtime_with_numpy_2_is_an_environment_error(venvs: dict[str, Path], models: Path) -> None:
    code, frames = _serve(venvs["tflite-numpy2"], [_cell("a", models, "float32")])
    assert code == 3 and [f["type"] for f in frames] == ["fatal"]
    assert "numpy<2" in frames[0]["error"] and "tflite-runtime 2.14.0" in frames[0]["error"]
    assert frames[0]["env"]["numpy"].startswith("2.")
    done = _standalone(venvs["tflite-numpy2"], str(models / "float32.tflite"))
    assert done.returncode == 3 and "numpy<2" in done.stderr and "Traceback" not in done.stderr


def test_python_without_any_runtime_is_an_environment_error(venvs: dict[str, Path], models: Path) -> None:
    code, frames = _serve(venvs["bare"], [_cell("a", models, "float32")])
    assert code == 3 and [f["type"] for f in frames] == ["fatal"]
    assert "no TFLite runtime importable" in frames[0]["error"] and "pip install ai-edge-litert" in frames[0]["error"]
    assert frames[0]["env"]["numpy"] is None and frames[0]["env"]["runtime"] is None
