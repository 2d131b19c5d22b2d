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

# A custom layer whose op has no TFLite builtin (MatrixDeterminant): needs --custom-objects, then SELECT_TF_OPS.
CUSTOM_LAYER = '''
import keras
import tensorflow as tf


class Det(keras.layers.Layer):
    def call(self, x):
        return tf.linalg.det(x)
'''
with open(os.path.join(out, "det_layer.py"), "w") as f:
    f.write(CUSTOM_LAYER)
namespace = {}
exec(CUSTOM_LAYER, namespace)
x = keras.Input((3, 3), name="matrix")
keras.Model(x, namespace["Det"]()(x), name="det").save(os.path.join(out, "det.keras"))

# The CNN again in the legacy HDF5 format.
keras.models.load_model(os.path.join(out, "cnn.keras")).save(os.path.join(out, "cnn_legacy.h5"))

# A small MobileNetV2: its int16x8 variant fails to prepare when calibrated on pixel noise.
keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10).save(
    os.path.join(out, "mobilenet.keras"))

# The CNN as a SavedModel directory.
keras.models.load_model(os.path.join(out, "cnn.keras")).export(os.path.join(out, "cnn_saved_model"), verbose=False)

# A model saved by Keras 2 (tf_keras), in the legacy HDF5 format many teams still have.
import tf_keras  # noqa: E402

k2 = tf_keras.Sequential([tf_keras.layers.Input((16, 16, 3), name="image"), tf_keras.layers.Conv2D(4, 3, activation="relu"),
                          tf_keras.layers.GlobalAveragePooling2D(), tf_keras.layers.Dense(3, activation="softmax")])
k2.save(os.path.join(out, "keras2.h5"))
