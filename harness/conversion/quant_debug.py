"""The doctor's TensorFlow steps (run in a converter process, harness.conversion.worker): where quantization
loses accuracy, re-quantization with layers kept in float, and task accuracy against labels.

Localisation has two methods, both reporting per tensor (an op's output) and the op that produced it:
- ``debugger`` (int8): tf.lite.experimental.QuantizationDebugger on a model quantized with NumericVerify ops.
  Each quantized op's output is compared with the float op run on the same (dequantized) inputs, so the
  error is the one this op adds, not the error it inherits. Metrics: ``rmse_per_scale`` (RMSE of the
  difference / the tensor's quantization scale; ~0.289 = 1/sqrt(12) is pure rounding noise, more means the
  op adds error beyond rounding), ``snr_db`` (whole tensor) and ``channel_snr_db`` (median over the last
  axis: a tensor whose range one outlier channel stretches has a fine whole-tensor SNR and ~0 dB here).
- ``compare`` (int16x8, dynamic, or when the debugger fails): the float and the quantized .tflite run side
  by side with every intermediate tensor kept (``experimental_preserve_all_tensors``), tensors matched by
  name. Errors accumulate along the graph, so ops are ranked by ``snr_drop_db``: how much channel SNR is
  lost between an op's inputs and its output.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..common.errors import EdgebenchError

SNR_CAP_DB = 150.0
MAX_SAMPLES = 16
NO_LOSS_DB = 0.1


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: a metric with no value (e.g. averaged over nothing) is None."""
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _snr_db(signal: float, noise: float) -> float:
    if noise <= 0.0:
        return SNR_CAP_DB
    if signal <= 0.0:
        return -SNR_CAP_DB
    return max(-SNR_CAP_DB, min(SNR_CAP_DB, 10.0 * math.log10(signal / noise)))


def _snrs(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """(whole-tensor SNR, median per-channel SNR) in dB; channels are the last axis."""
    r = np.asarray(ref, np.float64).reshape(-1, ref.shape[-1] if ref.ndim else 1)
    g = np.asarray(got, np.float64).reshape(r.shape)
    signal, noise = (r**2).sum(0), ((g - r) ** 2).sum(0)
    channels = [_snr_db(float(s), float(n)) for s, n in zip(signal, noise)]
    return _snr_db(float(signal.sum()), float(noise.sum())), float(np.median(channels))


def _dequantize(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail.get("quantization") or (0.0, 0)
    if array.dtype.kind in "iu" and scale:
        return (array.astype(np.float64) - zero_point) * scale
    return array.astype(np.float64)


def _quantize_input(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail.get("quantization") or (0.0, 0)
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "iu" and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(array / scale) + zero_point, info.min, info.max).astype(dtype)
    return array.astype(dtype)


def _samples(path: Path, limit: int = MAX_SAMPLES) -> dict[str, np.ndarray]:
    data = np.load(path, allow_pickle=False)
    return {k: data[k][:limit] for k in data.files}


def _input_name(tensor: str) -> str:
    """The signature's name of a TFLite input tensor: ``serving_default_image:0`` -> ``image``."""
    return re.sub(r":\d+$", "", re.sub(r"^serving_default_", "", tensor))


def _suffix_of(name: str, key: str) -> bool:
    return name.endswith(f"_{key}") or key.endswith(f"_{name}")


def _ordered(samples: dict[str, np.ndarray], details: list[dict[str, Any]]) -> list[np.ndarray]:
    """Sample arrays in the interpreter's input order: by exact (signature) name, then by a suffix that picks one
    array for one input and for no other, by position only when the arrays have no names (np.savez's arr_N).
    Suffixes alone once gave ``image``'s array to ``thermal_image`` too: same shape, no error, wrong answers."""
    names = [_input_name(d["name"]) for d in details]
    if samples and all(re.fullmatch(r"arr_\d+", k) for k in samples) and len(samples) == len(details):
        return [samples[k] for k in sorted(samples, key=lambda k: int(k[4:]))]
    chosen = {i: n for i, n in enumerate(names) if n in samples}
    left = [k for k in samples if k not in chosen.values()]
    pairs = [(i, k) for i in range(len(names)) if i not in chosen for k in left if _suffix_of(names[i], k)]
    chosen.update((i, k) for i, k in pairs if [p[0] for p in pairs].count(i) == [p[1] for p in pairs].count(k) == 1)
    keys = list(chosen.values())
    bad = [n for i, n in enumerate(names) if i not in chosen or keys.count(chosen[i]) > 1]
    if bad:
        raise EdgebenchError(f"the sample arrays ({', '.join(samples)}) do not match the model's inputs "
                             f"({', '.join(names)}) one to one: no single array for {', '.join(bad)}; "
                             "name each array after its input")
    return [samples[chosen[i]] for i in range(len(names))]


def _interpreter(content: bytes | None = None, path: str | None = None, keep_all: bool = False) -> Any:
    """A TFLite interpreter without XNNPACK: a delegate would replace the ops this module looks at."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(
        model_content=content, model_path=path, experimental_preserve_all_tensors=keep_all,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


def graph(calibrated: bytes) -> list[dict[str, Any]]:
    """Every op of the float (calibrated) model: its type and its input and output tensor names."""
    interpreter = _interpreter(calibrated)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    return [{"op": op["op_name"], "inputs": [names[i] for i in op["inputs"] if i in names],
             "outputs": [names[i] for i in op["outputs"] if i in names]}
            for op in interpreter._get_ops_details()]  # the debugger itself reads ops this way


def _debugger(calibrated: bytes, samples: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    import tensorflow as tf
    from tensorflow.lite.python import convert

    debug_model = convert.mlir_quantize(calibrated, enable_numeric_verify=True)
    details = _interpreter(debug_model).get_input_details()
    inputs = _ordered(samples, details)
    count = min(len(a) for a in inputs)

    def dataset() -> Iterator[list[np.ndarray]]:
        for i in range(count):
            yield [a[i : i + 1] for a in inputs]

    def snr(kind: int) -> Callable[[np.ndarray, np.ndarray, float, int], float]:
        return lambda f, q, scale, zp: _snrs(f, (q.astype(np.float64) - zp) * scale)[kind]

    options = tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={"snr_db": snr(0), "channel_snr_db": snr(1)})
    debugger = tf.lite.experimental.QuantizationDebugger(quant_debug_model_content=debug_model,
                                                         debug_dataset=dataset, debug_options=options)
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    out = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row["scale"])
        rmse = math.sqrt(max(float(row["mean_squared_error"]), 0.0))
        out.append({"tensor": row["tensor_name"], "op": row["op_name"], "metrics": {
            "rmse_per_scale": _finite(rmse / scale) if scale else None, "scale": _finite(scale),
            "snr_db": _finite(float(row["snr_db"])), "channel_snr_db": _finite(float(row["channel_snr_db"]))}})
    return out


def _compare(float_file: str, variant_file: str, samples: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    ref, got = _interpreter(path=float_file, keep_all=True), _interpreter(path=variant_file, keep_all=True)
    ref_tensors = {t["name"]: t for t in ref.get_tensor_details()}
    every_op = got._get_ops_details()
    # activations only: constant tensors (weights, per-channel biases) are not compared, nor are they an op's
    # inherited error (their per-axis scales are not in ``quantization``)
    activations = {i for op in every_op for i in op["outputs"]} | {d["index"] for d in got.get_input_details()}
    got_tensors = {t["index"]: t for t in got.get_tensor_details() if t["index"] in activations}
    ops = [op for op in every_op if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")]
    # a QUANTIZE the float model lacks: its output is compared with the float tensor it quantizes
    names = {t["index"]: t["name"] for t in got.get_tensor_details()}
    twin_of = {op["outputs"][0]: names[op["inputs"][0]] for op in every_op
               if op["op_name"] in ("QUANTIZE", "DEQUANTIZE") and len(op["inputs"]) and len(op["outputs"])}
    sums: dict[str, list[float]] = {}
    count = min(len(a) for a in samples.values())
    for i in range(count):
        for interpreter in (ref, got):
            for detail, array in zip(interpreter.get_input_details(),
                                     _ordered(samples, interpreter.get_input_details())):
                interpreter.set_tensor(detail["index"], _quantize_input(array[i : i + 1], detail))
            interpreter.invoke()
        for index, detail in got_tensors.items():
            twin = ref_tensors.get(detail["name"]) or ref_tensors.get(twin_of.get(index, ""))
            if twin is None or twin["shape"].tolist() != detail["shape"].tolist():
                continue
            a = _dequantize(ref.get_tensor(twin["index"]), twin)
            b = _dequantize(got.get_tensor(index), detail)
            snr, channel = _snrs(a, b)
            acc = sums.setdefault(detail["name"], [0.0, 0.0])
            acc[0] += snr / count
            acc[1] += channel / count
    out = []
    for op in ops:
        for index in op["outputs"]:
            name = got_tensors[index]["name"]
            if name not in sums:
                continue
            inherited = [sums[got_tensors[i]["name"]][1] for i in op["inputs"]
                         if i in got_tensors and got_tensors[i]["name"] in sums]
            before = min(inherited, default=SNR_CAP_DB)
            out.append({"tensor": name, "op": op["op_name"], "metrics": {
                "snr_db": sums[name][0], "channel_snr_db": sums[name][1],
                "snr_drop_db": max(0.0, before - sums[name][1])}})
    return out


def _failing_node(path: str, error: str) -> str:
    """'node 15 (DEPTHWISE_CONV_2D) writes TENSOR; ' for an interpreter error naming a node, else ''."""
    import tensorflow as tf

    found = re.search(r"Node number (\d+) \((\w+)\)", error)
    if not found:
        return ""
    interpreter = tf.lite.Interpreter(model_path=path)  # not allocated: the op list is all this needs
    ops = interpreter._get_ops_details()
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    index = int(found.group(1))
    outputs = [names.get(i, "?") for i in ops[index]["outputs"]] if index < len(ops) else []
    return f"node {index} ({found.group(2)}) writes {', '.join(outputs) or '?'}; "


def layer_names(source: str, custom_objects: str | None) -> tuple[list[str], list[str]]:
    """The Keras layer names (nested models included) of a Keras file, and its output layers; none for a SavedModel."""
    if Path(source).is_dir():
        return [], []
    import keras

    from .worker import _load_custom_objects

    model = keras.models.load_model(source, compile=False, custom_objects=_load_custom_objects(custom_objects))
    names, todo = [], list(model.layers)
    while todo:
        layer = todo.pop(0)
        names.append(layer.name)
        todo += list(getattr(layer, "layers", []))
    return names, [name for name in map(_output_layer, model.outputs) if name]


def _output_layer(tensor: Any) -> str | None:
    """The layer that makes a Keras 3 output tensor; for a nested model's output, that model's own output layer."""
    history = getattr(tensor, "_keras_history", None)
    while history is not None and hasattr(history, "operation"):
        inner = getattr(history.operation, "outputs", None) if hasattr(history.operation, "layers") else None
        if not inner:
            return str(history.operation.name)
        history = getattr(inner[history.tensor_index], "_keras_history", None)
    return None


def localise(calibrated: bytes, options: dict[str, Any]) -> dict[str, Any]:
    """Per-tensor quantization error of one variant, by the debugger (int8) or by comparison."""
    samples = _samples(Path(options["inputs"]))
    notes: list[str] = []
    names, outputs = layer_names(options["source"], options.get("custom_objects"))
    common = {"graph": graph(calibrated), "layer_names": names, "output_layers": outputs, "notes": notes}
    if options["variant"] == "int8":
        try:
            return {"method": "debugger", "tensors": _debugger(calibrated, samples), **common}
        except EdgebenchError:  # the inputs do not fit the model: the fallback would not fit them either
            raise
        except Exception as exc:  # e.g. an op the debug mode cannot instrument: fall back, and say so
            notes.append(f"QuantizationDebugger failed ({type(exc).__name__}: {str(exc)[:300]}); "
                         "compared the float and int8 files tensor by tensor instead")
    if not options.get("variant_file"):
        notes.append(f"cannot rank layers: the {options['variant']} variant did not convert, there is nothing to "
                     "compare with the float model")
        return {"method": "compare", "tensors": [], **common}
    try:
        tensors = _compare(options["float_file"], options["variant_file"], samples)
    except (RuntimeError, ValueError) as exc:  # e.g. a kernel refusing the quantized op at allocate_tensors
        notes.append(f"cannot rank layers: the {options['variant']} variant does not run on the host "
                     f"({_failing_node(options['variant_file'], str(exc))}{type(exc).__name__}: {str(exc)[:300]})")
        return {"method": "compare", "tensors": [], **common}
    if tensors and max(t["metrics"]["snr_drop_db"] for t in tensors) < NO_LOSS_DB:
        notes.append(f"no op of the {options['variant']} variant loses {NO_LOSS_DB} dB or more: the ranking is "
                     "noise (a small model's dynamic-range variant often keeps every weight float)")
    return {"method": "compare", "tensors": tensors, **common}


def requantize(calibrated: bytes, recipe: dict[str, Any]) -> bytes:
    """The calibrated model quantized to int8 with the recipe's op outputs left in float (no re-calibration)."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    io_type = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[recipe.get("io_type", "int8")]
    # as TFLiteConverter does for int8: fully_quantize=True would force integer I/O whatever the types say
    data: bytes = convert.mlir_quantize(calibrated, fully_quantize=False, input_data_type=io_type,
                                        output_data_type=io_type,
                                        denylisted_nodes=list(recipe.get("float_nodes") or []) or None)
    return data


def _top1(path: str, samples: dict[str, np.ndarray], labels: np.ndarray) -> float:
    interpreter = _interpreter(path=path)
    inputs = interpreter.get_input_details()
    outputs = sorted(interpreter.get_output_details(), key=lambda d: d["name"])
    output = next((d for d in outputs if len(d["shape"]) >= 2 and d["shape"][-1] > 1), outputs[0])
    ordered = _ordered(samples, inputs)
    hits = 0
    for i in range(len(labels)):
        for detail, array in zip(inputs, ordered):
            interpreter.set_tensor(detail["index"], _quantize_input(array[i : i + 1], detail))
        interpreter.invoke()
        hits += int(np.argmax(_dequantize(interpreter.get_tensor(output["index"]), output)) == int(labels[i]))
    return hits / len(labels)


def evaluate(options: dict[str, Any]) -> dict[str, Any]:
    """Top-1 against labels of each file, on the evaluation inputs: {variant: {"top1", "error"}}."""
    samples = _samples(Path(options["inputs"]), limit=10**9)
    labels = np.load(options["labels"], allow_pickle=False)
    out: dict[str, Any] = {}
    for variant, path in options["files"].items():
        try:
            out[variant] = {"top1": _top1(path, samples, labels), "error": None}
        except Exception as exc:  # one file that does not run is that candidate's result, not the doctor's end
            out[variant] = {"top1": None, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return {"top1": out}
