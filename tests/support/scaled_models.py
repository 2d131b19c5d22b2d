"""One small CNN converted at several input sizes (fp32 .tflite, real TensorFlow in a child process): the same
architecture, truly slower by a known amount of work, for the regression gate's A/B tests and benchmark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = r'''
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
import tensorflow as tf

out = sys.argv[1]
for size in map(int, sys.argv[2:]):
    keras.utils.set_random_seed(0)
    x = keras.Input((size, size, 3), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(x, keras.layers.Dense(4, name="scores")(h))
    with open(os.path.join(out, f"net{size}.tflite"), "wb") as f:
        f.write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
'''


def scaled_models(out: Path, sizes: list[int]) -> dict[int, Path]:
    """``net{size}.tflite`` per input size; the work grows with size squared."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", SCRIPT, str(out), *map(str, sizes)], check=True, timeout=300,
                   capture_output=True)
    return {size: out / f"net{size}.tflite" for size in sizes}
