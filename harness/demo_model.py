"""The demo's bundled model: a small MobileNetV2 (alpha 0.35, 96x96, 10 classes), built with seeded weights.

Built from code rather than downloaded, so the demo needs no network. Run in a
child process (it imports TensorFlow): python -m harness.demo_model OUT.keras
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build(out: str) -> None:
    import keras

    keras.utils.set_random_seed(7)
    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10,
                                           name="mobilenet_v2_demo")
    model.save(out)


if __name__ == "__main__":
    build(sys.argv[1])
