"""Parsers for the native tools' output: LiteRT's `benchmark_model` and Coral's `edgetpu_compiler`.

Neither tool can run here (benchmark_model is an Android/ARM binary built with
Bazel; edgetpu_compiler comes from Coral's apt repository, which this machine
cannot reach), so the samples below are written in the formats the tools
print. Where each format comes from:

* benchmark_model: the TFLITE_LOG lines of tflite/tools/benchmark/benchmark_model.cc
  (``Inference timings in us: ...``, memory lines), Stat::OutputToStream and
  StatWithPercentiles in tsl's stats_calculator.h (``count= first= curr= min=
  max= avg= std=`` then ``p5= median= p95=``; ``count=N curr=X(all same)``),
  benchmark_tflite_model.cc (``Failed to apply X delegate.``, ``Explicitly
  applied X delegate, ...``, ``Failed to load model``), benchmark_main.cc
  (``Benchmarking failed.``), the interpreter's ``Replacing N out of M node(s)
  with delegate (...)`` log, the README's older ``Average inference timings in
  us`` example, and logcat-prefixed runs published in issues and blog posts.
* edgetpu_compiler: compiler output quoted in google-coral/edgetpu issues #60,
  #168, #313, #393, #490 and WongKinYiu/yolov7 #1672 (versions 2.1 to 16),
  including the ``.log`` file layout and ``Invalid model: ... Model not quantized``.
"""

from __future__ import annotations

import os
import stat
from typing import Any
from pathlib import Path

import pytest

from harness.fleet.benchmark_model import UNAVAILABLE, benchmark_model_argv, parse_benchmark_output
from harness.fleet.jobs import ModelVariant
from harness.results.record import Cell, Status, build_cell
from harness.conversion.edgetpu import compile_for_edgetpu, parse_compiler_output
from harness.common.errors import EdgebenchError

# --- benchmark_model --------------------------------------------------------------------------------------

# A current build on a phone, read back with `adb logcat` (every line carries logcat's prefix).
LOGCAT_RUN = """\
03-02 10:41:07.310  8812  8812 I tflite  : Log parameter values verbosely: [0]
03-02 10:41:07.310  8812  8812 I tflite  : Num threads: [4]
03-02 10:41:07.310  8812  8812 I tflite  : Graph: [/data/local/tmp/edgebench/cache/3f9a.tflite]
03-02 10:41:07.311  8812  8812 I tflite  : Loaded model /data/local/tmp/edgebench/cache/3f9a.tflite
03-02 10:41:07.312  8812  8812 I tflite  : Initialized TensorFlow Lite runtime.
03-02 10:41:07.318  8812  8812 I tflite  : Created TensorFlow Lite XNNPACK delegate for CPU.
03-02 10:41:07.320  8812  8812 I tflite  : Replacing 64 out of 66 node(s) with delegate (TfLiteXNNPackDelegate) \
node, yielding 2 partitions for subgraph 0.
03-02 10:41:07.402  8812  8812 I tflite  : The input model file size (MB): 13.9874
03-02 10:41:07.402  8812  8812 I tflite  : Initialized session in 88.412ms.
03-02 10:41:07.402  8812  8812 I tflite  : Running benchmark for at least 1 iterations and at least 0.5 seconds \
but terminate if exceeding 150 seconds.
03-02 10:41:07.905  8812  8812 I tflite  : count=31 first=24410 curr=15880 min=15402 max=24410 avg=16210.3 \
std=1502 p5=15420 median=15903 p95=17212
03-02 10:41:07.905  8812  8812 I tflite  : Running benchmark for at least 50 iterations and at least 1 seconds \
but terminate if exceeding 150 seconds.
03-02 10:41:08.911  8812  8812 I tflite  : count=62 first=15991 curr=16012 min=15377 max=19870 avg=16150.2 \
std=611 p5=15488 median=16001 p95=17304
03-02 10:41:08.911  8812  8812 I tflite  : Inference timings in us: Init: 88412, First inference: 24410, \
Warmup (avg): 16210.3, Inference (avg): 16150.2
03-02 10:41:08.911  8812  8812 I tflite  : Note: as the benchmark tool itself affects memory footprint, the \
following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your \
discretion.
03-02 10:41:08.911  8812  8812 I tflite  : Memory footprint delta from the start of the tool (MB): init=31.5625 \
overall=40.0469
03-02 10:41:08.911  8812  8812 I tflite  : Overall peak memory footprint (MB) via periodic monitoring: 45.7031
03-02 10:41:08.911  8812  8812 I tflite  : Memory status at the end of exeution:
03-02 10:41:08.911  8812  8812 I tflite  : - VmRSS              : 44 MB
"""

# An older build run through `adb shell` (INFO: prefixes, no percentiles), GPU delegate fully applied,
# one warm-up run (all samples the same), and a misspelled flag that the tool ignores.
SHELL_RUN_GPU = """\
INFO: STARTING!
WARN: Unconsumed cmdline flags: --num_thread=2
INFO: Log parameter values verbosely: [0]
INFO: Graph: [/data/local/tmp/mobilenet_v2_fp16.tflite]
INFO: Use gpu: [1]
INFO: Loaded model /data/local/tmp/mobilenet_v2_fp16.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite delegate for GPU.
INFO: GPU delegate created.
INFO: Replacing 66 out of 66 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 partitions.
INFO: Initialized OpenCL-based API.
INFO: Created 1 GPU delegate kernels.
INFO: Explicitly applied GPU delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 6.98012
INFO: Initialized session in 1402.73ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=1 curr=610224

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=121 first=8420 curr=8310 min=8154 max=9871 avg=8377.42 std=212

INFO: Inference timings in us: Init: 1402730, First inference: 610224, Warmup (avg): 610224, Inference (avg): 8377.42
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual \
memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=118.16 overall=121.34
"""

# The README's example of the oldest output: no log prefix, summary line "Average inference timings".
OLDEST_RUN = """\
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=12 first=156677 curr=33205 min=32578 max=156677 avg=43268.1 std=34197

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929

Average inference timings in us: Warmup: 43268.1, Init: 38467, Inference: 79760.9
"""

# With --enable_op_profiling the per-op tables end with their own statistics lines, which are not latencies.
PROFILED_TAIL = """\
============================== Summary by node type ==============================
\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t                 CONV_2D\t       15\t     1.406\t    89.270%\t    89.270%\t     0.000\t        0

Timings (microseconds): count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929
Memory (bytes): count=0
31 nodes observed
"""

XNNPACK_FAILED = """\
INFO: Loaded model /data/local/tmp/m.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
ERROR: XNNPACK delegate failed to reshape runtime
ERROR: Node number 66 (TfLiteXNNPackDelegate) failed to prepare.
ERROR: Failed to apply XNNPACK delegate.
ERROR: Benchmarking failed.
"""

GPU_FAILED = """\
INFO: Created TensorFlow Lite delegate for GPU.
ERROR: Following operations are not supported by GPU delegate:
ERROR: CUSTOM Convolution2DTransposeBias: Operation is not supported.
ERROR: Failed to apply GPU delegate.
ERROR: Benchmarking failed.
"""

MODEL_MISSING = """\
INFO: STARTING!
INFO: Graph: [/data/local/tmp/missing.tflite]
ERROR: Could not open '/data/local/tmp/missing.tflite'.
ERROR: Failed to mmap model /data/local/tmp/missing.tflite
ERROR: Benchmarking failed.
"""

CUSTOM_OP = """\
INFO: Loaded model /data/local/tmp/selfie_segmentation.tflite
ERROR: Encountered unresolved custom op: Convolution2DTransposeBias.
See instructions: https://www.tensorflow.org/lite/guide/ops_custom
ERROR: Node number 244 (Convolution2DTransposeBias) failed to prepare.
ERROR: Failed to initialize the interpreter
ERROR: Benchmarking failed.
"""

OP_VERSION = """\
ERROR: Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'. An older version of this builtin might be \
supported. Are you using an old TFLite binary with a newer model?

ERROR: Registration failed.

ERROR: Failed to initialize the interpreter
ERROR: Benchmarking failed.
"""

INVOKE_FAILED = """\
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
ERROR: tensorflow/lite/kernels/reshape.cc:92 num_input_elements != num_output_elements (1200 != 1000)
ERROR: Node number 3 (RESHAPE) failed to invoke.
INFO: count=1 curr=512

ERROR: Benchmarking failed.
"""

CRASHED = """\
INFO: Initialized session in 12.1ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
"""


def _cell(parsed: dict[str, Any]) -> Cell:
    """The cell the runner builds from one benchmark_model run."""
    mv = ModelVariant("m", "fp32", None)
    return build_cell("phone", mv, Status(parsed["status"]), parsed["error"],
                      {k: v for k, v in parsed.items() if k not in ("status", "error")})  # type: ignore[arg-type]


def test_current_build_read_from_logcat() -> None:
    r = parse_benchmark_output(LOGCAT_RUN, returncode=0)
    assert (r["status"], r["error"], r["stderr_tail"]) == ("ok", None, None)
    lat = r["latency_ms"]
    assert lat["count"] == 62  # the timed runs, not the 31 warm-up runs
    assert lat["mean"] == pytest.approx(16.1502) and lat["p50"] == pytest.approx(16.001)
    assert (lat["min"], lat["max"], lat["std"]) == pytest.approx((15.377, 19.870, 0.611))
    assert lat["cv"] == pytest.approx(0.611 / 16.1502, abs=1e-4)
    assert lat["samples"] is None and lat["p90"] is None and lat["p99"] is None
    assert r["init_ms"] == pytest.approx(88.412) and r["first_inference_ms"] == pytest.approx(24.41)
    assert r["peak_rss_mb"] == pytest.approx(45.7031) and r["rss_growth_mb"] == pytest.approx(40.0469)
    assert r["threads"] == 4
    assert r["delegate"] == {"name": "xnnpack", "coverage": {"partitions": 2, "cpu_ops": 2}}
    # Flags are the cell's, computed where every cell is built: the tool's own coverage line shows the fallback.
    assert _cell(r)["flags"] == ["cpu_fallback", "too_few_samples_p90", "too_few_samples_p99"]
    assert set(UNAVAILABLE) <= set(r["unavailable"]) and "latency_ms.samples" in r["unavailable"]
    bm = r["benchmark_model"]
    assert bm["model_size_mb"] == pytest.approx(13.9874) and bm["init_memory_mb"] == pytest.approx(31.5625)
    assert bm["warmup_us"]["count"] == 31 and bm["warmup_us"]["p95"] == 17212
    assert bm["inference_us"]["p5"] == 15488


def test_older_build_gpu_delegate_all_same_warmup_and_ignored_flag() -> None:
    r = parse_benchmark_output(SHELL_RUN_GPU, returncode=0)
    assert r["status"] == "ok"
    assert r["latency_ms"]["count"] == 121 and r["latency_ms"]["mean"] == pytest.approx(8.37742)
    assert r["latency_ms"]["p50"] is None and "latency_ms.p50" in r["unavailable"]  # no percentiles before LiteRT
    assert r["benchmark_model"]["warmup_us"] == {"count": 1, "curr": 610224, "first": 610224, "min": 610224,
                                                 "max": 610224, "avg": 610224, "std": 0.0}
    assert r["first_inference_ms"] == pytest.approx(610.224) and r["init_ms"] == pytest.approx(1402.73)
    assert r["delegate"] == {"name": "gpu", "coverage": {"partitions": 1, "cpu_ops": 0}}
    assert r["peak_rss_mb"] is None and r["rss_growth_mb"] == pytest.approx(121.34)
    assert r["benchmark_model"]["unconsumed_flags"] == ["--num_thread=2"]
    assert r["threads"] is None


def test_oldest_format_and_op_profiling_tables() -> None:
    r = parse_benchmark_output(OLDEST_RUN + PROFILED_TAIL)
    assert r["status"] == "ok"
    assert r["latency_ms"]["count"] == 50 and r["latency_ms"]["mean"] == pytest.approx(79.732)
    assert r["init_ms"] == pytest.approx(38.467)
    assert r["first_inference_ms"] == pytest.approx(156.677)  # the warm-up phase's first run
    assert r["benchmark_model"]["warmup_us"]["count"] == 12
    assert r["delegate"] is None


def test_only_the_summary_line_survived_a_grep() -> None:
    line = "... tflite  : Inference timings in us: Init: 5685, First inference: 18535, Warmup (avg): 14462.3, " \
           "Inference (avg): 14575.2\n"
    r = parse_benchmark_output(line)
    assert r["status"] == "ok"
    assert r["latency_ms"]["mean"] == pytest.approx(14.5752) and r["latency_ms"]["count"] is None
    assert _cell(r)["flags"] == []


@pytest.mark.parametrize("text, returncode, status, error_part", [
    (XNNPACK_FAILED, 1, "failed_to_prepare", "Failed to apply XNNPACK delegate"),
    (GPU_FAILED, 1, "failed_to_prepare", "Convolution2DTransposeBias: Operation is not supported"),
    (MODEL_MISSING, 1, "failed_to_load", "Could not open '/data/local/tmp/missing.tflite'"),
    ("ERROR: Failed to load model /data/local/tmp/x.tflite\nERROR: Benchmarking failed.\n", 1, "failed_to_load",
     "Failed to load model"),
    (CUSTOM_OP, 1, "failed_to_load", "unresolved custom op: Convolution2DTransposeBias"),
    (OP_VERSION, 1, "failed_to_load", "opcode 'FULLY_CONNECTED' version '12'"),
    (INVOKE_FAILED, 1, "failed_to_invoke", "Node number 3 (RESHAPE) failed to invoke"),
    (CRASHED, 139, "crashed", "SIGSEGV"),
    (CRASHED + "Segmentation fault\n", None, "crashed", "Segmentation fault"),
    ("/system/bin/sh: /data/local/tmp/benchmark_model: not found\n", 127, "failed_to_invoke", "exited with 127"),
    ("hello\n", 0, "invalid_output", "no 'Inference timings' line"),
])
def test_failures_become_cell_statuses(text: str, returncode: int | None, status: str, error_part: str) -> None:
    r = parse_benchmark_output(text, returncode=returncode)
    assert r["status"] == status
    assert error_part in r["error"]
    assert r["latency_ms"] is None and r["init_ms"] is None
    assert r["stderr_tail"] and r["stderr_tail"].endswith(text[-20:])


def test_failure_wins_over_partial_statistics() -> None:
    # The warm-up statistics line of a run that then failed must not turn into a latency.
    r = parse_benchmark_output(INVOKE_FAILED, returncode=1)
    assert r["status"] == "failed_to_invoke" and r["benchmark_model"]["inference_us"] is None


def test_benchmark_model_argv() -> None:
    assert benchmark_model_argv("/data/local/tmp/benchmark_model", "/data/local/tmp/m.tflite") == [
        "/data/local/tmp/benchmark_model", "--graph=/data/local/tmp/m.tflite", "--num_runs=50", "--warmup_runs=1",
        "--report_peak_memory_footprint=true"]
    argv = benchmark_model_argv(
        "bm", "m 1.tflite", threads=4, use_xnnpack=False, use_gpu=True, use_nnapi=True, num_runs=100, warmup_runs=5,
        min_secs=2, warmup_min_secs=0.5, max_secs=60, report_peak_memory_footprint=False, enable_op_profiling=True,
        taskset="f0")
    assert argv == [
        "taskset", "f0", "bm", "--graph=m 1.tflite", "--num_runs=100", "--warmup_runs=5", "--min_secs=2",
        "--warmup_min_secs=0.5", "--max_secs=60", "--num_threads=4", "--use_xnnpack=false", "--use_gpu=true",
        "--use_nnapi=true", "--enable_op_profiling=true"]


def test_delegate_options_the_tool_cannot_carry_are_refused() -> None:
    argv = benchmark_model_argv("bm", "m.tflite", external_delegate_path="/data/local/tmp/libdelegate.so",
                                external_delegate_options={"backend": "htp", "verbose": True, "level": 3})
    assert argv[-2:] == ["--external_delegate_options=backend:htp;verbose:true;level:3",
                         "--report_peak_memory_footprint=true"]
    with pytest.raises(EdgebenchError, match="must not contain"):
        benchmark_model_argv("bm", "m.tflite", external_delegate_path="/x.so",
                             external_delegate_options={"device": "usb:0"})
    with pytest.raises(EdgebenchError, match="hexadecimal"):
        benchmark_model_argv("bm", "m.tflite", taskset="f0; reboot")


# --- edgetpu_compiler -------------------------------------------------------------------------------------

PARTLY_MAPPED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 1840 ms.

Input model: mobilenet_int8.tflite
Input size: 3.87MiB
Output model: out/mobilenet_int8_edgetpu.tflite
Output size: 4.31MiB
On-chip memory used for caching model parameters: 3.42MiB
On-chip memory remaining for caching model parameters: 4.35MiB
Off-chip memory used for streaming uncached model parameters: 12.50KiB
Number of Edge TPU subgraphs: 1
Total number of operations: 72
Operation log: out/mobilenet_int8_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will \
instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported \
by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 69
Number of operations that will run on CPU: 3

Operator                       Count      Status

CONV_2D                        35         Mapped to Edge TPU
DEPTHWISE_CONV_2D              17         Mapped to Edge TPU
ADD                            10         Mapped to Edge TPU
QUANTIZE                       1          Mapped to Edge TPU
MEAN                           1          Mapped to Edge TPU
FULLY_CONNECTED                1          Mapped to Edge TPU
RESHAPE                        4          Mapped to Edge TPU
SOFTMAX                        1          More than one subgraph is not supported
DEQUANTIZE                     1          Operation is working on an unsupported data type
QUANTIZE                       1          Operation is otherwise supported, but not mapped due to some unspecified \
limitation
"""

# Everything mapped: the compiler then prints no "Number of operations that will run on ..." lines.
ALL_MAPPED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 912 ms.

Input model: cnn_int8.tflite
Input size: 41.20KiB
Output model: cnn_int8_edgetpu.tflite
Output size: 98.44KiB
On-chip memory used for caching model parameters: 36.00KiB
On-chip memory remaining for caching model parameters: 7.97MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 9
Operation log: cnn_int8_edgetpu.log

Operator                       Count      Status

QUANTIZE                       2          Mapped to Edge TPU
CONV_2D                        3          Mapped to Edge TPU
MAX_POOL_2D                    2          Mapped to Edge TPU
FULLY_CONNECTED                1          Mapped to Edge TPU
SOFTMAX                        1          Mapped to Edge TPU
"""

# The operation log file written beside the compiled model.
OPERATION_LOG = """\
Edge TPU Compiler version 15.0.340273435
Input: model.tflite
Output: ./EdgeTPU/model_edgetpu.tflite

Operator                       Count      Status

CONCATENATION                  1          More than one subgraph is not supported
MAX_POOL_2D                    6          Mapped to Edge TPU
RESIZE_NEAREST_NEIGHBOR        1          Operation version not supported
CONV_2D                        11         Mapped to Edge TPU
"""

NOT_QUANTIZED = """\
Edge TPU Compiler version 14.1.317412892
Invalid model: my_mnist_fp32.tflite
Model not quantized
"""

INTERNAL_ERROR = """\
Edge TPU Compiler version 2.0.291256449

Internal compiler error. Aborting!
"""


def test_partly_mapped_model() -> None:
    r = parse_compiler_output(PARTLY_MAPPED)
    assert (r["status"], r["error"], r["compiler_version"]) == ("ok", None, "16.0.384591198")
    assert (r["tpu_ops"], r["cpu_ops"], r["total_ops"], r["edgetpu_subgraphs"]) == (69, 3, 72, 1)
    assert r["coverage"] == {"partitions": 1, "cpu_ops": 3}
    assert r["input_model"] == "mobilenet_int8.tflite" and r["output_model"] == "out/mobilenet_int8_edgetpu.tflite"
    assert r["operation_log"] == "out/mobilenet_int8_edgetpu.log"
    assert r["on_chip_cache_bytes"] == round(3.42 * 1024**2) and r["off_chip_bytes"] == round(12.5 * 1024)
    assert r["input_bytes"] == round(3.87 * 1024**2)
    assert len(r["operations"]) == 10
    assert r["operations"][-1] == {"op": "QUANTIZE", "count": 1, "mapped": False,
                                   "status": "Operation is otherwise supported, but not mapped due to some "
                                             "unspecified limitation"}
    assert sum(o["count"] for o in r["operations"] if o["mapped"]) == r["tpu_ops"]


def test_fully_mapped_model_counts_come_from_the_table() -> None:
    r = parse_compiler_output(ALL_MAPPED)
    assert r["status"] == "ok"
    assert (r["tpu_ops"], r["cpu_ops"], r["total_ops"]) == (9, 0, 9)
    assert r["coverage"] == {"partitions": 1, "cpu_ops": 0}
    assert r["off_chip_bytes"] == 0 and r["on_chip_remaining_bytes"] == round(7.97 * 1024**2)


def test_operation_log_file() -> None:
    r = parse_compiler_output(OPERATION_LOG)
    assert r["status"] == "ok" and r["compiler_version"] == "15.0.340273435"
    assert (r["input_model"], r["output_model"]) == ("model.tflite", "./EdgeTPU/model_edgetpu.tflite")
    assert (r["tpu_ops"], r["cpu_ops"]) == (17, 2)
    assert [o["op"] for o in r["operations"] if not o["mapped"]] == ["CONCATENATION", "RESIZE_NEAREST_NEIGHBOR"]


@pytest.mark.parametrize("text, error", [
    (NOT_QUANTIZED, "invalid model: Model not quantized"),
    (INTERNAL_ERROR, "Internal compiler error. Aborting!"),
    ("", "edgetpu_compiler printed nothing"),
])
def test_refused_models_are_conversion_failures(text: str, error: str) -> None:
    r = parse_compiler_output(text)
    assert (r["status"], r["error"]) == ("conversion_failed", error)
    assert r["coverage"] is None and r["operations"] == []


def test_compile_without_the_compiler_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EdgebenchError) as err:
        compile_for_edgetpu(tmp_path / "m.tflite", tmp_path / "out")
    assert "edgetpu-compiler" in str(err.value) and "Coral" in str(err.value)


def test_compile_plumbing_with_a_stand_in_compiler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real compiler cannot be installed here: a stand-in prints the documented output and writes the files
    the real one writes, to check the argv, the output path and the operation-log fallback."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "op.log").write_text(OPERATION_LOG)
    summary = PARTLY_MAPPED.split("\nModel successfully compiled but")[0] + "\nSee the operation log file.\n"
    (tmp_path / "summary.txt").write_text(summary)
    stand_in = bin_dir / "edgetpu_compiler"
    stand_in.write_text(f"""#!/bin/sh
echo "$@" > {tmp_path}/argv
out=$2
for a in "$@"; do last=$a; done
name=$(basename "$last" .tflite)
cp {tmp_path}/op.log "$out/${{name}}_edgetpu.log"
printf 'compiled' > "$out/${{name}}_edgetpu.tflite"
cat {tmp_path}/summary.txt
""")
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    model = tmp_path / "mobilenet_int8.tflite"
    model.write_bytes(b"int8 model")
    r = compile_for_edgetpu(model, tmp_path / "out", min_runtime_version=13)
    assert (tmp_path / "argv").read_text().split() == [
        "--out_dir", str(tmp_path / "out"), "--show_operations", "--min_runtime_version", "13", str(model)]
    assert r["status"] == "ok" and r["output_path"] == str(tmp_path / "out" / "mobilenet_int8_edgetpu.tflite")
    assert r["total_ops"] == 72 and (r["tpu_ops"], r["cpu_ops"]) == (17, 2)  # counts from the .log file
    assert r["coverage"] == {"partitions": 1, "cpu_ops": 2}
