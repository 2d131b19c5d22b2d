"""Measure one model with one interpreter. Runs inside a child process per model.

Result fields (all times in milliseconds, samples with 0.1 us resolution):
status ("ok", "failed_to_load", "failed_to_prepare", "failed_to_invoke",
"invalid_input"), error, phase, model_bytes, load_ms, allocate_ms, init_ms,
first_inference_ms, samples_ms, warmup_runs, rss_before_mb, rss_after_mb,
peak_rss_mb, rss_growth_mb, threads, delegate, inputs, outputs, stateful,
eval_outputs.
"""

import base64
import os
import time

import numpy as np

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


def _timed_loop(invoke, runs, min_seconds, max_runs):
    """Time invoke() alone: the loop body is two clock reads and an append."""
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


def _ms(ns):
    return round(ns / 1e6, 4)


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


def _delegate_coverage(interpreter):
    """How the graph was partitioned, where the runtime can tell us (LiteRT only)."""
    try:
        ops = interpreter._get_ops_details()
    except Exception:
        return None
    names = [op.get("op_name", "") for op in ops]
    delegated = [n for n in names if "DELEGATE" in n.upper()]
    return {"partitions": len(delegated), "cpu_ops": len(names) - len(delegated)}


def measure(cell, runtime):
    """Measure one cell; raises CellFailure for a model the runtime cannot run."""
    path = cell["model_path"]
    threads = cell.get("threads")
    delegate_spec = cell.get("delegate")
    rss_before = _status_kb("VmRSS")
    _reset_peak_rss()
    result = {"model_bytes": os.path.getsize(path), "threads": threads}

    t0 = time.perf_counter_ns()
    try:
        delegates = []
        if delegate_spec and delegate_spec.get("library"):
            delegates = [runtime.load_delegate(delegate_spec["library"], delegate_spec.get("options") or {})]
        kwargs = {"model_path": path, "num_threads": threads}
        if delegates:
            kwargs["experimental_delegates"] = delegates
        interpreter = runtime.interpreter_cls(**kwargs)
    except Exception as exc:
        raise CellFailure("failed_to_load", "load", exc)
    t1 = time.perf_counter_ns()
    try:
        inputs = _io(interpreter, "inputs")
        for _, d in inputs:
            sig = d.get("shape_signature")
            if sig is not None and any(int(x) < 0 for x in sig):
                interpreter.resize_tensor_input(d["index"], [1 if int(x) < 0 else int(x) for x in sig])
        interpreter.allocate_tensors()
    except Exception as exc:
        raise CellFailure("failed_to_prepare", "allocate", exc)
    t2 = time.perf_counter_ns()

    inputs = _io(interpreter, "inputs")  # shapes are final only after allocation
    outputs = _io(interpreter, "outputs")
    result.update({
        "load_ms": _ms(t1 - t0),
        "allocate_ms": _ms(t2 - t1),
        "init_ms": _ms(t2 - t0),
        "inputs": [_describe(n, d) for n, d in inputs],
        "outputs": [_describe(n, d) for n, d in outputs],
        "delegate": {
            "name": (delegate_spec or {}).get("name") or ("external" if delegates else "xnnpack-default"),
            "coverage": _delegate_coverage(interpreter) if runtime.name == "ai_edge_litert" else None,
        },
    })

    rng = np.random.default_rng(cell.get("seed", 0))
    try:
        for _, d in inputs:
            interpreter.set_tensor(d["index"], random_input(d, rng))
    except Exception as exc:
        raise CellFailure("invalid_input", "set_input", exc)

    # Stateful models change their variables on every invoke: each measured
    # sequence starts from the same state.
    reset = getattr(interpreter, "reset_all_variables", lambda: None)
    invoke = interpreter.invoke
    try:
        reset()
        t3 = time.perf_counter_ns()
        invoke()
        result["first_inference_ms"] = _ms(time.perf_counter_ns() - t3)
        warm = _timed_loop(invoke, int(cell.get("warmup", 1)), float(cell.get("warmup_seconds", 0.5)),
                           int(cell.get("max_runs", 10000)))
        reset()
        samples = _timed_loop(invoke, int(cell.get("runs", 50)), float(cell.get("min_seconds", 1.0)),
                              int(cell.get("max_runs", 10000)))
    except Exception as exc:
        raise CellFailure("failed_to_invoke", "invoke", exc)
    result["warmup_runs"] = len(warm)
    result["samples_ms"] = [_ms(s) for s in samples]

    if cell.get("eval_inputs"):
        try:
            reset()
            result["eval_outputs"] = _eval_outputs(interpreter, inputs, outputs, cell["eval_inputs"],
                                                   int(cell.get("max_output_values", 4000000)))
        except Exception as exc:
            raise CellFailure("invalid_input", "evaluate", exc)

    rss_after = _status_kb("VmRSS")
    result.update({
        "rss_before_mb": _mb(rss_before),
        "rss_after_mb": _mb(rss_after),
        "peak_rss_mb": _mb(_status_kb("VmHWM")),
        "rss_growth_mb": _mb(rss_after - rss_before) if None not in (rss_before, rss_after) else None,
    })
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
        "p50": round(float(p50), 4),
        "p90": round(float(p90), 4),
        "p99": round(float(p99), 4),
        "mean": round(float(a.mean()), 4),
        "std": round(float(a.std(ddof=1)) if a.size > 1 else 0.0, 4),
        "min": round(float(a.min()), 4),
        "max": round(float(a.max()), 4),
    }
