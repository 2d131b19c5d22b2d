"""How far a variant's outputs are from the reference model's, output by output, matched by name.

Every number is a plain float ready for JSON, never NaN or Infinity:
- snr_db = 10*log10(signal power / error power), clamped to [-SNR_CAP_DB, SNR_CAP_DB]. +SNR_CAP_DB means
  "no measurable error" (identical outputs); -SNR_CAP_DB means a zero reference with a non-zero variant.
- cosine of two all-zero outputs is 1.0; of an all-zero and a non-zero output, 0.0.
- top1_agreement is the share of rows whose argmax over the last axis agrees, for classifier-shaped
  outputs only ([N, C] or [N, 1, ..., C] with C > 1), else None.
An output that cannot be compared (missing on one side, shape mismatch, non-numeric, empty, non-finite
values) has every metric None and says why in "error".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

SNR_CAP_DB = 150.0  # beyond float32 resolution (~7 significant digits, ~140 dB): "no measurable error"
_METRICS = ("cosine", "snr_db", "max_abs_err", "mean_abs_err", "top1_agreement")


def dequantize(array: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer tensor -> float32 real values, (q - zero_point) * scale; other arrays just become float32."""
    a = np.asarray(array)
    if a.dtype.kind in "iu" and scale:
        return ((a.astype(np.float64) - zero_point) * scale).astype(np.float32)
    return a.astype(np.float32)


def quantize(array: np.ndarray, scale: float, zero_point: int, dtype: npt.DTypeLike) -> np.ndarray:
    """Real values -> integer dtype, round(x / scale) + zero_point, saturated to the dtype's range."""
    target = np.dtype(dtype)
    if target.kind not in "iu" or not scale:
        return np.asarray(array).astype(target)
    info = np.iinfo(target)
    q = np.round(np.asarray(array, dtype=np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(target)


def _empty(error: str) -> dict[str, Any]:
    return {**dict.fromkeys(_METRICS), "error": error}


def _is_classifier(shape: tuple[int, ...]) -> bool:
    return len(shape) >= 2 and shape[-1] > 1 and all(d == 1 for d in shape[1:-1])


def _compare_one(ref: np.ndarray, out: np.ndarray) -> dict[str, Any]:
    if ref.shape != out.shape:
        return _empty(f"shape {list(out.shape)} differs from the reference's {list(ref.shape)}")
    for side, a in (("reference", ref), ("variant", out)):
        if a.dtype.kind not in "biuf":
            return _empty(f"{side} output is not numeric ({a.dtype})")
    if ref.size == 0:
        return _empty("empty output")
    r = ref.astype(np.float64).ravel()
    o = out.astype(np.float64).ravel()
    for side, a in (("reference", r), ("variant", o)):
        bad = int(np.count_nonzero(~np.isfinite(a)))
        if bad:
            return _empty(f"{side} output has {bad} non-finite values")
    with np.errstate(over="ignore"):  # overflow becomes inf, refused just below
        abs_err = np.abs(o - r)
        max_abs, mean_abs = float(abs_err.max()), float(abs_err.mean())
    if not (math.isfinite(max_abs) and math.isfinite(mean_abs)):
        return _empty("values too large to compare")
    # SNR and cosine do not change with scale; dividing by the largest magnitude keeps the sums finite.
    scale = max(float(np.abs(r).max()), float(np.abs(o).max())) or 1.0
    r, o = r / scale, o / scale
    err = o - r
    signal, noise = float(np.dot(r, r)), float(np.dot(err, err))
    if noise == 0.0:
        snr = SNR_CAP_DB
    elif signal == 0.0:
        snr = -SNR_CAP_DB
    else:
        snr = min(max(10.0 * math.log10(signal / noise), -SNR_CAP_DB), SNR_CAP_DB)
    power = float(np.dot(o, o))
    if signal == 0.0 or power == 0.0:
        cosine = 1.0 if signal == power else 0.0  # both all-zero: identical
    else:
        cosine = min(max(float(np.dot(r, o)) / (math.sqrt(signal) * math.sqrt(power)), -1.0), 1.0)
    top1 = None
    if _is_classifier(ref.shape):
        rows = ref.shape[0]
        agree = np.argmax(ref.reshape(rows, -1), axis=1) == np.argmax(out.reshape(rows, -1), axis=1)
        top1 = float(np.mean(agree))
    return {"cosine": cosine, "snr_db": snr, "max_abs_err": max_abs, "mean_abs_err": mean_abs,
            "top1_agreement": top1, "error": None}


def compare(reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """{output name: {"cosine", "snr_db", "max_abs_err", "mean_abs_err", "top1_agreement", "error"}}.

    Names on one side only appear too, with metrics None and the reason in "error".
    """
    result: dict[str, dict[str, Any]] = {}
    for name in sorted(set(reference) | set(outputs)):
        if name not in outputs:
            result[name] = _empty("missing from the variant's outputs")
        elif name not in reference:
            result[name] = _empty("not among the reference outputs")
        else:
            result[name] = _compare_one(np.asarray(reference[name]), np.asarray(outputs[name]))
    return result
