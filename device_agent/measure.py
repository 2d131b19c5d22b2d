"""Measure one model with one interpreter. Runs inside a child process per model.

Result fields (times in milliseconds; samples keep the clock's nanoseconds):
status ("ok", "failed_to_load", "failed_to_prepare", "failed_to_invoke",
"invalid_input"), error, phase, model_bytes, load_ms, allocate_ms, init_ms,
first_inference_ms, samples_ms, warmup_runs, rss_before_mb, rss_after_mb,
peak_rss_mb, rss_growth_mb, threads, delegate, inputs, outputs, stateful,
eval_outputs, clock_ns; and for a sustained cell (job field "sustained_s"):
sample_t_ms, telemetry, power_method.

- sustained: the timed loop runs for sustained_s seconds whatever the run
  counts say (at most MAX_SUSTAINED_SAMPLES), sample_t_ms[i] is when sample i
  started (ms since the loop started), and telemetry holds the device's
  sensors read about once a second on a side thread (see telemetry.py).

- rss_before_mb / rss_after_mb: VmRSS before loading the model and after the
  timed runs; rss_growth_mb is their difference; peak_rss_mb is VmHWM, reset
  before loading where the kernel allows.
- delegate: {"name", "coverage": {"ops", "partitions", "cpu_ops",
  "cpu_op_names", "fully_delegated"} | null}. cpu_ops counts the model's ops
  that no delegate took: a silent fallback to the CPU kernels shows here.
- stateful: the model holds resource variables (true/false, null if unknown).
- clock_ns: {"load", "timed"}: time.perf_counter_ns() when loading started and
  when the first timed invoke started. On Linux this is CLOCK_MONOTONIC, one
  clock for every process on the machine, so a caller there can put the
  agent's phases on its own timeline.
"""

import base64
import os
import time

import numpy as np

from . import DEFAULTS, telemetry

MAX_SUSTAINED_SAMPLES = 1000000

_INT_RANGES = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "int32": (0, 100),
    "int64": (0, 100),
}


class CellFailure(Exception):
    def __init__(self, status, phase, exc):
        Exception.__init__(self, str(exc))
        self.status = status
        self.phase = phase
        self.exc = exc


def _status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _mb(kb):
    return None if kb is None else round(kb / 1024.0, 3)


def _reset_peak_rss():
    # Linux >= 4.0: writing 5 resets VmHWM to the current RSS, so the peak
    # belongs to this model rather than whatever the process did before.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _io(interpreter, kind):
    """[(name, detail)] keyed by signature names when the model has a signature.

    Converted models may reorder outputs; signature names are the stable key.
    """
    details = interpreter.get_input_details() if kind == "inputs" else interpreter.get_output_details()
    by_index = dict((d["index"], d) for d in details)
    try:
        signatures = interpreter.get_signature_list()
    except Exception:
        signatures = {}
    if len(signatures) == 1:
        key = list(signatures)[0]
        runner = interpreter.get_signature_runner(key)
        sig = runner.get_input_details() if kind == "inputs" else runner.get_output_details()
        named = [(name, by_index[d["index"]]) for name, d in sorted(sig.items()) if d["index"] in by_index]
        if len(named) == len(details):
            return named
    return [(d["name"], d) for d in details]


def _describe(name, d):
    q = d.get("quantization") or (0.0, 0)
    return {
        "name": name,
        "tensor": d["name"],
        "shape": [int(x) for x in d["shape"]],
        "shape_signature": [int(x) for x in d.get("shape_signature", d["shape"])],
        "dtype": np.dtype(d["dtype"]).name,
        "scale": float(q[0]),
        "zero_point": int(q[1]),
    }


def random_input(detail, rng):
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(x) for x in detail["shape"])
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.name in _INT_RANGES:
        lo, hi = _INT_RANGES[dtype.name]
        return rng.integers(lo, hi + 1, size=shape).astype(dtype)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def _quantize(x, detail):
    dtype = np.dtype(detail["dtype"])
    scale, zero = (detail.get("quantization") or (0.0, 0))[:2]
    if dtype.kind in "iu" and np.asarray(x).dtype.kind == "f" and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(np.asarray(x) / scale + zero), info.min, info.max).astype(dtype)
    return np.asarray(x).astype(dtype)


def _dequantize(y, detail):
    scale, zero = (detail.get("quantization") or (0.0, 0))[:2]
    y = np.asarray(y)
    if y.dtype.kind in "iu" and scale:
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y.astype(np.float32)


def timed_loop(invoke, runs, min_seconds, max_runs):
    """Nanoseconds of each invoke(): at least `runs` calls and `min_seconds`, at most `max_runs` calls.

    Only the call sits between the two clock reads; a sample's fixed cost (one
    clock read and the call itself) is what benchmarks/bench_agent_fidelity.py
    reports as the per-sample overhead.
    """
    clock = time.perf_counter_ns
    samples = []
    append = samples.append
    deadline = clock() + int(min_seconds * 1e9)
    count = 0
    while count < max_runs and (count < runs or clock() < deadline):
        t0 = clock()
        invoke()
        append(clock() - t0)
        count += 1
    return samples


def sustained_loop(invoke, seconds, max_runs=MAX_SUSTAINED_SAMPLES):
    """(samples ns, start offsets ns, telemetry readings, power method) of invoke() for `seconds`."""
    clock = time.perf_counter_ns
    samples, stamps = [], []
    append, stamp = samples.append, stamps.append
    start = clock()
    sensors = telemetry.Telemetry(start).start()
    deadline = start + int(seconds * 1e9)
    try:
        while len(samples) < max_runs:
            t0 = clock()
            if t0 >= deadline:
                break
            invoke()
            append(clock() - t0)
            stamp(t0 - start)
    finally:
        readings = sensors.stop()
    return samples, stamps, readings, sensors.power_method


def _ms(ns):
    return round(ns / 1e6, 6)  # exact nanoseconds: a 10 us invoke keeps its digits


def _eval_outputs(interpreter, inputs, outputs, path, max_values):
    data = np.load(path, allow_pickle=False)
    keys = list(data.keys())
    arrays = []
    for i, (name, detail) in enumerate(inputs):
        key = name if name in keys else ("arr_%d" % i if "arr_%d" % i in keys else None)
        if key is None:
            raise ValueError("evaluation inputs have no array for input %r (have %s)" % (name, ", ".join(keys)))
        arrays.append(data[key])
    count = min(len(a) for a in arrays)
    collected = dict((name, []) for name, _ in outputs)
    for k in range(count):
        for (name, detail), arr in zip(inputs, arrays):
            interpreter.set_tensor(detail["index"], _quantize(arr[k].reshape(detail["shape"]), detail))
        interpreter.invoke()
        for name, detail in outputs:
            collected[name].append(_dequantize(interpreter.get_tensor(detail["index"]), detail))
    result = []
    budget = max_values
    for name, _ in outputs:
        stacked = np.ascontiguousarray(np.stack(collected[name]), dtype="<f4")
        if stacked.size > budget:
            raise ValueError("evaluation outputs exceed %d values; send fewer evaluation inputs" % max_values)
        budget -= stacked.size
        result.append({"name": name, "shape": list(stacked.shape), "dtype": "float32",
                       "data_b64": base64.b64encode(stacked.tobytes()).decode("ascii")})
    return result


def _nodes(interpreter):
    """[(op name, input tensors, output tensors)] of the main graph, or None if the runtime hides them.

    Read through the wrapper's node accessors: _get_ops_details() would also read
    each tensor's details, the path on which get_tensor_details() segfaults
    tflite-runtime 2.14.
    """
    try:
        w = interpreter._interpreter
        return [(w.NodeName(i), [int(t) for t in w.NodeInputs(i)], [int(t) for t in w.NodeOutputs(i)])
                for i in range(w.NumNodes())]
    except Exception:
        return None


def delegate_coverage(nodes):
    """Which of the model's ops the delegates took, from the node list after allocate_tensors().

    The list holds the model's ops, then one DELEGATE node per partition with the
    partition's boundary tensors as its inputs and outputs. A partition's ops are
    the producers of its outputs, everything they read back to its inputs, and
    every consumer of a tensor produced inside that is not an output (which
    finds ops without outputs such as ASSIGN_VARIABLE).
    """
    ops = [n for n in nodes if n[0] != "DELEGATE"]
    producer, consumers = {}, {}
    for i, (_, ins, outs) in enumerate(ops):
        for t in outs:
            producer[t] = i
        for t in ins:
            consumers.setdefault(t, []).append(i)
    partitions = [n for n in nodes if n[0] == "DELEGATE"]
    taken = set()
    for _, boundary_in, boundary_out in partitions:
        todo = [producer[t] for t in boundary_out if t in producer]
        while todo:
            i = todo.pop()
            if i in taken:
                continue
            taken.add(i)
            _, ins, outs = ops[i]
            todo.extend(producer[t] for t in ins if t in producer and t not in boundary_in)
            todo.extend(j for t in outs if t not in boundary_out for j in consumers.get(t, ()))
    cpu = [ops[i][0] for i in range(len(ops)) if i not in taken]
    return {"ops": len(ops), "partitions": len(partitions), "cpu_ops": len(cpu),
            "cpu_op_names": sorted(set(cpu)), "fully_delegated": bool(partitions) and not cpu}


def _load(runtime, path, threads, delegates):
    kwargs = {"model_path": path, "num_threads": threads}
    if delegates:
        kwargs["experimental_delegates"] = delegates
    try:
        return runtime.interpreter_cls(**kwargs)
    except Exception as exc:
        raise CellFailure("failed_to_load", "load", exc)


def _allocate(interpreter):
    """Allocate tensors; a dynamic dimension (usually the batch) becomes 1."""
    try:
        for d in interpreter.get_input_details():
            sig = d.get("shape_signature")
            if sig is not None and any(int(x) < 0 for x in sig):
                interpreter.resize_tensor_input(d["index"], [1 if int(x) < 0 else int(x) for x in sig])
        interpreter.allocate_tensors()
    except Exception as exc:
        raise CellFailure("failed_to_prepare", "allocate", exc)


def measure(cell, runtime):
    """Measure one cell; raises CellFailure for a model the runtime cannot run."""
    path = cell["model_path"]
    threads = cell.get("threads")
    delegate_spec = cell.get("delegate") or {}
    rss_before = _status_kb("VmRSS")
    _reset_peak_rss()
    result = {"threads": threads}

    t0 = time.perf_counter_ns()
    delegates = []
    if delegate_spec.get("library"):
        try:
            delegates = [runtime.load_delegate(delegate_spec["library"], delegate_spec.get("options") or {})]
        except Exception as exc:
            raise CellFailure("failed_to_load", "load", exc)
    interpreter = _load(runtime, path, threads, delegates)
    t1 = time.perf_counter_ns()
    _allocate(interpreter)
    t2 = time.perf_counter_ns()
    result["model_bytes"] = os.path.getsize(path)

    inputs = _io(interpreter, "inputs")
    outputs = _io(interpreter, "outputs")
    nodes = _nodes(interpreter)
    stateful = None if nodes is None else any(n[0] in ("VAR_HANDLE", "ASSIGN_VARIABLE") for n in nodes)
    result.update({
        "load_ms": _ms(t1 - t0),
        "allocate_ms": _ms(t2 - t1),
        "init_ms": _ms(t2 - t0),
        "inputs": [_describe(n, d) for n, d in inputs],
        "outputs": [_describe(n, d) for n, d in outputs],
        "stateful": stateful,
        "delegate": {
            "name": delegate_spec.get("name") or ("external" if delegates else "xnnpack-default"),
            "coverage": None if nodes is None else delegate_coverage(nodes),
        },
    })

    rng = np.random.default_rng(cell.get("seed", 0))
    try:
        for _, d in inputs:
            interpreter.set_tensor(d["index"], random_input(d, rng))
    except Exception as exc:
        raise CellFailure("invalid_input", "set_input", exc)

    # Variable tensors (e.g. LSTM state) change on every invoke: each measured
    # sequence starts from the same state.
    reset = interpreter.reset_all_variables
    invoke = interpreter.invoke
    max_runs = int(cell.get("max_runs", DEFAULTS["max_runs"]))
    try:
        reset()
        t3 = time.perf_counter_ns()
        invoke()
        result["first_inference_ms"] = _ms(time.perf_counter_ns() - t3)
        warm = timed_loop(invoke, int(cell.get("warmup", DEFAULTS["warmup"])),
                          float(cell.get("warmup_seconds", DEFAULTS["warmup_seconds"])), max_runs)
        reset()
        t4 = time.perf_counter_ns()
        if cell.get("sustained_s"):
            samples, stamps, readings, method = sustained_loop(invoke, float(cell["sustained_s"]))
            result.update(sample_t_ms=[_ms(t) for t in stamps], telemetry=readings, power_method=method)
        else:
            samples = timed_loop(invoke, int(cell.get("runs", DEFAULTS["runs"])),
                                 float(cell.get("min_seconds", DEFAULTS["min_seconds"])), max_runs)
    except Exception as exc:
        raise CellFailure("failed_to_invoke", "invoke", exc)
    rss_after = _status_kb("VmRSS")
    result.update({
        "warmup_runs": len(warm),
        "samples_ms": [_ms(s) for s in samples],
        "clock_ns": {"load": t0, "timed": t4},
        "rss_before_mb": _mb(rss_before),
        "rss_after_mb": _mb(rss_after),
        "peak_rss_mb": _mb(_status_kb("VmHWM")),
        "rss_growth_mb": _mb(rss_after - rss_before) if None not in (rss_before, rss_after) else None,
    })

    if cell.get("eval_inputs"):
        if stateful is not False:
            # reset_all_variables() leaves resource variables as they are (ai-edge-litert
            # 2.3, tflite-runtime 2.14): evaluate with a fresh interpreter, so the
            # outputs do not depend on how many timed runs came before.
            interpreter = _load(runtime, path, threads, delegates)
            _allocate(interpreter)
        try:
            interpreter.reset_all_variables()
            result["eval_outputs"] = _eval_outputs(interpreter, inputs, outputs, cell["eval_inputs"],
                                                   int(cell.get("max_output_values", 4000000)))
        except Exception as exc:
            raise CellFailure("invalid_input", "evaluate", exc)

    result["status"] = "ok"
    result["error"] = None
    return result


def summarize(samples_ms):
    """Percentiles of raw samples; shared by the agent's standalone mode and the host."""
    if not samples_ms:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "mean": None, "std": None, "min": None, "max": None}
    a = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "count": int(a.size),
        "p50": round(float(p50), 6),
        "p90": round(float(p90), 6),
        "p99": round(float(p99), 6),
        "mean": round(float(a.mean()), 6),
        "std": round(float(a.std(ddof=1)) if a.size > 1 else 0.0, 6),
        "min": round(float(a.min()), 6),
        "max": round(float(a.max()), 6),
    }
