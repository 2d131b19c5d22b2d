"""The quantization doctor's cost: `edgebench doctor` vs one plain int8 `edgebench convert`, both cold.

MobileNetV2 (224x224, weights=None) with seeded batch-norm statistics, so activations have the uneven
ranges of a trained network rather than the identity a fresh BN layer gives. Both commands start with an
empty cache and random calibration. The doctor converts fp32, int8 and int16x8, calibrates once, runs the
QuantizationDebugger, re-quantizes its keep-float candidates from that one calibration and validates every
variant on the host; the baseline converts and validates int8 alone.

    python -m benchmarks.bench_doctor [--model mobilenetv2|small]
Target (issue 13): doctor <= 4 x one int8 conversion.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_convert import BUILD, timed


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mobilenetv2", choices=["mobilenetv2", "small"])
    a = p.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = work / "model.keras"
        subprocess.run([sys.executable, "-c", BUILD, str(model), a.model, "seeded"], check=True, env=env,
                       stderr=subprocess.DEVNULL)
        env["EDGEBENCH_CACHE"] = str(work / "cache-convert")
        convert = timed([sys.executable, "-m", "harness", "convert", str(model), "--variants", "int8",
                         "-o", str(work / "int8")], env)
        env["EDGEBENCH_CACHE"] = str(work / "cache-doctor")
        doctor = timed([sys.executable, "-m", "harness", "doctor", str(model), "--variant", "int8",
                        "-o", str(work / "doctor")], env)
        doc = json.loads((work / "doctor" / "doctor.json").read_text())
    print(f"model: {a.model}  cores: {os.cpu_count()}  load: {os.getloadavg()[0]:.2f}")
    print(f"edgebench convert --variants int8 (cold): {convert:6.1f} s")
    print(f"edgebench doctor --variant int8 (cold):   {doctor:6.1f} s  ratio {doctor / convert:.2f} (target <= 4)")
    print(f"worst layers: {', '.join(e['name'] for e in doc['layers'][:5])}")
    for c in doc["candidates"]:
        print(f"  {c['name']:14} {c['status']:18} cosine {c['accuracy']['cosine']}  keeps float {c['keeps_float'][:6]}")


if __name__ == "__main__":
    main()
