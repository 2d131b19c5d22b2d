"""What breaks, per variant: converter errors explained, and the converted file checked against the source model.

The four classic failures: unsupported ops (converter error), custom layers and
custom ops, input/output tensors that changed (dtype, quantization, shape,
names, order), and op versions too new for a device's runtime.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .compat import check
from .tflite_file import read_tflite

# Runtimes devices commonly have; each variant says whether it loads there.
KNOWN_RUNTIMES = (("tflite_runtime", "2.14.0"), ("ai_edge_litert", "2.3.0"))
QUANTIZED_VARIANTS = ("dynamic", "int8", "int16x8")
SAME_AS_FP32_FRACTION = 0.05


def _ops_after(label: str, text: str) -> list[str]:
    found = re.search(label + r":\s*([^\n]+)", text)
    return [op.strip() for op in found.group(1).split(",") if op.strip()] if found else []


def converter_failure(error: str) -> dict[str, Any]:
    """A short explanation of a converter error, naming the ops that have no TFLite builtin."""
    select = _ops_after("TF Select ops", error)
    custom = _ops_after("Custom ops", error)
    if select:
        summary = (f"ops with no TFLite builtin: {', '.join(select)}. They convert with SELECT_TF_OPS "
                   "(recipe select_tf_ops: true), but Flex ops do not run on the tflite-runtime or ai-edge-litert "
                   "wheels devices have")
    elif custom:
        summary = (f"ops with no TFLite builtin nor TF Select kernel: {', '.join(custom)}; only allow_custom_ops "
                   "converts them, and a device then needs a runtime that provides them")
    else:
        lines = [ln.strip() for ln in error.splitlines() if ln.strip() and not ln.strip().startswith("<unknown>")]
        summary = (lines[-1] if lines else error)[:400]
    return {"summary": summary, "unsupported_ops": select + custom, "select_tf_ops_would_convert": bool(select)
            if (select or custom) else None}


def model_load_failure(error: str) -> str:
    """Keras's 'Could not locate class' buried in a long error, said plainly with what to pass."""
    missing = re.search(r"Could not locate (?:class|function) '([^']+)'", error)
    if missing:
        return (f"the model uses custom class {missing.group(1)!r}: pass --custom-objects FILE.py "
                f"(a Python file defining {missing.group(1)})")
    return error[-800:]


def _io_changes(source: list[dict[str, Any]], converted: list[dict[str, Any]], kind: str) -> list[str]:
    changes = []
    by_name = {t["name"]: t for t in converted}
    for position, src in enumerate(source):
        tensor = by_name.get(src["name"])
        if tensor is None:
            changes.append(f"{kind} {src['name']!r} of the source model is missing (have: {', '.join(by_name)})")
            continue
        want = [-1 if d is None else d for d in src["shape"]]
        if src.get("dynamic") and want:
            want[0] = -1
        if want != tensor["shape_signature"]:
            changes.append(f"{kind} {src['name']!r} shape {tensor['shape_signature']} (source {want})")
        if tensor["dtype"] != src["dtype"]:
            how = (f" quantized with scale {tensor['scale']:.6g}, zero point {tensor['zero_point']}"
                   if tensor["scale"] else "")
            changes.append(f"{kind} {src['name']!r} is {tensor['dtype']}{how} (source {src['dtype']}): "
                           f"{'quantize inputs' if kind == 'input' else 'dequantize outputs'} with it")
        if converted.index(tensor) != position:
            changes.append(f"{kind} {src['name']!r} is at position {converted.index(tensor)} (source {position}): "
                           "match outputs by name, not position")
    extra = set(by_name) - {s["name"] for s in source}
    changes += [f"{kind} {name!r} is not in the source model" for name in sorted(extra)]
    return changes


def inspect_variant(path: Path, variant: str, source_io: dict[str, Any]) -> dict[str, Any]:
    """Ops, versions, custom ops, I/O changes and per-runtime loadability of one converted file."""
    info = read_tflite(path)
    compat = {f"{name} {version}": check(info, name, version).to_dict() for name, version in KNOWN_RUNTIMES}
    warnings = []
    fraction = info.quantized_weight_fraction
    if variant in QUANTIZED_VARIANTS and fraction is not None and fraction < SAME_AS_FP32_FRACTION:
        warnings.append("same_as_fp32")
    if variant == "fp16" and not info.weights.get("float16"):
        warnings.append("same_as_fp32")
    if info.custom_ops:
        warnings.append("custom_ops")
    if info.flex_ops:
        warnings.append("flex_ops")
    return {
        "ops": {c.name: c.version for c in info.operator_codes},
        "op_counts": info.op_counts,
        "min_runtime_version": info.min_runtime_version,
        "custom_ops": info.custom_ops,
        "flex_ops": info.flex_ops,
        "quantized_weight_fraction": fraction,
        "inputs": [t.to_dict() for t in info.inputs],
        "outputs": [t.to_dict() for t in info.outputs],
        "io_changes": _io_changes(source_io["inputs"], [t.to_dict() for t in info.inputs], "input")
        + _io_changes(source_io["outputs"], [t.to_dict() for t in info.outputs], "output"),
        "compatibility": compat,
        "warnings": warnings,
    }
