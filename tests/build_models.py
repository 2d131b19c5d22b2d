"""Build the small Keras models the tests convert: python build_models.py OUTDIR."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

out = sys.argv[1]
keras.utils.set_random_seed(0)

# A small CNN classifier: conv, depthwise conv, pooling, dense, softmax.
x = keras.Input((16, 16, 3), name="image")
h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
h = keras.layers.GlobalAveragePooling2D()(h)
y = keras.layers.Dense(5, activation="softmax", name="probs")(h)
keras.Model(x, y, name="cnn").save(os.path.join(out, "cnn.keras"))

# Two outputs, to check that outputs are matched by name.
x = keras.Input((8,), name="features")
h = keras.layers.Dense(16, activation="relu")(x)
a = keras.layers.Dense(3, name="zeta_scores")(h)
b = keras.layers.Dense(1, name="alpha_value")(h)
keras.Model(x, [a, b], name="two_heads").save(os.path.join(out, "two_heads.keras"))
