"""The demo's bundled model: a small MobileNetV2 (alpha 0.35, 96x96, 10 classes), built with seeded weights.

Built from code rather than downloaded, so the demo needs no network. With
random weights MobileNetV2's activations vanish (its logits are ~1e-12, every
variant trivially "accurate"), so each batch-norm layer's statistics are set
from the data flowing into it, as a data-dependent initialisation would: the
variants then disagree where quantization really hurts.
Run in a child process (it imports TensorFlow): python -m harness.conversion.demo_model OUT.keras
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from harness.conversion.worker import smooth_images  # noqa: E402


def build(out: str) -> None:
    import keras

    keras.utils.set_random_seed(7)
    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10,
                                           name="mobilenet_v2_demo")
    x = smooth_images(32, 96, np.random.default_rng(7))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            probe = keras.Model(model.inputs[0], layer.input)
            h = np.asarray(probe(x, training=False))
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2)) + 1e-3])
    model.save(out)


if __name__ == "__main__":
    build(sys.argv[1])
