"""Conversion speed: the naive way vs `edgebench convert`, cold and warm, on this machine in one run.

Naive: one Python process that loads the Keras model and converts the five
variants one after another with TFLiteConverter.from_keras_model (what a
hand-written script does). edgebench: `edgebench convert` with an empty cache
(cold), then again with the cache filled (warm). Both include validation-free
conversion only for naive; edgebench's time also includes its host validation
and accuracy check of every variant.

    python -m benchmarks.bench_convert [--model mobilenetv2|demo] [--skip-naive]
Targets (issue 3): cold <= 0.6 x naive, warm <= 2 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAIVE = r"""
import sys, time, numpy as np, tensorflow as tf, keras
t0 = time.perf_counter()
model = keras.models.load_model(sys.argv[1], compile=False)
shape = [1] + list(model.inputs[0].shape[1:])
def rep():
    rng = np.random.default_rng(0)
    for _ in range(32):
        yield [rng.uniform(-1, 1, size=shape).astype(np.float32)]
for variant in ["fp32", "fp16", "dynamic", "int8", "int16x8"]:
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant != "fp32":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        c.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        c.representative_dataset = rep
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
    if variant == "int16x8":
        c.representative_dataset = rep
        c.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    open(sys.argv[2] + "/" + variant + ".tflite", "wb").write(c.convert())
"""

# python -c BUILD OUT.keras mobilenetv2|small [seeded]; "seeded" gives the batch norms random statistics, so
# activations have the uneven ranges of a trained network (the doctor's benchmark needs them).
BUILD = r"""
import sys, numpy as np, keras
keras.utils.set_random_seed(0)
if sys.argv[2] == "mobilenetv2":
    m = keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None)
else:
    m = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10)
rng = np.random.default_rng(0)
for layer in m.layers if sys.argv[3:] == ["seeded"] else []:
    if isinstance(layer, keras.layers.BatchNormalization):
        gamma, beta, mean, var = layer.get_weights()
        layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                           rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
m.save(sys.argv[1])
"""


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode not in (0, 3):  # 3: a variant or candidate failed, which is a result
        sys.exit(f"{argv} failed ({done.returncode}):\n{done.stdout[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mobilenetv2", choices=["mobilenetv2", "demo"])
    p.add_argument("--skip-naive", action="store_true")
    a = p.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = work / "model.keras"
        subprocess.run([sys.executable, "-c", BUILD, str(model), a.model], check=True, env=env,
                       stderr=subprocess.DEVNULL)
        (work / "naive").mkdir()
        naive = None if a.skip_naive else timed([sys.executable, "-c", NAIVE, str(model), str(work / "naive")], env)
        env["EDGEBENCH_CACHE"] = str(work / "cache")
        cmd = [sys.executable, "-m", "harness", "convert", str(model), "-o", str(work / "eb")]
        cold = timed(cmd, env)
        warm = timed(cmd, env)
    print(f"model: {a.model}  cores: {os.cpu_count()}  load: {os.getloadavg()[0]:.2f}")
    if naive is not None:
        print(f"naive sequential conversion: {naive:6.1f} s")
    print(f"edgebench convert, cold:     {cold:6.1f} s" + (f"  ratio {cold / naive:.2f} (target <= 0.60)" if naive else ""))
    print(f"edgebench convert, warm:     {warm:6.1f} s  (target <= 2 s)")


if __name__ == "__main__":
    main()
