"""Build the tiny .tflite models the agent runtime tests measure: python agent_models.py OUTDIR.

Runs in a child process (TensorFlow is imported here, never in pytest). For every
model NAME it writes NAME.tflite, NAME.inputs.npz (evaluation inputs, one array
per signature input, first axis = sample) and NAME.expected.npz (what TensorFlow
computes for those inputs, one array per signature output), so a test can check
that every runtime gives the same numbers, matched by output name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SAMPLES = 8
RNG = np.random.default_rng(0)
W = RNG.normal(size=(8, 4)).astype(np.float32)
W_BIG = RNG.normal(size=(64, 64)).astype(np.float32) / 8  # big enough for dynamic-range quantization


def _spec(shape: list[int | None], dtype: tf.DType, name: str) -> tf.TensorSpec:
    return tf.TensorSpec(shape, dtype, name=name)


class _Model(tf.Module):
    """One tf.function as the module's signature, so the converter keeps signature names."""

    def __init__(self, fn: Callable[..., dict[str, Any]], specs: list[tf.TensorSpec]):
        super().__init__()
        self.state = tf.Variable(tf.zeros([1, 4]))  # used only by the stateful model
        self.call = tf.function(lambda *args: fn(self, *args), input_signature=specs)


Setup = Callable[[tf.lite.TFLiteConverter, dict[str, np.ndarray]], None]


def _convert(module: _Model, setup: Setup | None, inputs: dict[str, np.ndarray]) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.call.get_concrete_function()], module)
    if setup:
        setup(converter, inputs)
    return converter.convert()


def _quantized(io_type: tf.DType, ops: tf.lite.OpsSet) -> Setup:
    def setup(c: tf.lite.TFLiteConverter, inputs: dict[str, np.ndarray]) -> None:
        # Calibrated on the evaluation inputs themselves: the check then measures
        # the runtime, not values clipped outside the calibrated range.
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([a[k] for a in inputs.values()] for k in range(SAMPLES))
        c.target_spec.supported_ops = [ops]
        c.inference_input_type = io_type
        c.inference_output_type = io_type

    return setup


def _dynamic_range(c: tf.lite.TFLiteConverter, inputs: dict[str, np.ndarray]) -> None:
    c.optimizations = [tf.lite.Optimize.DEFAULT]


def _custom_ops(c: tf.lite.TFLiteConverter, inputs: dict[str, np.ndarray]) -> None:
    c.allow_custom_ops = True


def _resource_variables(c: tf.lite.TFLiteConverter, inputs: dict[str, np.ndarray]) -> None:
    c.experimental_enable_resource_variables = True


def _dense(m: _Model, x: tf.Tensor) -> dict[str, tf.Tensor]:
    return {"y": tf.nn.relu(tf.matmul(x, W))}


def _accumulate(m: _Model, x: tf.Tensor) -> dict[str, tf.Tensor]:
    m.state.assign_add(x)
    return {"total": m.state.read_value()}


X8 = [_spec([1, 8], tf.float32, "x")]
X4 = [_spec([1, 4], tf.float32, "x")]
INT8 = tf.lite.OpsSet.TFLITE_BUILTINS_INT8
INT16X8 = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8

# name -> (function, input specs, converter setup)
MODELS: dict[str, tuple[Callable[..., dict[str, tf.Tensor]], list[tf.TensorSpec], Setup | None]] = {
    "float32": (_dense, X8, None),
    # float16 input and output: TFLite keeps them and inserts CAST ops around the float32 math.
    "float16": (lambda m, x: {"y": tf.cast(tf.cast(x, tf.float32) * 2.0 + 1.0, tf.float16)},
                [_spec([1, 4], tf.float16, "x")], None),
    "int8": (_dense, X8, _quantized(tf.int8, INT8)),
    "uint8": (_dense, X8, _quantized(tf.uint8, INT8)),
    "int16": (_dense, X8, _quantized(tf.int16, INT16X8)),
    "bool": (lambda m, mask, x: {"y": tf.where(mask, x, -x)},
             [_spec([1, 4], tf.bool, "mask"), _spec([1, 4], tf.float32, "x")], None),
    # Output shapes differ, so a mix-up by position cannot pass a check by name.
    "multi_output": (lambda m, x: {"zeta_scores": tf.matmul(x, W)[:, :3], "alpha_value": tf.reduce_sum(x, 1, True)},
                     X8, None),
    "stateful": (_accumulate, X4, _resource_variables),
    "custom_op": (lambda m, x: {"y": tf.math.bessel_i0e(x)}, X4, _custom_ops),
    # TF 2.21 writes FULLY_CONNECTED version 12 for dynamic-range weights; tflite-runtime 2.14 stops at 11.
    "fc_v12": (lambda m, x: {"y": tf.matmul(tf.matmul(x, W_BIG), W_BIG)}, [_spec([1, 64], tf.float32, "x")],
               _dynamic_range),
    # CUMSUM has no XNNPACK kernel: two delegate partitions with one CPU op between them.
    "cpu_fallback": (lambda m, x: {"y": tf.matmul(tf.math.cumsum(tf.matmul(x, W), axis=1), tf.transpose(W))},
                     X8, None),
    "dynamic_batch": (lambda m, x: {"y": x * 3.0}, [_spec([None, 4], tf.float32, "x")], None),
}


def _eval_inputs(specs: list[tf.TensorSpec]) -> dict[str, Any]:
    arrays = {}
    for s in specs:
        shape = [SAMPLES] + [1 if d is None else d for d in s.shape]
        if s.dtype == tf.bool:
            arrays[s.name] = RNG.integers(0, 2, size=shape).astype(bool)
        else:
            arrays[s.name] = RNG.uniform(-1, 1, size=shape).astype(s.dtype.as_numpy_dtype)
    return arrays


def build(out: str) -> None:
    for name, (fn, specs, setup) in MODELS.items():
        inputs = _eval_inputs(specs)
        with open(os.path.join(out, name + ".tflite"), "wb") as f:
            f.write(_convert(_Model(fn, specs), setup, inputs))
        reference = _Model(fn, specs)  # fresh state: the stateful model accumulates from zero
        results = [reference.call(*[inputs[s.name][k] for s in specs]) for k in range(SAMPLES)]
        expected: dict[str, Any] = {key: np.stack([r[key].numpy() for r in results]).astype(np.float32) for key in results[0]}
        np.savez(os.path.join(out, name + ".inputs.npz"), **inputs)
        np.savez(os.path.join(out, name + ".expected.npz"), **expected)


if __name__ == "__main__":
    build(sys.argv[1])
