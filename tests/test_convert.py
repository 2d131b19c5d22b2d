"""`edgebench convert` with real TensorFlow: variants, manifest, and the diagnostics of what breaks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.cli import run_cli


def _manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def test_all_variants_with_manifest_diagnostics_and_accuracy(converted: Path) -> None:
    m = _manifest(converted)
    assert m["schema_version"] == 1 and m["tensorflow"]
    assert list(m["variants"]) == ["fp32", "fp16", "dynamic", "int8", "int16x8"]
    fp32 = m["variants"]["fp32"]
    assert fp32["status"] == "ok" and len(fp32["sha256"]) == 64 and fp32["bytes"] == (converted / "fp32.tflite").stat().st_size
    (acc,) = fp32["accuracy"].values()
    assert acc["cosine"] > 0.9999 and acc["top1_agreement"] == 1.0
    # The dynamic batch dimension survives as -1 in the shape signature.
    assert fp32["diagnostics"]["inputs"][0]["shape_signature"] == [-1, 16, 16, 3]
    # Full-integer I/O is a listed change with its scale and zero point; random calibration is loud.
    int8 = m["variants"]["int8"]
    assert any("int8 quantized with scale" in c for c in int8["diagnostics"]["io_changes"])
    assert "random_calibration" in int8["warnings"] and m["calibration"]["kind"] == "random"
    # Dynamic-range quantization leaves this small model's weights float: flagged, not silently "quantized".
    assert "same_as_fp32" in m["variants"]["dynamic"]["warnings"]
    assert "same_as_fp32" not in int8["warnings"]


def test_warm_conversion_is_cached(keras_models: dict[str, Path], converted: Path, tmp_path: Path) -> None:
    result = run_cli("convert", keras_models["cnn"], "-o", tmp_path / "again")
    assert result.code == 0, result.err
    again = _manifest(tmp_path / "again")
    assert all(v["status"] == "ok" and v["cached"] for v in again["variants"].values())
    assert again["variants"]["fp32"]["sha256"] == _manifest(converted)["variants"]["fp32"]["sha256"]


def test_outputs_matched_by_name(keras_models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "two"
    assert run_cli("convert", keras_models["two_heads"], "-o", out, "--variants", "fp32,int8").code == 0
    m = _manifest(out)
    names = {o["name"] for o in m["outputs"]}
    assert len(names) == 2
    for variant in ("fp32", "int8"):
        entry = m["variants"][variant]
        assert set(entry["accuracy"]) == names  # every output compared with the reference output of the same name
        assert {o["name"] for o in entry["diagnostics"]["outputs"]} == names
    assert all(a["cosine"] > 0.9999 for a in m["variants"]["fp32"]["accuracy"].values())


def test_custom_layer_and_unsupported_op(keras_models: dict[str, Path], tmp_path: Path) -> None:
    missing = run_cli("convert", keras_models["det"], "-o", tmp_path / "a")
    assert missing.code == 2 and "'Det'" in missing.err and "--custom-objects" in missing.err
    result = run_cli("convert", keras_models["det"], "-o", tmp_path / "b", "--variants", "fp32",
                     "--custom-objects", keras_models["det_layer"])
    assert result.code == 3
    fp32 = _manifest(tmp_path / "b")["variants"]["fp32"]
    assert fp32["status"] == "conversion_failed"
    assert fp32["diagnostics"]["unsupported_ops"] == ["MatrixDeterminant"]
    assert fp32["diagnostics"]["select_tf_ops_would_convert"] is True
    assert "SELECT_TF_OPS" in fp32["error"] and "Flex" in fp32["error"]


@pytest.mark.parametrize("source", ["cnn_legacy", "keras2", "cnn_saved_model"])
def test_legacy_h5_and_savedmodel_convert(keras_models: dict[str, Path], tmp_path: Path, source: str) -> None:
    result = run_cli("convert", keras_models[source], "-o", tmp_path / "out", "--variants", "fp32")
    assert result.code == 0, result.err
    fp32 = _manifest(tmp_path / "out")["variants"]["fp32"]
    assert fp32["status"] == "ok" and next(iter(fp32["accuracy"].values()))["cosine"] > 0.9999


def test_mobilenet_failures_are_marked_variants(keras_models: dict[str, Path], tmp_path: Path) -> None:
    noise = tmp_path / "noise.npy"
    np.save(noise, np.random.default_rng(0).uniform(-1, 1, (16, 96, 96, 3)).astype(np.float32))
    result = run_cli("convert", keras_models["mobilenet"], "-o", tmp_path / "mb", "--variants", "dynamic,int16x8",
                     "--calibration", noise)
    assert result.code == 3
    variants = _manifest(tmp_path / "mb")["variants"]
    # Converts, but LiteRT refuses to prepare it: marked, with the runtime's message.
    assert variants["int16x8"]["status"] == "failed_to_prepare"
    assert "failed to prepare" in variants["int16x8"]["error"] and "host validation" in variants["int16x8"]["error"]
    # TF 2.21's dynamic-range kernels are too new for tflite-runtime 2.14 (FULLY_CONNECTED v12 / CONV_2D v5).
    compat = variants["dynamic"]["diagnostics"]["compatibility"]
    assert compat["tflite_runtime 2.14.0"]["loadable"] is False
    assert "version" in compat["tflite_runtime 2.14.0"]["problems"][0]
    assert compat["ai_edge_litert 2.3.0"]["loadable"] is True
    assert variants["dynamic"]["status"] == "ok"
    # Not shipped by default: the run's cell carries the host's verdict. --ship-failed measures it anyway.
    store = tmp_path / "s.sqlite"
    run_cli("run", "--models", tmp_path / "mb", "--devices", "local", "--store", store, "--runs", "3", "-q")
    cells = {c["variant"]: c for c in json.loads(run_cli("export", "--store", store).out)["results"]}
    assert cells["int16x8"]["status"] == "failed_to_prepare" and cells["int16x8"]["runtime"] is None
    run_cli("run", "--models", tmp_path / "mb", "--devices", "local", "--store", store, "--runs", "3",
            "--ship-failed", "-q")
    cells = {c["variant"]: c for c in json.loads(run_cli("export", "--store", store).out)["results"]}
    assert cells["int16x8"]["status"] == "failed_to_prepare" and cells["int16x8"]["runtime"]["name"] == "ai_edge_litert"


def test_bad_inputs_keep_the_other_variants(keras_models: dict[str, Path], tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((4, 8, 8, 3), np.float32))
    result = run_cli("convert", keras_models["cnn"], "-o", tmp_path / "c", "--variants", "fp32,int8",
                     "--calibration", wrong)
    assert result.code == 3
    m = _manifest(tmp_path / "c")
    assert m["variants"]["fp32"]["status"] == "ok"
    assert m["variants"]["int8"]["status"] == "conversion_failed"
    assert "[8, 8, 3]" in m["variants"]["int8"]["error"] and "[16, 16, 3]" in m["variants"]["int8"]["error"]
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(keras_models["cnn"].read_bytes()[:500])
    bad = run_cli("convert", truncated, "-o", tmp_path / "d")
    assert bad.code == 2 and "cannot load the model" in bad.err and str(truncated) in bad.err
    assert run_cli("convert", keras_models["cnn"], "--variants", "fp64").code == 2


def test_edgetpu_variant_without_the_compiler_says_what_to_install(converted: Path, keras_models: dict[str, Path],
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   store: Path) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no edgetpu_compiler here (Coral's apt repository is unreachable)
    out = tmp_path / "tpu"
    assert run_cli("convert", keras_models["cnn"], "-o", out, "--variants", "edgetpu").code == 3
    variants = _manifest(out)["variants"]
    assert variants["int8"]["status"] == "ok"
    assert variants["edgetpu"]["status"] == "conversion_failed" and "edgetpu-compiler" in variants["edgetpu"]["error"]
    # On a device without libedgetpu, an Edge TPU model is a failed cell naming the delegate, not a crash.
    tpu_dir = tmp_path / "models" / "cnn"
    tpu_dir.mkdir(parents=True)
    manifest = _manifest(converted)
    manifest["variants"] = {"edgetpu": {**manifest["variants"]["int8"], "file": "edgetpu.tflite"}}
    (tpu_dir / "manifest.json").write_text(json.dumps(manifest))
    (tpu_dir / "edgetpu.tflite").write_bytes((converted / "int8.tflite").read_bytes())
    for extra in ("eval_inputs.npz", "reference_outputs.npz"):
        (tpu_dir / extra).write_bytes((converted / extra).read_bytes())
    assert run_cli("run", "--models", tpu_dir, "--devices", "local", "--store", store, "-q").code == 3
    (cell,) = json.loads(run_cli("export", "--store", store).out)["results"]
    assert cell["status"] == "failed_to_load" and "libedgetpu" in cell["error"]


def _png(path: Path, pixels: np.ndarray) -> None:
    """A minimal RGB PNG writer, so the test needs no imaging library."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].astype(np.uint8).tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_recipes_and_image_folder_calibration(keras_models: dict[str, Path], tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    for i in range(6):  # other sizes than the model's 16x16: resized on the way in
        _png(images / f"{i}.png", rng.integers(0, 256, (24 + i, 20, 3)))
    recipes = tmp_path / "recipes.yaml"
    recipes.write_text("recipes:\n  int8_uint8:\n    base: int8\n    io_type: uint8\n")
    out = tmp_path / "r"
    result = run_cli("convert", keras_models["cnn"], "-o", out, "--variants", "fp32,int8_uint8",
                     "--calibration", images, "--image-range", "0,1", "--recipes", recipes)
    assert result.code == 0, result.err + result.out
    m = _manifest(out)
    assert m["calibration"]["kind"] == "file" and m["calibration"]["image_range"] == [0.0, 1.0]
    entry = m["variants"]["int8_uint8"]
    assert "random_calibration" not in entry["warnings"]
    assert entry["diagnostics"]["inputs"][0]["dtype"] == "uint8"
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipes:\n  weird:\n    base: int4\n")
    err = run_cli("convert", keras_models["cnn"], "--recipes", bad, "--variants", "weird")
    assert err.code == 2 and f"{bad}:3" in err.err


def test_a_converter_process_that_dies_is_reported_with_its_last_words(keras_models: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    killer = tmp_path / "layers.py"
    killer.write_text("import os, sys\nprint('loading my layers', file=sys.stderr, flush=True)\nos.abort()\n")
    result = run_cli("convert", keras_models["cnn"], "-o", tmp_path / "x", "--custom-objects", killer)
    assert result.code == 2, result.err
    assert "converter process died (signal 6)" in result.err and "loading my layers" in result.err
    assert "Traceback" not in result.err
