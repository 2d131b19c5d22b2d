"""Agent entry points: serve (host protocol), probe, and standalone measurement."""

import argparse
import json
import os
import select
import signal
import sys
import tempfile
import time

from . import AGENT_VERSION, DEFAULTS, FRAME_MAGIC, MAX_FRAME_BYTES, SCHEMA_VERSION, environment
from .runtime import EnvironmentProblem, find_runtime

try:
    from . import measure
except ImportError:  # no numpy: find_runtime() fails too and says so in a fatal frame, not a traceback
    measure = None  # type: ignore[assignment]

STDERR_TAIL_BYTES = 2000


def _frames_fd():
    """A private fd for frames; fd 1 then points at stderr so C-level prints cannot corrupt frames."""
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    return fd


def encode_frame(obj):
    """One frame; the host uses this too, so both sides share one definition of the format."""
    obj = dict(obj, schema_version=SCHEMA_VERSION)
    data = json.dumps(obj, allow_nan=False, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_FRAME_BYTES:
        obj = {"schema_version": SCHEMA_VERSION, "type": obj.get("type"), "id": obj.get("id"),
               "status": "invalid_output", "error": "result of %d bytes exceeds the %d-byte frame limit"
               % (len(data), MAX_FRAME_BYTES)}
        data = json.dumps(obj).encode("utf-8")
    return FRAME_MAGIC + b" " + str(len(data)).encode("ascii") + b"\n" + data + b"\n"


def write_frame(fd, obj):
    buf = encode_frame(obj)
    while buf:
        buf = buf[os.write(fd, buf):]


def read_frame(stream):
    header = stream.readline(64)
    if not header:
        return None
    parts = header.split()
    if len(parts) != 2 or parts[0] != FRAME_MAGIC or not parts[1].isdigit() or int(parts[1]) > MAX_FRAME_BYTES:
        raise ValueError("bad frame header %r" % header[:40])
    data = stream.read(int(parts[1]) + 1)
    return json.loads(data.decode("utf-8"))


def _tail(f):
    f.seek(0, 2)
    size = f.tell()
    f.seek(max(0, size - STDERR_TAIL_BYTES))
    return f.read().decode("utf-8", "replace")


def _short(text, limit=400):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _child(cell, runtime, wfd):
    try:
        try:
            result = measure.measure(cell, runtime)
        except measure.CellFailure as failure:
            result = {"status": failure.status, "phase": failure.phase,
                      "error": _short("%s: %s" % (type(failure.exc).__name__, failure.exc))}
        data = json.dumps(result, allow_nan=False).encode("utf-8")
    except Exception as exc:  # e.g. NaN in a result: report, do not crash silently
        data = json.dumps({"status": "invalid_output", "error": _short(repr(exc))}).encode("utf-8")
    while data:
        data = data[os.write(wfd, data):]


def run_isolated(cell, runtime):
    """Measure a cell in a forked child so a crashing model cannot take the agent down.

    Forking after the runtime import keeps per-model start-up cost near zero. The child stays in the
    agent's process group: the host stops a job (Ctrl-C, a timeout) by killing that group, and a
    measurement must not outlive it.
    """
    timeout = float(cell.get("cell_timeout_s") or DEFAULTS["cell_timeout_s"])
    started = time.perf_counter_ns()
    err = tempfile.TemporaryFile()
    rfd, wfd = os.pipe()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(rfd)
            os.dup2(err.fileno(), 2)
            _child(cell, runtime, wfd)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(wfd)
    chunks, timed_out = [], False
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            break
        ready, _, _ = select.select([rfd], [], [], remaining)
        if ready:
            chunk = os.read(rfd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    os.close(rfd)
    _, wstatus = os.waitpid(pid, 0)
    tail = _tail(err)
    err.close()
    sys.stderr.write(tail)
    if timed_out:
        result = {"status": "timeout", "error": "no result after %.0f s; measuring process killed" % timeout}
    elif os.WIFSIGNALED(wstatus):
        name = signal.Signals(os.WTERMSIG(wstatus)).name
        result = {"status": "crashed", "error": "measuring process died with %s" % name}
    else:
        try:
            result = json.loads(b"".join(chunks).decode("utf-8"))
        except ValueError:
            result = {"status": "crashed", "error": "measuring process exited (code %d) without a result"
                      % os.WEXITSTATUS(wstatus)}
    result["stderr_tail"] = tail[-STDERR_TAIL_BYTES:] or None
    # everything this cell cost on the device (fork, load, warm-up, runs, evaluation): the fleet's floor
    result["cell_ms"] = round((time.perf_counter_ns() - started) / 1e6, 3)
    return result


def serve(runtime_pref="auto"):
    out = _frames_fd()
    stdin = sys.stdin.buffer
    try:
        job = read_frame(stdin)
    except ValueError as exc:
        write_frame(out, {"type": "fatal", "error": "bad job frame: %s" % exc})
        return 2
    if not job or job.get("type") != "job" or job.get("schema_version") != SCHEMA_VERSION:
        write_frame(out, {"type": "fatal", "error": "expected a job frame of schema_version %d" % SCHEMA_VERSION})
        return 2
    try:
        runtime = find_runtime(job.get("runtime") or runtime_pref)
    except EnvironmentProblem as exc:
        write_frame(out, {"type": "fatal", "error": str(exc), "env": environment.describe(None)})
        return 3
    write_frame(out, {"type": "hello", "agent_version": AGENT_VERSION, "runtime": runtime.describe(),
                      "env": environment.describe(runtime)})
    for cell in job.get("cells", []):
        before = environment.thermal()
        result = run_isolated(cell, runtime)
        result.update({"type": "cell", "id": cell.get("id"), "thermal_before": before,
                       "thermal_after": environment.thermal()})
        write_frame(out, result)
    write_frame(out, {"type": "done"})
    return 0


def probe(runtime_pref="auto"):
    out = _frames_fd()
    try:
        runtime = find_runtime(runtime_pref)
        frame = {"type": "probe", "runtime": runtime.describe(), "error": None}
    except EnvironmentProblem as exc:
        runtime, frame = None, {"type": "probe", "runtime": None, "error": str(exc)}
    frame.update(env=environment.describe(runtime), thermal=environment.thermal(), agent_version=AGENT_VERSION)
    write_frame(out, frame)
    return 0


def standalone(argv):
    p = argparse.ArgumentParser(prog="python -m device_agent",
                                description="Benchmark one .tflite model on this device "
                                            "(or: serve | probe for the edgebench host).")
    p.add_argument("model")
    p.add_argument("--runs", type=int, default=DEFAULTS["runs"], help="measured runs, at least (default %(default)s)")
    p.add_argument("--min-seconds", type=float, default=DEFAULTS["min_seconds"],
                   help="measure for at least this long (default %(default)s)")
    p.add_argument("--max-runs", type=int, default=DEFAULTS["max_runs"])
    p.add_argument("--warmup", type=int, default=DEFAULTS["warmup"], help="warm-up runs, at least (default %(default)s)")
    p.add_argument("--warmup-seconds", type=float, default=DEFAULTS["warmup_seconds"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runtime", default="auto", help="ai_edge_litert, tflite_runtime, tensorflow or auto")
    p.add_argument("--timeout", type=float, default=DEFAULTS["cell_timeout_s"])
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    if not os.path.isfile(a.model):
        sys.stderr.write("error: no such model file: %s\n" % a.model)
        return 2
    try:
        runtime = find_runtime(a.runtime)
    except EnvironmentProblem as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 3
    cell = {"model_path": a.model, "runs": a.runs, "min_seconds": a.min_seconds, "max_runs": a.max_runs,
            "warmup": a.warmup, "warmup_seconds": a.warmup_seconds, "threads": a.threads, "cell_timeout_s": a.timeout}
    result = run_isolated(cell, runtime)
    result.update(schema_version=SCHEMA_VERSION, model=a.model, runtime=runtime.describe(),
                  env=environment.describe(runtime), latency_ms=measure.summarize(result.get("samples_ms") or []))
    if a.json:
        print(json.dumps(result, allow_nan=False))
    else:
        s = result["latency_ms"]
        print("%s  %s %s  status=%s" % (a.model, runtime.name, runtime.version, result["status"]))
        if result["status"] == "ok":
            print("  runs=%d  p50=%.4f ms  p90=%.4f ms  p99=%.4f ms  mean=%.4f ms  std=%.4f ms"
                  % (s["count"], s["p50"], s["p90"], s["p99"], s["mean"], s["std"]))
            print("  init=%.2f ms  first=%.2f ms  peak_rss=%s MB"
                  % (result["init_ms"], result["first_inference_ms"], result["peak_rss_mb"]))
        else:
            print("  error: %s" % result.get("error"))
    return 0 if result["status"] == "ok" else 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        return serve(argv[1] if len(argv) > 1 else "auto")
    if argv[:1] == ["probe"]:
        return probe(argv[1] if len(argv) > 1 else "auto")
    return standalone(argv)
