"""LiteRT/TFLite's native ``benchmark_model`` tool: its command line, and a parser for what it prints.

On Android the usual way to measure a model is the prebuilt ``benchmark_model``
binary run over ``adb shell``. It reports aggregates only, so a cell measured
with it has no raw samples, no p90/p99 and no outputs (see ``UNAVAILABLE``).

What the tool prints (tflite/tools/benchmark/benchmark_model.cc and
benchmark_tflite_model.cc; statistics from tsl's stats_calculator.h), each line
possibly prefixed by ``INFO: ``/``ERROR: `` or by logcat's
``07-14 13:14:52.099 22838 22838 I tflite  : ``::

    Num threads: [4]
    Loaded model /data/local/tmp/m.tflite
    Replacing 539 out of 548 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 19 partitions for subgraph 0.
    The input model file size (MB): 3.06409
    Initialized session in 92.318ms.
    Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
    count=3 first=235158 curr=200386 min=199462 max=235158 avg=211669 std=16613 p5=199462 median=200386 p95=235158
    Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
    count=50 first=187533 curr=140990 min=140071 max=195121 avg=145528 std=13583 p5=140545 median=141253 p95=187533
    Inference timings in us: Init: 92318, First inference: 235158, Warmup (avg): 211669, Inference (avg): 145528
    Memory footprint delta from the start of the tool (MB): init=54.2852 overall=73.4102
    Overall peak memory footprint (MB) via periodic monitoring: 80.3125

The first statistics line is the warm-up phase, the second the timed runs
(microseconds). ``p5= median= p95=`` exist only in newer builds
(StatWithPercentiles); identical samples print ``count=N curr=X(all same)``.
Older builds end with ``Average inference timings in us: Warmup: W, Init: I,
Inference: X`` instead. Memory figures are ru_maxrss based: the peak is the
process's peak RSS, the deltas are growths of that peak from the tool's start.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..common.errors import EdgebenchError

# CELL fields this tool cannot fill: it reports aggregates of its own random-input runs only.
UNAVAILABLE = ["latency_ms.samples", "latency_ms.p90", "latency_ms.p99", "latency_ms.p50_ci95", "inputs",
               "outputs", "accuracy", "model_sha256", "runtime.version"]

_PREFIX = re.compile(r"^(?:\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*?\s*:\s?)?"
                     r"(?:(INFO|ERROR|WARNING|WARN|VERBOSE|FATAL): )?")
OP_PROFILE = "Operator-wise Profiling Info"
MAX_OP_PROFILE = 20000
MAX_FIGURE = 1e13  # microseconds (~4 months), MB or counts: anything larger is garbage, not a measurement
_STATS = re.compile(r"^count=(\d+)(.*)$")
_DELEGATES = {"TfLiteXNNPackDelegate": "xnnpack", "TfLiteGpuDelegateV2": "gpu", "TfLiteGpuDelegate": "gpu",
              "TfLiteNnapiDelegate": "nnapi", "TfLiteHexagonDelegate": "hexagon", "TfLiteCoreMlDelegate": "coreml"}
# (status, pattern) in order of precedence: the most specific cause of a failed run wins.
_FAILURES = [
    ("failed_to_load", re.compile(r"Encountered unresolved custom op: ?([^\s.]+)")),
    ("failed_to_load", re.compile(r"Didn't find op for builtin opcode '[^']+' version '\d+'")),
    ("failed_to_load", re.compile(r"Failed to (?:load|mmap) model|Failed to initialize model loader|"
                                  r"Could not open '|Please specify the name of your TF Lite input file|"
                                  r"Failed to initialize the interpreter|Model provided has model identifier")),
    ("failed_to_prepare", re.compile(r"Failed to apply (\S+) delegate")),
    ("failed_to_prepare", re.compile(r"Disallowed CPU fallback detected|Failed to allocate tensors|"
                                     r"failed to prepare")),
    ("failed_to_invoke", re.compile(r"failed to invoke|Failed to invoke")),
]
_SIGNALS = {4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV"}


def _bool(value: bool) -> str:
    return "true" if value else "false"


def benchmark_model_argv(
    binary: str, graph: str, *, threads: int | None = None, use_xnnpack: bool | None = None, use_gpu: bool = False,
    use_nnapi: bool = False, external_delegate_path: str | None = None,
    external_delegate_options: dict[str, Any] | None = None, num_runs: int = 50, warmup_runs: int = 1,
    min_secs: float | None = None, warmup_min_secs: float | None = None, max_secs: float | None = None,
    report_peak_memory_footprint: bool = True, enable_op_profiling: bool = False, taskset: str | None = None,
) -> list[str]:
    """The argv of one ``benchmark_model`` run (flag names as in benchmark_model.cc and the delegate providers).

    ``use_xnnpack=None`` leaves the runtime's default (XNNPACK applied to float graphs); an explicit
    ``False`` switches it off. ``taskset`` is a hex CPU mask (e.g. ``f0`` for big cores).
    """
    argv = [binary, f"--graph={graph}", f"--num_runs={int(num_runs)}", f"--warmup_runs={int(warmup_runs)}"]
    if taskset is not None:
        if not re.fullmatch(r"[0-9a-fA-F]+", taskset):
            raise EdgebenchError(f"taskset must be a hexadecimal CPU mask like f0, not {taskset!r}")
        argv = ["taskset", taskset] + argv
    for name, value in (("min_secs", min_secs), ("warmup_min_secs", warmup_min_secs), ("max_secs", max_secs)):
        if value is not None:
            argv.append(f"--{name}={float(value):g}")
    if threads is not None:
        argv.append(f"--num_threads={int(threads)}")
    if use_xnnpack is not None:
        argv.append(f"--use_xnnpack={_bool(use_xnnpack)}")
    if use_gpu:
        argv.append("--use_gpu=true")
    if use_nnapi:
        argv.append("--use_nnapi=true")
    if external_delegate_path:
        argv.append(f"--external_delegate_path={external_delegate_path}")
        if external_delegate_options:
            # The external delegate provider splits on ';' then ':', with no escaping.
            items = [(str(k), str(v).lower() if isinstance(v, bool) else str(v))
                     for k, v in external_delegate_options.items()]
            bad = [f"{k}:{v}" for k, v in items if any(c in k + v for c in ":;")]
            if bad:
                raise EdgebenchError(f"delegate option {bad[0]!r} cannot be passed to benchmark_model: "
                                     f"keys and values must not contain ':' or ';'")
            argv.append("--external_delegate_options=" + ";".join(f"{k}:{v}" for k, v in items))
    if report_peak_memory_footprint:
        argv.append("--report_peak_memory_footprint=true")
    if enable_op_profiling:
        argv.append("--enable_op_profiling=true")
    return argv


def _lines(text: str) -> list[tuple[str | None, str]]:
    """(log level or None, message) for every line, without INFO:/logcat prefixes."""
    out = []
    for raw in text.splitlines():
        m = _PREFIX.match(raw)
        assert m is not None  # the pattern matches the empty prefix
        out.append((m.group(1), raw[m.end():].strip()))
    return out


class _Unparsable(ValueError):
    """A figure in the tool's output that is not a finite, non-negative number."""


def _float(text: str, what: str = "a figure") -> float:
    try:
        value = float(text)
    except ValueError:
        raise _Unparsable(f"{what} is not a number: {text[:40]!r}") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_FIGURE:
        raise _Unparsable(f"{what} is out of range: {text[:40]!r}")
    return value


def _count(text: str, what: str = "a node count") -> int:
    """A count the tool printed (nodes, partitions, kernels): digits of a plausible size."""
    if not text.isdigit() or len(text) > 9:
        raise _Unparsable(f"{what} is out of range: {text[:40]!r}")
    return int(text)


def _stats(message: str) -> dict[str, float] | None:
    """``count=50 first=.. curr=.. min=.. max=.. avg=.. std=.. [p5=.. median=.. p95=..]`` in microseconds."""
    m = _STATS.match(message)
    if m is None:
        return None
    values: dict[str, float] = {"count": _float(m.group(1), "count")}
    values.update({k: _float(v, k) for k, v in re.findall(r"(\w+)=([-+\d.eE]+)", m.group(2))})
    if "(all same)" in m.group(2) or ("curr" in values and "avg" not in values):
        same = values["curr"]
        values.update(first=same, min=same, max=same, avg=same, std=0.0)
    return values


def _number(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text, re.M)
    return _float(m.group(1)) if m else None


def _latency_ms(us: dict[str, float]) -> dict[str, Any] | None:
    """CELL latency_ms from the tool's statistics; ``count`` None when only the mean is known."""
    if "avg" not in us:
        return None
    ms = {k: v / 1000.0 for k, v in us.items() if k != "count"}
    mean, std = ms["avg"], ms.get("std")
    count = int(us["count"]) if us.get("count") else None
    return {
        "samples": None, "count": count, "p50": ms.get("median"), "p90": None, "p99": None,
        "mean": mean, "std": std, "min": ms.get("min"), "max": ms.get("max"), "p50_ci95": None,
        "cv": round(std / mean, 4) if mean and std is not None and (count or 0) > 1 else None,
    }


def _delegate(lines: list[tuple[str | None, str]]) -> dict[str, Any] | None:
    """The delegate that took the graph, with its coverage, from the runtime's own log lines."""
    found: dict[str, Any] | None = None
    for _, msg in lines:
        replaced = re.search(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\) node, "
                             r"yielding (\d+) partitions?(?: for subgraph (\d+))?", msg)
        if replaced and (replaced.group(5) in (None, "0")):
            name = _DELEGATES.get(replaced.group(3), replaced.group(3))
            delegated, total = _count(replaced.group(1)), _count(replaced.group(2))
            if delegated > total:
                raise _Unparsable(f"{delegated} of {total} nodes delegated")
            found = {"name": name, "coverage": {"partitions": _count(replaced.group(4)), "cpu_ops": total - delegated}}
            continue
        applied = re.search(r"(?:Explicitly applied|Though) (\S+) delegate", msg)
        if applied:
            name = applied.group(1).lower()
            if found is None or found["name"] != name:
                if "completely executed" in msg:
                    coverage: dict[str, Any] | None = {"partitions": 1, "cpu_ops": 0}
                elif "will not be" in msg:
                    coverage = {"partitions": 0, "cpu_ops": None}
                else:
                    kernels = re.search(r"w/ (\d+) delegate kernels", msg)
                    coverage = {"partitions": _count(kernels.group(1)), "cpu_ops": None} if kernels else None
                found = {"name": name, "coverage": coverage}
        elif found is None and re.search(r"Created TensorFlow Lite XNNPACK delegate", msg):
            found = {"name": "xnnpack", "coverage": None}
    return found


def _failure(lines: list[tuple[str | None, str]], returncode: int | None) -> tuple[str, str] | None:
    """(status, short error) when the run failed, else None."""
    messages = [msg for _, msg in lines]
    for status, pattern in _FAILURES:
        for i, msg in enumerate(messages):
            if pattern.search(msg):
                # The delegate's own explanation ("Following operations are not supported ...") comes first.
                context = [m for lvl, m in lines[max(0, i - 3):i] if lvl == "ERROR" and m]
                return status, "; ".join(context + [msg])[:500]
    if returncode is not None and (returncode < 0 or returncode > 128):
        sig = -returncode if returncode < 0 else returncode - 128
        return "crashed", f"benchmark_model died with {_SIGNALS.get(sig, f'signal {sig}')}"
    crash = next((m for m in messages if re.search(r"Segmentation fault|Aborted|Bus error|Illegal instruction", m)),
                 None)
    if crash:
        return "crashed", crash[:300]
    if any(m.startswith("Benchmarking failed") for m in messages) or (returncode not in (None, 0)):
        errors = [m for lvl, m in lines if lvl == "ERROR" and m]
        return "failed_to_invoke", "; ".join(errors[-3:])[:500] or f"benchmark_model exited with {returncode}"
    return None


def _phases(lines: list[tuple[str | None, str]]) -> list[dict[str, float]]:
    """The statistics line of each phase (warm-up, then the timed runs), in order."""
    phases: list[dict[str, float]] = []
    in_phase = False
    stray: list[dict[str, float]] = []  # statistics without their "Running benchmark" line (filtered logs)
    for _, msg in lines:
        if msg.startswith("Running benchmark for at least"):
            in_phase = True
            continue
        stats = _stats(msg)
        if stats is not None:
            (phases if in_phase else stray).append(stats)
            in_phase = False
    return phases or stray


def _timings(body: str) -> tuple[list[float], str]:
    """The tool's summary line in microseconds: [init, first, warm-up avg, inference avg] (new builds) or
    [warm-up, init, inference] (old builds); which one it was. Unanchored: a line may keep a prefix the
    log-level pattern does not know (`adb logcat | grep` output)."""
    new = re.search(r"Inference timings in us: Init: (\S+), First inference: (\S+), "
                    r"Warmup \(avg\): (\S+), Inference \(avg\): ([^\s,]+)", body)
    if new:
        return [_float(x.rstrip(","), "a timing") for x in new.groups()], "new"
    old = re.search(r"Average inference timings in us: Warmup: (\S+), Init: (\S+), Inference: ([^\s,]+)", body)
    if old:
        return [_float(x.rstrip(","), "a timing") for x in old.groups()], "old"
    return [], "none"


def parse_benchmark_output(text: str, returncode: int | None = None) -> dict[str, Any]:
    """A cell's fields from one run of ``benchmark_model`` (stdout and stderr together, or logcat lines).

    Returns the CELL fields the tool can fill (status, error, stderr_tail, latency_ms without samples,
    init_ms, first_inference_ms, peak_rss_mb, rss_growth_mb, threads, delegate, runtime),
    ``unavailable`` (what it cannot give) and ``benchmark_model`` (its own figures, microseconds and MB).
    Output that cannot be parsed is an ``invalid_output`` result, never an exception.
    """
    try:
        return _parse(text, returncode)
    except _Unparsable as exc:
        return {"status": "invalid_output", "error": f"benchmark_model output: {exc}", "stderr_tail": text[-2000:],
                "latency_ms": None, "init_ms": None, "first_inference_ms": None, "peak_rss_mb": None,
                "rss_growth_mb": None, "threads": None, "delegate": None,
                "runtime": {"name": "benchmark_model", "version": None},
                "unavailable": [*UNAVAILABLE, "latency_ms.p50"], "benchmark_model": {}}


def _parse(text: str, returncode: int | None) -> dict[str, Any]:
    lines = _lines(text)
    body = "\n".join(msg for _, msg in lines)
    phases = _phases(lines)
    warmup = phases[-2] if len(phases) >= 2 else None
    inference = phases[-1] if phases else None
    summary, kind = _timings(body)
    init_us = summary[0] if kind == "new" else summary[1] if kind == "old" else None
    first_us = summary[1] if kind == "new" else (warmup or {}).get("first")
    avg_us = summary[-1] if summary else None
    if inference is None and avg_us is not None:
        inference = {"count": 0.0, "avg": avg_us}  # only the summary line survived: the mean is all that is known
    threads = re.search(r"(?:^Num threads|#threads used for CPU inference): \[(-?\d{1,6})\]", body, re.M)
    peak = _number(r"Overall peak memory footprint \(MB\) via periodic monitoring: (\S+)", body)
    mem = re.search(r"Memory footprint delta from the start of the tool \(MB\): init=(\S+) overall=(\S+)", body)
    failure = _failure(lines, returncode)
    if failure is None and not summary:
        failure = ("invalid_output", "no 'Inference timings' line in the benchmark_model output")
    latency = _latency_ms(inference) if inference and failure is None else None
    unavailable = list(UNAVAILABLE) + ([] if latency and latency["p50"] is not None else ["latency_ms.p50"])
    return {
        "status": failure[0] if failure else "ok",
        "error": failure[1] if failure else None,
        "stderr_tail": text[-2000:] if failure else None,
        "latency_ms": latency,
        "init_ms": init_us / 1000.0 if init_us is not None and failure is None else None,
        "first_inference_ms": first_us / 1000.0 if first_us is not None and failure is None else None,
        "peak_rss_mb": peak if peak is not None and peak > 0 else None,
        "rss_growth_mb": _float(mem.group(2)) if mem else None,
        "threads": int(threads.group(1)) if threads and int(threads.group(1)) > 0 else None,
        "delegate": _delegate(lines),
        "runtime": {"name": "benchmark_model", "version": None},
        "unavailable": unavailable,
        "benchmark_model": {
            "model_size_mb": _number(r"The input model file size \(MB\): (\S+)", body),
            "warmup_us": warmup,
            "inference_us": inference if latency else None,
            "inference_avg_us": avg_us,
            "init_memory_mb": _float(mem.group(1)) if mem else None,
            "unconsumed_flags": re.findall(r"Unconsumed cmdline flags: (.*)$", body, re.M)[:20],
            # --enable_op_profiling: the tool's per-op tables, kept as it printed them
            "op_profile": body[body.index(OP_PROFILE):][:MAX_OP_PROFILE] if OP_PROFILE in body else None,
        },
    }
