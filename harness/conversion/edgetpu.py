"""Coral's ``edgetpu_compiler``: run it on an int8 model, and read what it says about the result.

The compiler (Debian package ``edgetpu-compiler`` from Coral's apt repository,
x86-64 only) prints, for a model it compiled (format as in the compiler's own
output quoted in google-coral/edgetpu issues #60, #393, #490; version 16)::

    Edge TPU Compiler version 16.0.384591198
    Started a compilation timeout timer of 180 seconds.

    Model compiled successfully in 1354 ms.

    Input model: model.tflite
    Input size: 5.10MiB
    Output model: model_edgetpu.tflite
    Output size: 6.28MiB
    On-chip memory used for caching model parameters: 6.03MiB
    On-chip memory remaining for caching model parameters: 1.21MiB
    Off-chip memory used for streaming uncached model parameters: 0.00B
    Number of Edge TPU subgraphs: 1
    Total number of operations: 143
    Operation log: model_edgetpu.log

    Model successfully compiled but not all operations are supported by the Edge TPU. ...
    Number of operations that will run on Edge TPU: 139
    Number of operations that will run on CPU: 4

    Operator                       Count      Status

    CONV_2D                        61         Mapped to Edge TPU
    QUANTIZE                       1          Operation is otherwise supported, but not mapped due to ...

The two "Number of operations that will run" lines appear only when some
operation stays on the CPU; the operator table (printed with ``-s``, and
always written to the ``.log`` file beside the output model, after ``Input:``
and ``Output:`` lines) is then the only source, so the counts are derived from
it when those lines are missing. A refused model prints ``Invalid model: X``
and a reason such as ``Model not quantized``; a crash prints ``Internal
compiler error. Aborting!``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..common.errors import EdgebenchError, ExitCode

COMPILE_TIMEOUT_S = 180
MAPPED = "Mapped to Edge TPU"
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_ROW = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")


def _bytes(text: str | None) -> int | None:
    m = re.fullmatch(r"([\d.]+)\s*(B|KiB|MiB|GiB)", (text or "").strip())
    return round(float(m.group(1)) * _UNITS[m.group(2)]) if m else None


def _field(name: str, text: str) -> str | None:
    m = re.search(rf"^{re.escape(name)}:\s*(.+?)\s*$", text, re.M)
    return m.group(1) if m else None


def _int(name: str, text: str) -> int | None:
    value = _field(name, text)
    return int(value) if value is not None and value.isdigit() else None


def parse_compiler_output(text: str) -> dict[str, Any]:
    """What the compiler's stdout (or its operation log) says: status, sizes, op counts and the op table.

    ``coverage`` has the CELL's delegate coverage shape: ``{"partitions": Edge TPU subgraphs,
    "cpu_ops": operations left on the CPU}``.
    """
    operations: list[dict[str, Any]] = []
    table = re.search(r"^Operator\s+Count\s+Status\s*$", text, re.M)
    if table:
        for line in text[table.end():].splitlines():
            row = _ROW.match(line.strip())
            if row:
                operations.append({"op": row.group(1), "count": int(row.group(2)), "status": row.group(3),
                                   "mapped": row.group(3) == MAPPED})
            elif line.strip() and operations:
                break  # the table ended
    tpu_ops = _int("Number of operations that will run on Edge TPU", text)
    cpu_ops = _int("Number of operations that will run on CPU", text)
    if operations and tpu_ops is None:
        tpu_ops = sum(o["count"] for o in operations if o["mapped"])
        cpu_ops = sum(o["count"] for o in operations if not o["mapped"])
    subgraphs = _int("Number of Edge TPU subgraphs", text)
    version = re.search(r"^Edge TPU Compiler version (\S+)", text, re.M)

    compiled = re.search(r"^Model compiled successfully", text, re.M) is not None
    error = None
    if not compiled:
        invalid = re.search(r"^Invalid model: .*\n(.+)", text, re.M)
        internal = re.search(r"^(Internal compiler error.*|Compilation failed.*|ERROR: .*)$", text, re.M)
        if invalid:
            error = f"invalid model: {invalid.group(1).strip()}"
        elif internal:
            error = internal.group(1).strip()
        elif operations or tpu_ops is not None:
            compiled = True  # an operation log: written only for a compiled model
        else:
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            error = lines[-1][:300] if lines else "edgetpu_compiler printed nothing"
    return {
        "status": "ok" if compiled else "conversion_failed",
        "error": error,
        "compiler_version": version.group(1) if version else None,
        "input_model": _field("Input model", text) or _field("Input", text),
        "output_model": _field("Output model", text) or _field("Output", text),
        "operation_log": _field("Operation log", text),
        "input_bytes": _bytes(_field("Input size", text)),
        "output_bytes": _bytes(_field("Output size", text)),
        "on_chip_cache_bytes": _bytes(_field("On-chip memory used for caching model parameters", text)),
        "on_chip_remaining_bytes": _bytes(_field("On-chip memory remaining for caching model parameters", text)),
        "off_chip_bytes": _bytes(_field("Off-chip memory used for streaming uncached model parameters", text)),
        "edgetpu_subgraphs": subgraphs,
        "total_ops": _int("Total number of operations", text),
        "tpu_ops": tpu_ops,
        "cpu_ops": cpu_ops,
        "operations": operations,
        "coverage": {"partitions": subgraphs, "cpu_ops": cpu_ops} if compiled and subgraphs is not None else None,
    }


def compile_for_edgetpu(model: Path, out_dir: Path, *, timeout_s: float = COMPILE_TIMEOUT_S,
                        min_runtime_version: int | None = None) -> dict[str, Any]:
    """Compile an int8 .tflite with ``edgetpu_compiler``; the parsed result plus ``output_path``.

    A model the compiler refuses is a result (status ``conversion_failed``), not an exception;
    a missing compiler is the user's to fix.
    """
    binary = shutil.which("edgetpu_compiler")
    if binary is None:
        raise EdgebenchError("edgetpu_compiler is not installed: install the edgetpu-compiler package from "
                             "Coral's apt repository (x86-64 Debian/Ubuntu only)", where=str(model),
                             exit_code=ExitCode.BAD_INPUT)
    out_dir.mkdir(parents=True, exist_ok=True)
    # No --timeout_sec: compilers before version 16 do not know it; the subprocess timeout bounds the run.
    argv = [binary, "--out_dir", str(out_dir), "--show_operations"]
    if min_runtime_version is not None:
        argv += ["--min_runtime_version", str(int(min_runtime_version))]
    try:
        done = subprocess.run(argv + [str(model)], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {**parse_compiler_output(""), "error": f"edgetpu_compiler did not finish in {timeout_s:.0f} s",
                "output_path": None}
    result = parse_compiler_output(done.stdout + done.stderr)
    output = out_dir / f"{model.stem}_edgetpu.tflite"
    if result["status"] == "ok" and not result["operations"]:
        log = out_dir / f"{model.stem}_edgetpu.log"  # the op table, when stdout did not carry it
        if log.is_file():
            from_log = parse_compiler_output(log.read_text(errors="replace"))
            result.update({k: from_log[k] for k in ("operations", "tpu_ops", "cpu_ops")})
            result["coverage"] = {"partitions": result["edgetpu_subgraphs"], "cpu_ops": result["cpu_ops"]}
    if done.returncode != 0 and result["status"] == "ok":
        result.update(status="conversion_failed", error=f"edgetpu_compiler exited with {done.returncode}")
    result["output_path"] = str(output) if result["status"] == "ok" and output.is_file() else None
    return result
