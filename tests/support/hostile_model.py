"""A tiny classifier with a quantization-hostile layer, saved by Keras 3 or Keras 2 (tf_keras):
python -m tests.support.hostile_model OUT.keras|OUT.h5 [keras2|nested]

``hostile`` is a conv whose channel 0 carries a bias of 500: per-tensor int8 activations then give the
other channels a scale of ~2, so their values (~1) round to zero. ``mix`` ignores channel 0, so the
float model does not care; the int8 model loses everything ``hostile`` computed. ``nested`` puts stem,
hostile and mix in a ``backbone`` Functional model used as a layer, as transfer learning does.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
KIND = sys.argv[2] if len(sys.argv) > 2 else "keras3"
if KIND == "keras2":
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tf_keras as keras  # noqa: E402
else:
    import keras  # noqa: E402

import numpy as np  # noqa: E402

keras.utils.set_random_seed(0)
x = keras.Input((16, 16, 3), name="image")
nested = KIND == "nested"
inner = keras.Input((16, 16, 3), name="backbone_input") if nested else x
h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inner)
h = keras.layers.Conv2D(8, 3, padding="same", name="hostile")(h)
h = keras.layers.Conv2D(8, 1, name="mix")(h)
backbone = keras.Model(inner, h, name="backbone") if nested else None
h = keras.layers.GlobalAveragePooling2D(name="pool")(backbone(x) if backbone is not None else h)
y = keras.layers.Dense(10, name="head")(h)
model = keras.Model(x, y, name="hostile_net")
owner = backbone if backbone is not None else model
w, b = owner.get_layer("hostile").get_weights()
b[0] = 500.0
owner.get_layer("hostile").set_weights([w, b])
w, b = owner.get_layer("mix").get_weights()
w[:, :, 0, :] = 0.0
owner.get_layer("mix").set_weights([w, b])
model.save(sys.argv[1])

# Calibration and labelled evaluation data; the labels are the float model's own predictions.
rng = np.random.default_rng(0)
base = os.path.splitext(sys.argv[1])[0]
np.save(base + "_calibration.npy", rng.normal(size=(32, 16, 16, 3)).astype(np.float32))
images = rng.normal(size=(24, 16, 16, 3)).astype(np.float32)
np.savez(base + "_eval.npz", x=images, y=np.argmax(model.predict(images, verbose=0), axis=1))
