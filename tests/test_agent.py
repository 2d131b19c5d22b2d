"""The device agent: standalone mode, the serve protocol, and crash/hang isolation with a real runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.fleet.protocol import check_cell, encode_job, read_frame
from harness.fleet.shipping import agent_zip


def _standalone(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "device_agent", *args], capture_output=True, text=True, timeout=120)


def test_standalone_json_like_the_runtime_benchmark_tool(converted: Path) -> None:
    done = _standalone(str(converted / "fp32.tflite"), "--runs", "30", "--min-seconds", "0", "--warmup", "2",
                       "--threads", "1", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "ok"
    assert result["runtime"]["name"] == "ai_edge_litert"
    assert result["latency_ms"]["count"] == len(result["samples_ms"]) >= 30
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p90"] <= result["latency_ms"]["max"]
    assert result["init_ms"] > 0 and result["first_inference_ms"] > 0
    assert result["peak_rss_mb"] > 10
    assert result["model_bytes"] == (converted / "fp32.tflite").stat().st_size
    assert result["threads"] == 1
    assert result["inputs"][0]["name"] == "image" and result["inputs"][0]["shape"] == [1, 16, 16, 3]


def test_standalone_text_output_and_bad_model(tmp_path: Path, converted: Path) -> None:
    done = _standalone(str(converted / "int8.tflite"), "--runs", "5", "--min-seconds", "0")
    assert done.returncode == 0 and "p50=" in done.stdout
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes((converted / "fp32.tflite").read_bytes()[:300])
    done = _standalone(str(corrupt), "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["status"] == "failed_to_load" and result["error"]
    assert _standalone(str(tmp_path / "missing.tflite")).returncode == 2


def _serve(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the shipped agent zip in serve mode, as the host does, and read every frame."""
    proc = subprocess.run([sys.executable, str(agent_zip()), "serve"], input=encode_job(cells, "auto"),
                          capture_output=True, timeout=120)
    import io

    stream = io.BytesIO(proc.stdout)
    frames = []
    while (frame := read_frame(stream)) is not None:
        frames.append(frame)
    return frames


def _cell(cid: str, model: Path, **extra: Any) -> dict[str, Any]:
    return {"id": cid, "model_path": str(model), "runs": 5, "min_seconds": 0, "warmup": 1, "warmup_seconds": 0,
            "max_runs": 100, "threads": 1, **extra}


def test_a_crashing_model_is_one_failed_cell_and_the_rest_go_on(converted: Path, native_lib: Path) -> None:
    model = converted / "fp32.tflite"
    frames = _serve([
        _cell("before", model),
        _cell("segv", model, delegate={"name": "bad", "library": str(native_lib), "options": {"mode": "segv"}}),
        _cell("abort", model, delegate={"name": "bad", "library": str(native_lib), "options": {"mode": "abort"}}),
        _cell("hang", model, cell_timeout_s=2,
              delegate={"name": "bad", "library": str(native_lib), "options": {"mode": "hang"}}),
        _cell("after", model),
    ])
    assert [f["type"] for f in frames] == ["hello", "cell", "cell", "cell", "cell", "cell", "done"]
    cells = {f["id"]: check_cell(f, f["id"]) for f in frames if f["type"] == "cell"}
    assert cells["before"]["status"] == "ok" and cells["after"]["status"] == "ok"
    assert cells["segv"]["status"] == "crashed" and "SIGSEGV" in cells["segv"]["error"]
    assert cells["abort"]["status"] == "crashed" and "SIGABRT" in cells["abort"]["error"]
    assert cells["hang"]["status"] == "timeout"
    assert frames[0]["env"]["runtime"]["name"] == "ai_edge_litert"
    assert cells["after"]["thermal_before"] is not None


def test_eval_outputs_are_matched_by_signature_name(converted: Path) -> None:
    frames = _serve([_cell("eval", converted / "int8.tflite", eval_inputs=str(converted / "eval_inputs.npz"))])
    cell = check_cell(frames[1], "eval")
    assert cell["status"] == "ok", cell
    (name, array), = cell["eval_outputs"].items()
    assert name == "output_0" and array.shape[0] >= 1 and array.shape[-1] == 5
    assert abs(float(array.sum(axis=-1).mean()) - 1.0) < 0.05  # dequantized softmax, not raw int8


def test_a_bad_job_frame_gets_a_fatal_frame() -> None:
    proc = subprocess.run([sys.executable, str(agent_zip()), "serve"], input=b"hello\n", capture_output=True, timeout=60)
    import io

    frame = read_frame(io.BytesIO(proc.stdout))
    assert proc.returncode == 2 and frame is not None and frame["type"] == "fatal"
