"""Does the device agent report the latency the runtime really has? Agent vs bare loop vs LiteRT's own tool.

For MobileNetV2 224x224 (weights=None) as fp32 and int8, at 1 and 2 threads,
interleaved round-robin over several rounds (the method order rotates every
round, so drift and thermal state hit every method alike), each run in a fresh
process:

  agent  the shipped agent zip, standalone --json, its normal path and defaults
         (>= 1 warm-up run and 0.5 s, then >= 50 runs and 1 s)
  bare   a loop of interpreter.invoke() timed with perf_counter_ns, same rule
  tool   ai_edge_litert/tools/benchmark_litert_model.py from the installed wheel
         (CompiledModel API; --result_json, medians rounded to 0.01 ms)

It also measures the agent loop's fixed cost per sample (its timed_loop around
an empty callable, in ns) and the agent's start-up: process start to the first
timed invoke, minus model init and first inference (in s).

    python -m benchmarks.bench_agent_fidelity [--rounds 5] [--python PY] [--json OUT]

Targets: agent/bare within 0.98-1.02, overhead < 1 us, start-to-first-invoke < 0.5 s.
The .tflite files are cached under ~/.cache/edgebench/bench (first run: ~30 s of conversion).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


from device_agent.measure import timed_loop
from harness.fleet.shipping import agent_zip

CACHE = Path.home() / ".cache" / "edgebench" / "bench"
VARIANTS = ("fp32", "int8")
THREADS = (1, 2)
METHODS = ("agent", "bare", "tool")
TOOL_WARMUP_RUNS, TOOL_RUNS = 40, 100  # about the agent's 0.5 s + 1 s at ~10 ms per run

BUILD = r"""
import os, sys
import numpy as np, keras, tensorflow as tf
keras.utils.set_random_seed(0)
model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None)
for variant in sys.argv[2:]:
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant == "int8":
        rng = np.random.default_rng(0)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)] for _ in range(32))
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = c.inference_output_type = tf.int8
    out = os.path.join(sys.argv[1], "mobilenetv2_224_%s.tflite" % variant)
    with open(out + ".tmp", "wb") as f:
        f.write(c.convert())
    os.replace(out + ".tmp", out)
"""

# The agent's measuring rule, written out independently: >= 1 warm-up run and 0.5 s, >= 50 runs and 1 s.
BARE = r"""
import json, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=int(sys.argv[2]))
it.allocate_tensors()
rng = np.random.default_rng(0)
for d in it.get_input_details():
    if d["dtype"] == np.int8:
        x = rng.integers(-128, 128, size=d["shape"]).astype(np.int8)
    else:
        x = rng.uniform(-1, 1, size=d["shape"]).astype(d["dtype"])
    it.set_tensor(d["index"], x)
invoke, clock = it.invoke, time.perf_counter_ns
def loop(runs, seconds):
    samples, end = [], clock() + int(seconds * 1e9)
    while len(samples) < runs or clock() < end:
        t0 = clock()
        invoke()
        samples.append(clock() - t0)
    return samples
invoke()
loop(1, 0.5)
print(json.dumps(loop(50, 1.0)))
"""


def models(python: str) -> dict[str, Path]:
    paths = {v: CACHE / f"mobilenetv2_224_{v}.tflite" for v in VARIANTS}
    missing = [v for v, p in paths.items() if not p.exists()]
    if missing:
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"converting MobileNetV2 {', '.join(missing)} into {CACHE} ...", flush=True)
        subprocess.run([python, "-c", BUILD, str(CACHE), *missing], check=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return paths


def tool_path(python: str) -> str:
    out = subprocess.run([python, "-c", "import ai_edge_litert, os; print(os.path.dirname(ai_edge_litert.__file__))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return os.path.join(out, "tools", "benchmark_litert_model.py")


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return done.stdout


def run_method(method: str, python: str, model: Path, threads: int, tool: str) -> float:
    """The median latency in ms of one fresh process."""
    if method == "agent":
        result = json.loads(_run([python, str(agent_zip()), str(model), "--json", "--threads", str(threads)]))
        assert result["status"] == "ok", result
        return statistics.median(result["samples_ms"])
    if method == "bare":
        return statistics.median(json.loads(_run([python, "-c", BARE, str(model), str(threads)]))) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        _run([python, tool, f"--model={model}", f"--num_threads={threads}", f"--num_runs={TOOL_RUNS}",
              f"--warmup_runs={TOOL_WARMUP_RUNS}", f"--result_json={out}"])
        with open(out) as f:
            return float(json.load(f)["latency"]["median_ms"])


def loop_overhead_ns() -> float:
    """The agent's timed_loop around a callable that does nothing: the fixed cost inside every sample."""
    medians = [statistics.median(timed_loop(lambda: None, 100000, 0, 100000)) for _ in range(5)]
    return min(medians)


def startup_s(python: str, model: Path) -> dict[str, float]:
    """Agent process start to the first timed invoke, without warm-up; minus model init and first inference."""
    started = time.perf_counter_ns()  # CLOCK_MONOTONIC, the clock the agent's clock_ns uses
    result = json.loads(_run([python, str(agent_zip()), str(model), "--json", "--runs", "1", "--min-seconds", "0",
                              "--warmup", "0", "--warmup-seconds", "0"]))
    clock = result["clock_ns"]
    return {
        "to_model_load_s": (clock["load"] - started) / 1e9,
        "to_first_timed_invoke_excl_init_s": (clock["timed"] - started) / 1e9
        - (result["init_ms"] + result["first_inference_ms"]) / 1e3,
        "init_ms": result["init_ms"], "first_inference_ms": result["first_inference_ms"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--python", default=sys.executable, help="interpreter with ai-edge-litert (and TF to convert)")
    p.add_argument("--json", type=Path, help="write all figures here")
    a = p.parse_args()

    paths = models(a.python)
    tool = tool_path(a.python)
    load_before = os.getloadavg()
    configs = [(v, t) for v in VARIANTS for t in THREADS]
    medians: dict[tuple[str, int], dict[str, list[float]]] = {c: {m: [] for m in METHODS} for c in configs}
    for r in range(a.rounds):
        order = METHODS[r % 3:] + METHODS[: r % 3]
        for variant, threads in configs:
            for method in order:
                medians[(variant, threads)][method].append(run_method(method, a.python, paths[variant], threads, tool))
        print(f"round {r + 1}/{a.rounds} done (load {os.getloadavg()[0]:.2f})", flush=True)
    overhead = loop_overhead_ns()
    startup = [startup_s(a.python, paths["fp32"]) for _ in range(5)]
    load_after = os.getloadavg()

    report: dict[str, Any] = {"rounds": a.rounds, "loadavg_before": load_before, "loadavg_after": load_after,
                              "cores": os.cpu_count(), "configs": []}
    print(f"\nMobileNetV2 224x224, ai-edge-litert, {a.rounds} rounds interleaved, each run a fresh process.")
    print("ms: median over rounds of each process's median; ratios: median of the per-round ratios [range].")
    print(f"{'config':<9}{'agent':>8}{'bare':>8}{'tool':>8}   {'agent/bare':<24}{'agent/tool':<24}")
    for (variant, threads), m in medians.items():
        med = {k: statistics.median(v) for k, v in m.items()}
        ratios = {}
        for other in ("bare", "tool"):
            per_round = [x / y for x, y in zip(m["agent"], m[other])]
            ratios[other] = (statistics.median(per_round), min(per_round), max(per_round))
        print(f"{variant + ' ' + str(threads) + 't':<9}{med['agent']:8.3f}{med['bare']:8.3f}{med['tool']:8.3f}   "
              + "".join(f"{'%.3f [%.3f-%.3f]' % ratios[o]:<24}" for o in ("bare", "tool")))
        report["configs"].append({"variant": variant, "threads": threads, "runs_ms": m, "median_ms": med,
                                  "agent_over_bare": ratios["bare"], "agent_over_tool": ratios["tool"]})
    start = statistics.median(s["to_first_timed_invoke_excl_init_s"] for s in startup)
    print(f"\nagent loop overhead per sample: {overhead:.0f} ns (target < 1000)")
    print(f"agent start to first timed invoke, excluding init and first inference: {start:.3f} s (target < 0.5)"
          f"  [start to model load {statistics.median(s['to_model_load_s'] for s in startup):.3f} s]")
    print(f"loadavg before {load_before[0]:.2f}, after {load_after[0]:.2f} on {os.cpu_count()} cores")
    report.update(loop_overhead_ns=overhead, startup=startup, start_to_first_invoke_s=start)
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
