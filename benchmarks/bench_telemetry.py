"""Does sustained mode disturb what it measures? The agent's normal timed loop vs its sustained loop
(per-sample timestamps + the telemetry thread reading sensors every second), same model, same duration.

Each measurement is a fresh process running the agent's own measure() (device_agent.measure); the two modes
alternate round by round (off, on, on, off, ...) so drift hits both. Printed: each mode's median of the
per-process medians and their ratio on/off per model and thread count.

    python -m benchmarks.bench_telemetry [--rounds 6] [--seconds 3] [--threads 1,2] [--python PY]

Target: |on/off - 1| <= 1%. Each round's two processes are a pair; the 95% t-interval of the pairs' log
ratios decides "within 1%", "differs" or "inconclusive at 1%" (processes that vary more than the effect). Models: MobileNetV2 224 fp32 and int8 (built and cached by bench_agent_fidelity).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.bench_agent_fidelity import models
from harness.results.stats import log_interval, t95

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, sys
from device_agent import runtime as rt, measure
cell = {"model_path": sys.argv[2], "threads": int(sys.argv[3]), "warmup": 1, "warmup_seconds": 0.5,
        "runs": 50, "min_seconds": float(sys.argv[4]), "max_runs": 1000000}
if sys.argv[5] == "on":
    cell["sustained_s"] = float(sys.argv[4])
result = measure.measure(cell, rt.find_runtime("auto"))
samples = sorted(result["samples_ms"])
print(json.dumps({"median": samples[len(samples) // 2], "n": len(samples),
                  "telemetry": len(result.get("telemetry") or [])}))
"""


def one(python: str, model: Path, threads: int, seconds: float, mode: str) -> dict[str, float]:
    out = subprocess.run([python, "-c", CHILD, str(ROOT), str(model), str(threads), str(seconds), mode],
                         capture_output=True, text=True, timeout=300, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    a = p.parse_args()
    worst = 0.0
    for variant, model in sorted(models(a.python).items()):
        for threads in (int(t) for t in a.threads.split(",")):
            medians: dict[str, list[float]] = {"off": [], "on": []}
            readings = 0
            for r in range(a.rounds):
                for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
                    got = one(a.python, model, threads, a.seconds, mode)
                    medians[mode].append(got["median"])
                    readings += int(got["telemetry"]) if mode == "on" else 0
            off, on = statistics.median(medians["off"]), statistics.median(medians["on"])
            worst = max(worst, abs(on / off - 1))
            # each round's on and off processes ran back to back: their ratios are the paired evidence
            logs = [math.log(n / f) for n, f in zip(medians["on"], medians["off"])]
            low, high = log_interval(statistics.mean(logs), statistics.stdev(logs) / math.sqrt(len(logs)),
                                     t95(len(logs) - 1))
            verdict = ("within 1%" if 0.99 <= low and high <= 1.01 else
                       "differs" if high < 1 or low > 1 else "inconclusive at 1%")
            print(f"{variant:5s} {threads} thread(s): off {off:.3f} ms, on {on:.3f} ms, on/off {on / off:.4f}, "
                  f"paired 95% CI [{low:.4f}, {high:.4f}]: {verdict} ({a.rounds} processes each, "
                  f"{readings} telemetry readings)")
    print(f"worst |on/off - 1|: {worst * 100:.2f}% (target <= 1%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
