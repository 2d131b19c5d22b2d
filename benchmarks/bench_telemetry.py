"""Does sustained mode disturb what it measures? The agent's normal timed loop vs its sustained loop
(per-sample timestamps + the telemetry thread reading sensors every second), same interpreter.

Each process loads the model once (the agent's own loader), warms up, then alternates the two loops in blocks
of --block seconds, off-on-on-off repeated (ABBA: drift hits both). Its estimate is the ratio of its on
blocks' median to its off blocks' median. Processes are the unit of replication: the printed ratio is the
geometric mean over --processes fresh processes with its 95% t-interval, and the verdict is "within 1%"
when the interval lies inside [0.99, 1.01], "differs" when it excludes 1, else "inconclusive at 1%".
Each on block starts its own telemetry thread (a real cell starts one per cell), so this overstates it.

    python -m benchmarks.bench_telemetry [--processes 6] [--quads 4] [--block 1.0] [--threads 1,2] [--python PY]

Target: |on/off - 1| <= 1%. Models: MobileNetV2 224 fp32 and int8 (built and cached by bench_agent_fidelity).
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
import json, statistics, sys
import numpy as np
from device_agent import measure, runtime as rt
interpreter = measure._load(rt.find_runtime("auto"), sys.argv[1], int(sys.argv[2]), [])
measure._allocate(interpreter)
rng = np.random.default_rng(0)
for _, d in measure._io(interpreter, "inputs"):
    interpreter.set_tensor(d["index"], measure.random_input(d, rng))
invoke, block = interpreter.invoke, float(sys.argv[3])
measure.timed_loop(invoke, 1, 1.0, 10**7)  # warm-up
blocks, readings = {"off": [], "on": []}, 0
for mode in ["off", "on", "on", "off"] * int(sys.argv[4]):
    if mode == "on":
        samples, _, got, _ = measure.sustained_loop(invoke, block)
        readings += len(got)
    else:
        samples = measure.timed_loop(invoke, 1, block, 10**7)
    blocks[mode].append(statistics.median(samples))
print(json.dumps({**blocks, "readings": readings}))
"""


def one(python: str, model: Path, threads: int, block: float, quads: int) -> dict[str, list[float]]:
    out = subprocess.run([python, "-c", CHILD, str(model), str(threads), str(block), str(quads)],
                         capture_output=True, text=True, timeout=600, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    return json.loads(out.strip().splitlines()[-1])


def verdict(low: float, high: float) -> str:
    if 0.99 <= low and high <= 1.01:
        return "within 1%"
    return "differs" if high < 1 or low > 1 else "inconclusive at 1%"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--processes", type=int, default=6)
    p.add_argument("--quads", type=int, default=4, help="off-on-on-off groups per process")
    p.add_argument("--block", type=float, default=1.0, help="seconds per block")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    p.add_argument("--python", default=sys.executable)
    a = p.parse_args()
    print(f"cores: {os.cpu_count()}  load: {os.getloadavg()[0]:.2f}")
    worst = 0.0
    for variant, model in sorted(models(a.python).items()):
        for threads in (int(t) for t in a.threads.split(",")):
            logs, off_ns, readings = [], [], 0
            for _ in range(a.processes):
                got = one(a.python, model, threads, a.block, a.quads)
                logs.append(math.log(statistics.median(got["on"]) / statistics.median(got["off"])))
                off_ns.append(statistics.median(got["off"]))
                readings += int(got["readings"])
            ratio = math.exp(statistics.mean(logs))
            low, high = log_interval(statistics.mean(logs), statistics.stdev(logs) / math.sqrt(len(logs)),
                                     t95(len(logs) - 1))
            worst = max(worst, abs(low - 1), abs(high - 1))
            print(f"{variant:5s} {threads} thread(s): off p50 {statistics.median(off_ns) / 1e6:.3f} ms, on/off {ratio:.4f} "
                  f"95% CI [{low:.4f}, {high:.4f}]: {verdict(low, high)} ({a.processes} processes x "
                  f"{a.quads * 2} blocks per mode, {readings} telemetry readings)")
    print(f"largest |CI bound - 1|: {worst * 100:.2f}% (target: the whole interval within 1%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
