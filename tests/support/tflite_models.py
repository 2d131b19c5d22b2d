"""Tiny .tflite files made by real TensorFlow (in a child process), shared by the reader and compatibility tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Runs in a child process, so this pytest process never imports TensorFlow (it clashes with
# ai-edge-litert in some version pairs). Every model is tiny: the whole script takes a few seconds.
CONVERT_SCRIPT = r'''
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import keras
import tensorflow as tf

out = sys.argv[1]
keras.utils.set_random_seed(0)


def write(name, converter, dynamic=False, int8=None, flex=False, custom=False):
    if dynamic:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if int8 is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x] for x in int8)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    if flex:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    converter.allow_custom_ops = custom
    with open(os.path.join(out, name + ".tflite"), "wb") as f:
        f.write(converter.convert())


# Dense 32x64 has 2048 weights: above the 1024 below which dynamic-range quantization keeps floats.
x = keras.Input((32,), name="features")
mlp = keras.Model(x, keras.layers.Dense(10, activation="softmax")(keras.layers.Dense(64, activation="relu")(x)))
write("mlp_fp32", tf.lite.TFLiteConverter.from_keras_model(mlp))
write("mlp_dynamic", tf.lite.TFLiteConverter.from_keras_model(mlp), dynamic=True)
rng = np.random.default_rng(0)
write("mlp_int8", tf.lite.TFLiteConverter.from_keras_model(mlp),
      int8=[rng.uniform(-1, 1, (1, 32)).astype(np.float32) for _ in range(8)])

x = keras.Input((16, 16, 3), name="image")
h = keras.layers.Conv2D(8, 3, activation="relu")(x)
h = keras.layers.Conv2D(16, 3, activation="relu")(h)  # 1152 weights: quantized
h = keras.layers.Dense(64, activation="relu")(keras.layers.GlobalAveragePooling2D()(h))  # 1024: quantized
cnn = keras.Model(x, keras.layers.Dense(10)(h))
write("cnn_fp32", tf.lite.TFLiteConverter.from_keras_model(cnn))
write("cnn_dynamic", tf.lite.TFLiteConverter.from_keras_model(cnn), dynamic=True)

# All weights below 1024: the "dynamic" variant is fp32 in disguise.
x = keras.Input((8,), name="features")
write("tiny_dynamic", tf.lite.TFLiteConverter.from_keras_model(keras.Model(x, keras.layers.Dense(4)(x))),
      dynamic=True)


class TwoHeads(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.random.normal((8, 4)))

    @tf.function(input_signature=[tf.TensorSpec([2, 8], tf.float32, name="features")])
    def serve(self, features):
        h = tf.matmul(features, self.w)
        return {"zeta_scores": tf.nn.softmax(h[:, :3]), "alpha_value": h[:, 3:] * 2.0}


heads = TwoHeads()
tf.saved_model.save(heads, os.path.join(out, "two_heads_saved"), signatures={"serving_default": heads.serve})
write("two_heads", tf.lite.TFLiteConverter.from_saved_model(os.path.join(out, "two_heads_saved")))

# Builtin codes >= 127 (BROADCAST_TO 130, CUMSUM 128) sit in builtin_code; deprecated_builtin_code holds 127.
cum = tf.function(lambda v: tf.cumsum(tf.broadcast_to(v, [2, 3, 8]), axis=2),
                  input_signature=[tf.TensorSpec([3, 8], tf.float32)])
write("cumsum", tf.lite.TFLiteConverter.from_concrete_functions([cum.get_concrete_function()]))

# MatrixDeterminant has no TFLite builtin: a Flex op with SELECT_TF_OPS, a custom op with allow_custom_ops.
det = tf.function(lambda m: tf.linalg.det(m), input_signature=[tf.TensorSpec([None, 4, 4], tf.float32)])
write("det_flex", tf.lite.TFLiteConverter.from_concrete_functions([det.get_concrete_function()]), flex=True)
write("det_custom", tf.lite.TFLiteConverter.from_concrete_functions([det.get_concrete_function()]), custom=True)
'''

_CACHE: dict[str, Path] = {}


def convert_test_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The models above as {name: path}, converted once per test session (shared by several test modules)."""
    if not _CACHE:
        out = tmp_path_factory.mktemp("tflite_models")
        done = subprocess.run([sys.executable, "-c", CONVERT_SCRIPT, str(out)], capture_output=True, text=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        _CACHE.update({p.stem: p for p in out.glob("*.tflite")})
    return _CACHE


def interpreter(path: Path) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it
