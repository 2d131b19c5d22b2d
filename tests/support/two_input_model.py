"""A Keras model with two inputs of one shape whose names end alike (``image``, ``thermal_image``):
python -m tests.support.two_input_model OUT.keras

Its logits are a Dense layer over ``image - thermal_image``: one input's array fed to both gives zero logits and a
swap negates them, so top-1 against OUT_eval.npz's labels (the float model's own predictions) is 1.0 only when
each input gets its own array. The arrays are saved ``image`` first, the order that once fooled suffix matching.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402

keras.utils.set_random_seed(0)
image = keras.Input((8, 8, 3), name="image")
thermal = keras.Input((8, 8, 3), name="thermal_image")
h = keras.layers.Flatten(name="flat")(keras.layers.Subtract(name="difference")([image, thermal]))
model = keras.Model({"image": image, "thermal_image": thermal}, keras.layers.Dense(10, name="head")(h), name="two")
model.save(sys.argv[1])

rng = np.random.default_rng(0)
arrays = {"image": rng.normal(size=(24, 8, 8, 3)).astype(np.float32),
          "thermal_image": rng.uniform(-3, 3, size=(24, 8, 8, 3)).astype(np.float32)}
labels = np.argmax(model.predict(arrays, verbose=0), axis=1)
np.savez(os.path.splitext(sys.argv[1])[0] + "_eval.npz", **arrays, y=labels)
