"""Conversion steps that import TensorFlow, each run in a converter process (harness.conversion.workers).

The TFLite converter can abort the whole Python process on odd graphs, so the
CLI never imports TensorFlow itself: a dead child becomes a failed variant.

A worker (python -m harness.conversion.worker) reads steps as JSON lists on stdin:
    ["prepare", SOURCE, WORKDIR, OPTIONS_JSON]
        load the model once, export a SavedModel (traced once for all variants),
        write calibration.npz, eval_inputs.npz, reference_outputs.npz, prepare.json
    ["variant", WORKDIR, VARIANT, OUT.tflite, OPTIONS_JSON]
        convert the SavedModel into one variant
    ["keras_variant", SOURCE.keras, VARIANT, OUT.tflite, OPTIONS_JSON]
        an uncalibrated variant straight from the Keras file, in parallel with "prepare"
    ["doctor_localise", WORKDIR, OPTIONS_JSON] / ["doctor_evaluate", OPTIONS_JSON]
        the quantization doctor's steps (harness.conversion.quant_debug)
A recipe with ``float_nodes`` re-quantizes the model calibrated once per WORKDIR, those op outputs in float.
and answers each with one JSON line. A worker that dies fails only the step it
was running; the parent starts a fresh one for the next.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def _load_custom_objects(module_path: str | None) -> dict[str, Any]:
    if not module_path:
        return {}
    spec = importlib.util.spec_from_file_location("edgebench_custom_objects", module_path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import custom objects from {module_path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {k: v for k, v in vars(module).items() if isinstance(v, type)}


def smooth_images(n: int, size: int, rng: np.random.Generator, channels: int = 3, cells: int = 4) -> np.ndarray:
    """Low-frequency random images in [-1, 1] (bilinear upsampling of a coarse random grid).

    Pixel-wise noise averages out in any pooling network, so every sample would
    look alike to the model: useless for calibration and for accuracy checks.
    """
    coarse = rng.uniform(-1, 1, size=(n, cells + 1, cells + 1, channels))
    pos = np.linspace(0, cells, size)
    i0 = np.floor(pos).astype(int).clip(0, cells - 1)
    f = pos - i0
    rows = coarse[:, i0] * (1 - f)[None, :, None, None] + coarse[:, i0 + 1] * f[None, :, None, None]
    out = rows[:, :, i0] * (1 - f)[None, None, :, None] + rows[:, :, i0 + 1] * f[None, None, :, None]
    return out.astype(np.float32)


def _random_like(spec: dict[str, Any], n: int, rng: np.random.Generator) -> np.ndarray:
    shape = [n] + spec["shape"][1:]
    dtype = np.dtype(spec["dtype"])
    if dtype.kind == "f" and len(shape) == 4 and shape[1] == shape[2] and shape[3] in (1, 3):
        return smooth_images(n, shape[1], rng, channels=shape[3]).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 10, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def _load_images(path: str, spec: dict[str, Any], value_range: tuple[float, float]) -> np.ndarray:
    """A folder of images, decoded, resized to the model input and scaled to value_range."""
    import tensorflow as tf

    files = sorted(p for p in Path(path).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    shape = spec["shape"]
    if not files:
        raise ValueError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)})")
    if len(shape) != 4:
        raise ValueError(f"{path}: images need an image input [batch, height, width, channels], not {shape}")
    lo, hi = value_range
    out = []
    for f in files:
        try:
            image = tf.io.decode_image(f.read_bytes(), channels=shape[3], expand_animations=False)
        except Exception as exc:  # a file that is not an image
            raise ValueError(f"{f}: not a readable image ({exc})") from None
        resized = tf.image.resize(tf.cast(image, tf.float32), shape[1:3]).numpy()
        out.append(lo + resized / 255.0 * (hi - lo))
    return np.stack(out).astype(spec["dtype"])


def _load_samples(path: str, specs: list[dict[str, Any]], value_range: tuple[float, float]) -> dict[str, np.ndarray]:
    if Path(path).is_dir():
        if len(specs) != 1:
            raise ValueError(f"{path}: an image folder fits single-input models only; use .npz keyed by input name")
        return {specs[0]["name"]: _load_images(path, specs[0], value_range)}
    data = np.load(path, allow_pickle=False)
    if isinstance(data, np.ndarray):
        if len(specs) != 1:
            raise ValueError(f"{path}: a .npy file fits single-input models only; use .npz keyed by input name")
        arrays = {specs[0]["name"]: data}
    else:
        arrays = {k: data[k] for k in data.files}
    out = {}
    for spec in specs:
        if spec["name"] not in arrays:
            raise ValueError(f"{path}: no array for input {spec['name']!r} (has {', '.join(arrays)})")
        a = arrays[spec["name"]]
        want = spec["shape"][1:]
        if list(a.shape[1:]) != want:
            raise ValueError(f"{path}: input {spec['name']!r} has samples of shape {list(a.shape[1:])}, the model takes {want}")
        out[spec["name"]] = a.astype(spec["dtype"])
    return out


def _signature(source: str, work_dir: Path, options: dict[str, Any]) -> tuple[Any, Path, list[dict[str, Any]],
                                                                            list[dict[str, Any]]]:
    """The model as a SavedModel (exported once for every variant): its serving function, path, inputs, outputs."""
    import tensorflow as tf

    saved = work_dir / "saved_model"
    src = Path(source)
    if src.is_dir():
        saved = src
    else:
        import keras

        model = keras.models.load_model(src, compile=False, custom_objects=_load_custom_objects(options.get("custom_objects")))
        model.export(str(saved), verbose=False)
    loaded = tf.saved_model.load(str(saved))
    if "serving_default" not in loaded.signatures:
        raise ValueError(f"{source}: the SavedModel has no serving_default signature")
    fn = loaded.signatures["serving_default"]
    _, kwargs = fn.structured_input_signature
    inputs = [
        {"name": name, "shape": [1 if d is None else int(d) for d in spec.shape], "dtype": spec.dtype.name,
         "dynamic": any(d is None for d in spec.shape)}
        for name, spec in sorted(kwargs.items())
    ]
    outputs = [{"name": name, "shape": [None if d is None else int(d) for d in spec.shape], "dtype": spec.dtype.name}
               for name, spec in sorted(fn.structured_outputs.items())]
    return fn, saved, inputs, outputs


def _samples(inputs: list[dict[str, Any]], options: dict[str, Any]) -> tuple[dict[str, np.ndarray],
                                                                           dict[str, np.ndarray], dict[str, Any]]:
    """Calibration and evaluation inputs: the user's, else random (flagged); and how the calibration was made."""
    value_range = tuple(options.get("image_range") or (-1.0, 1.0))
    rng = np.random.default_rng(0)
    n_eval = int(options.get("eval_samples", 8))
    calibration_error = None
    if options.get("calibration"):
        try:
            calib = _load_samples(options["calibration"], inputs, value_range)
            calibration_kind = "file"
        except (ValueError, OSError) as exc:  # only the calibrated variants fail; the others are still produced
            calibration_error = str(exc)
            calibration_kind = "error"
            calib = {s["name"]: _random_like(s, 1, rng) for s in inputs}
    else:
        calib = {s["name"]: _random_like(s, int(options.get("calibration_samples", 32)), rng) for s in inputs}
        calibration_kind = "random"
    if options.get("eval_data"):
        evals = _load_samples(options["eval_data"], inputs, value_range)
    elif calibration_kind == "file" and min(len(a) for a in calib.values()) > 1:
        # hold out the last samples of the calibration data for evaluation
        n = min(len(a) for a in calib.values())
        k = max(1, min(n_eval, n // 5))
        evals = {name: a[n - k:] for name, a in calib.items()}
        calib = {name: a[: n - k] for name, a in calib.items()}
    else:
        evals = {s["name"]: _random_like(s, n_eval, np.random.default_rng(1)) for s in inputs}
    how = {"kind": calibration_kind, "samples": int(min(len(a) for a in calib.values())),
           "path": options.get("calibration"), "error": calibration_error, "image_range": list(value_range)}
    return calib, evals, how


def prepare(source: str, work: str, options: dict[str, Any]) -> dict[str, Any]:
    """Everything the variants share: the SavedModel, calibration and evaluation inputs, reference outputs."""
    import tensorflow as tf

    work_dir = Path(work)
    fn, saved, inputs, outputs = _signature(source, work_dir, options)
    calib, evals, calibration = _samples(inputs, options)
    np.savez(work_dir / "calibration.npz", **calib)  # type: ignore[arg-type]
    np.savez(work_dir / "eval_inputs.npz", **evals)  # type: ignore[arg-type]
    count = min(len(a) for a in evals.values())
    reference: dict[str, list[np.ndarray]] = {o["name"]: [] for o in outputs}
    for i in range(count):
        result = fn(**{name: tf.constant(a[i : i + 1]) for name, a in evals.items()})
        for name, value in result.items():
            reference[name].append(np.asarray(value, dtype=np.float32))
    stacked = {k: np.stack(v) for k, v in reference.items()}
    np.savez(work_dir / "reference_outputs.npz", **stacked)  # type: ignore[arg-type]
    info = {
        # relative when it lives in the work dir, which the parent renames into its cache
        "saved_model": str(saved) if saved == Path(source) else "saved_model",
        "inputs": inputs,
        "outputs": outputs,
        "calibration": calibration,
        "eval_samples": count,
        "tensorflow": tf.__version__,
    }
    (work_dir / "prepare.json").write_text(json.dumps(info, indent=1))
    return info


def _configure(converter: Any, variant: str, recipe: dict[str, Any], calibration_path: Path | None) -> None:
    """Set a converter up for one variant (and its recipe's options)."""
    import tensorflow as tf

    def representative() -> Any:
        assert calibration_path is not None
        calibration = np.load(calibration_path)
        n = min(len(calibration[k]) for k in calibration.files)
        for i in range(n):
            yield {k: calibration[k][i : i + 1] for k in calibration.files}

    ops = tf.lite.OpsSet
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [ops.TFLITE_BUILTINS_INT8]
        io_type = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[recipe.get("io_type", "int8")]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    elif variant == "int16x8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif variant != "fp32":
        raise ValueError(f"unknown variant {variant!r}")
    if recipe.get("select_tf_ops"):
        converter.target_spec.supported_ops = set(converter.target_spec.supported_ops) | {ops.SELECT_TF_OPS}
    if recipe.get("allow_custom_ops"):
        converter.allow_custom_ops = True


def calibrated(work: Path) -> bytes:
    """The float model with calibration statistics, made once per prepared model: candidates re-quantize it."""
    path = work / "calibrated.tflite"
    if not path.exists():
        import tensorflow as tf

        info = json.loads((work / "prepare.json").read_text())
        converter = tf.lite.TFLiteConverter.from_saved_model(str(work / info["saved_model"]))
        _configure(converter, "int8", {}, work / "calibration.npz")
        converter._experimental_calibrate_only = True  # what QuantizationDebugger does to calibrate once
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(converter.convert())
        tmp.replace(path)
    return path.read_bytes()


def convert_variant(work: str, variant: str, out: str, options: dict[str, Any]) -> dict[str, Any]:
    """One variant from the prepared SavedModel."""
    import tensorflow as tf

    info = json.loads((Path(work) / "prepare.json").read_text())
    recipe = dict(options.get("recipe") or {})
    if "float_nodes" in recipe:
        from .quant_debug import requantize

        data = requantize(calibrated(Path(work)), recipe)
        Path(out).write_bytes(data)
        return {"bytes": len(data)}
    converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(work) / info["saved_model"]))
    _configure(converter, recipe.get("base", variant), recipe, Path(work) / "calibration.npz")
    data = converter.convert()
    Path(out).write_bytes(data)
    return {"bytes": len(data)}


def convert_from_keras(source: str, variant: str, out: str, options: dict[str, Any]) -> dict[str, Any]:
    """An uncalibrated variant straight from the Keras file, while another worker prepares the rest."""
    import keras
    import tensorflow as tf

    model = keras.models.load_model(source, compile=False,
                                    custom_objects=_load_custom_objects(options.get("custom_objects")))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    recipe = dict(options.get("recipe") or {})
    _configure(converter, recipe.get("base", variant), recipe, None)
    data = converter.convert()
    Path(out).write_bytes(data)
    return {"bytes": len(data)}


def run_step(args: list[str]) -> dict[str, Any]:
    step = args[0]
    try:
        if step == "prepare":
            result = prepare(args[1], args[2], json.loads(args[3]))
        elif step == "variant":
            result = convert_variant(args[1], args[2], args[3], json.loads(args[4]))
        elif step == "keras_variant":
            result = convert_from_keras(args[1], args[2], args[3], json.loads(args[4]))
        elif step in ("doctor_localise", "doctor_evaluate"):
            from .quant_debug import evaluate, localise

            result = (localise(calibrated(Path(args[1])), json.loads(args[2]))
                      if step == "doctor_localise" else evaluate(json.loads(args[1])))
        else:
            raise ValueError(f"unknown step {step!r}")
    except Exception as exc:  # reported to the parent as this step's failure
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, **result}


def serve() -> int:
    """Run steps read as JSON lines on stdin; one JSON result line each on the original stdout.

    TensorFlow is imported once, up front, while the parent is still busy (the
    import alone takes seconds). TensorFlow may print to fd 1, so results go to
    a private duplicate of it and fd 1 is pointed at stderr.
    """
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    import tensorflow  # noqa: F401

    for line in sys.stdin:
        out.write(json.dumps(run_step(json.loads(line))) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(serve())
