"""Accuracy metrics: exact values on known arrays, JSON-safe always, and sane on real converted variants."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from tests.support.tflite_models import convert_test_models, interpreter

from harness.results.accuracy import SNR_CAP_DB, compare, dequantize, quantize
from harness.conversion.tflite_file import read_tflite


def metrics(ref: np.ndarray, out: np.ndarray) -> dict[str, float | None]:
    result = compare({"y": ref}, {"y": out})
    json.dumps(result, allow_nan=False)  # raises on NaN or Infinity
    return result["y"]


def test_identical_outputs() -> None:
    ref = np.random.default_rng(0).normal(size=(8, 10)).astype(np.float32)
    m = metrics(ref, ref.copy())
    assert m == {"cosine": pytest.approx(1.0), "snr_db": SNR_CAP_DB, "max_abs_err": 0.0, "mean_abs_err": 0.0,
                 "top1_agreement": 1.0, "error": None}


def test_known_noise_gives_known_snr() -> None:
    ref = np.ones(1000)
    exact = metrics(ref, ref + 0.1 * np.resize([1.0, -1.0], 1000))  # noise power exactly 1% of signal power
    assert exact["snr_db"] == pytest.approx(20.0, abs=1e-9)
    assert exact["max_abs_err"] == pytest.approx(0.1) and exact["mean_abs_err"] == pytest.approx(0.1)
    assert exact["cosine"] == pytest.approx(1 / math.sqrt(1.01))

    rng = np.random.default_rng(1)
    signal = rng.normal(size=200_000)
    noisy = metrics(signal, signal + rng.normal(scale=0.01, size=signal.size))  # 40 dB
    assert noisy["snr_db"] == pytest.approx(40.0, abs=0.1)
    assert noisy["cosine"] == pytest.approx(1.0, abs=1e-3)


def test_cosine_directions() -> None:
    assert metrics(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))["cosine"] == pytest.approx(0.0)
    opposite = metrics(np.array([[1.0, 2.0]]), np.array([[-1.0, -2.0]]))
    assert opposite["cosine"] == pytest.approx(-1.0) and opposite["top1_agreement"] == 0.0
    assert opposite["snr_db"] == pytest.approx(10 * math.log10(5 / 20))


def test_zero_outputs_stay_finite() -> None:
    zeros = np.zeros((2, 4), np.float32)
    both = metrics(zeros, zeros)
    assert both["cosine"] == 1.0 and both["snr_db"] == SNR_CAP_DB
    one = metrics(zeros, zeros + 0.5)
    assert one["cosine"] == 0.0 and one["snr_db"] == -SNR_CAP_DB and one["max_abs_err"] == 0.5
    tiny = metrics(np.full(4, 1e-300), np.full(4, 2e-300))  # squares underflow without rescaling
    assert tiny["snr_db"] == pytest.approx(0.0) and tiny["cosine"] == pytest.approx(1.0)
    huge = metrics(np.full(4, 1e300), np.full(4, -1.5e308))
    assert huge["error"] == "values too large to compare" and huge["snr_db"] is None


def test_top1_agreement_for_classifier_shapes() -> None:
    ref = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    out = np.array([[0.2, 0.6, 0.2], [0.4, 0.5, 0.1], [0.1, 0.1, 0.8], [0.1, 0.2, 0.7]])  # row 1 disagrees
    assert metrics(ref, out)["top1_agreement"] == 0.75
    assert metrics(ref.reshape(4, 1, 1, 3), out.reshape(4, 1, 1, 3))["top1_agreement"] == 0.75
    assert metrics(ref.reshape(12), out.reshape(12))["top1_agreement"] is None  # rank 1: not a batch of rows
    assert metrics(ref.reshape(12, 1), out.reshape(12, 1))["top1_agreement"] is None  # one value per row
    assert metrics(ref.reshape(2, 2, 3), out.reshape(2, 2, 3))["top1_agreement"] is None  # a sequence


def test_names_matched_and_mismatches_reported() -> None:
    a, b = np.arange(6.0).reshape(2, 3), np.arange(3.0)
    result = compare({"probs": a, "embedding": b, "extra_ref": b},
                     {"embedding": b, "probs": a, "extra_out": b})  # order differs: matched by name
    json.dumps(result, allow_nan=False)
    assert result["probs"]["max_abs_err"] == 0.0 and result["embedding"]["error"] is None
    assert result["extra_ref"]["error"] == "missing from the variant's outputs"
    assert result["extra_out"]["error"] == "not among the reference outputs"
    assert result["extra_out"]["cosine"] is None

    bad = compare({"y": a, "n": np.array([1.0, np.nan]), "s": np.array(["a"]), "e": np.zeros((0, 3))},
                  {"y": a.reshape(3, 2), "n": np.array([1.0, 2.0]), "s": np.array(["a"]), "e": np.zeros((0, 3))})
    assert bad["y"]["error"] == "shape [3, 2] differs from the reference's [2, 3]"
    assert bad["n"]["error"] == "reference output has 1 non-finite values"
    assert bad["s"]["error"].startswith("reference output is not numeric")
    assert bad["e"]["error"] == "empty output"
    assert all(v is None for entry in bad.values() for k, v in entry.items() if k != "error")
    json.dumps(bad, allow_nan=False)


def test_quantize_and_dequantize() -> None:
    q = quantize(np.array([-70.0, -1.0, 0.0, 0.26, 70.0]), scale=0.5, zero_point=-3, dtype=np.int8)
    assert q.dtype == np.int8 and q.tolist() == [-128, -5, -3, -2, 127]  # saturates at the int8 range
    assert dequantize(q, 0.5, -3).tolist() == [-62.5, -1.0, 0.0, 0.5, 65.0]
    assert dequantize(q, 0.5, -3).dtype == np.float32
    floats = np.array([0.25, 1.5], np.float64)
    assert dequantize(floats, 0.5, 3).tolist() == [0.25, 1.5]  # float tensors are not quantized
    assert quantize(floats, 0.0, 0, np.float32).dtype == np.float32


def test_real_variants_against_fp32(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Run fp32, dynamic-range and int8 MLPs on the real interpreter; compare by signature output name."""
    models = convert_test_models(tmp_path_factory)
    x = np.random.default_rng(2).uniform(-1, 1, (16, 32)).astype(np.float32)

    def run(path: Path) -> dict[str, np.ndarray]:
        info = read_tflite(path)
        (inp,) = info.inputs
        runner = interpreter(path).get_signature_runner(info.signatures[0].key)
        outputs = runner(**{inp.name: quantize(x, inp.scale, inp.zero_point, inp.dtype)})
        by_name = {o.name: o for o in info.outputs}
        return {k: dequantize(v, by_name[k].scale, by_name[k].zero_point) for k, v in outputs.items()}

    reference = run(models["mlp_fp32"])
    for variant, min_snr in (("mlp_dynamic", 25.0), ("mlp_int8", 15.0)):
        result = compare(reference, run(models[variant]))
        json.dumps(result, allow_nan=False)
        (m,) = result.values()
        assert m["error"] is None
        assert m["cosine"] > 0.99 and m["snr_db"] > min_snr and m["snr_db"] < SNR_CAP_DB
        assert m["top1_agreement"] is not None and m["top1_agreement"] >= 0.75
        assert 0 < m["mean_abs_err"] <= m["max_abs_err"] < 0.1
