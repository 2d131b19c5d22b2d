"""Can a .tflite variant load on a given runtime, and if not, why? Decided from the file alone.

An interpreter resolves every entry of the model's operator_codes when it is built
(InterpreterBuilder), used or not: a builtin op needs a kernel registered for its
version, a custom op needs a registration by name, and Flex ops (SELECT_TF_OPS)
need the TensorFlow Flex delegate, which the tflite-runtime and ai-edge-litert
wheels do not contain. The tables below are the builtin op versions each runtime
registers (BuiltinOpResolver).

Sources of the tables:
- tflite-runtime 2.14: tensorflow/lite/core/kernels/register.cc (TensorFlow r2.14; AddBuiltin min/max
  versions, absent = 1..1). Transcribed, then checked by building a one-opcode model for every builtin code
  and versions 1-30 and loading it into the real tflite-runtime 2.14.0 wheel: the wheel agrees except that
  it has LOG up to version 1 and no STABLEHLO_SCATTER (the register.cc revision read, tensorflow/tensorflow
  0314b97f, is a few commits past the 2.14 cut); the table follows the wheel.
- ai-edge-litert 2.3.0: measured the same way on the installed ai-edge-litert 2.3.0 wheel (x86-64).
  tests/test_compat.py re-measures both tables on the real wheels (the test extra pins ai-edge-litert 2.3.0).
Every op has min version 1 except BROADCAST_TO (2: its version 1 was rolled back, per register.cc).
TFLite keeps old op versions in newer runtimes, so a table also bounds other releases of the same runtime:
what an older table loads a newer release loads, what a newer table refuses an older release refuses.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .tflite_file import SCHEMA_VERSION, TFLiteInfo

_TFLITE_RUNTIME_2_14: dict[str, int] = {
    "ADD": 5, "AVERAGE_POOL_2D": 3, "CONCATENATION": 4, "CONV_2D": 7, "DEPTHWISE_CONV_2D": 7, "DEPTH_TO_SPACE": 2,
    "DEQUANTIZE": 5, "EMBEDDING_LOOKUP": 3, "FLOOR": 1, "FULLY_CONNECTED": 10, "HASHTABLE_LOOKUP": 1,
    "L2_NORMALIZATION": 2, "L2_POOL_2D": 1, "LOCAL_RESPONSE_NORMALIZATION": 1, "LOGISTIC": 3, "LSH_PROJECTION": 1,
    "LSTM": 4, "MAX_POOL_2D": 3, "MUL": 7, "RELU": 3, "RELU_N1_TO_1": 1, "RELU6": 3, "RESHAPE": 1,
    "RESIZE_BILINEAR": 4, "RNN": 3, "SOFTMAX": 3, "SPACE_TO_DEPTH": 2, "SVDF": 4, "TANH": 3, "SKIP_GRAM": 1,
    "EMBEDDING_LOOKUP_SPARSE": 1, "PAD": 4, "UNIDIRECTIONAL_SEQUENCE_RNN": 3, "GATHER": 6, "BATCH_TO_SPACE_ND": 4,
    "SPACE_TO_BATCH_ND": 4, "TRANSPOSE": 6, "MEAN": 3, "SUB": 5, "DIV": 2, "SQUEEZE": 2,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": 4, "STRIDED_SLICE": 8, "BIDIRECTIONAL_SEQUENCE_RNN": 3, "EXP": 2, "TOPK_V2": 3,
    "SPLIT": 4, "LOG_SOFTMAX": 2, "BIDIRECTIONAL_SEQUENCE_LSTM": 3, "CAST": 5, "PRELU": 1, "MAXIMUM": 4,
    "ARG_MAX": 3, "MINIMUM": 4, "LESS": 3, "NEG": 1, "PADV2": 4, "GREATER": 2, "GREATER_EQUAL": 3, "LESS_EQUAL": 2,
    "SELECT": 4, "SLICE": 6, "SIN": 1, "TRANSPOSE_CONV": 4, "SPARSE_TO_DENSE": 3, "TILE": 3, "EXPAND_DIMS": 1,
    "EQUAL": 4, "NOT_EQUAL": 3, "LOG": 1, "SUM": 2, "SQRT": 1, "RSQRT": 2, "SHAPE": 1, "POW": 1, "ARG_MIN": 3,
    "FAKE_QUANT": 2, "REDUCE_PROD": 2, "REDUCE_MAX": 3, "PACK": 4, "LOGICAL_OR": 1, "ONE_HOT": 1, "LOGICAL_AND": 1,
    "LOGICAL_NOT": 1, "UNPACK": 4, "REDUCE_MIN": 3, "FLOOR_DIV": 3, "REDUCE_ANY": 1, "SQUARE": 1, "ZEROS_LIKE": 1,
    "FILL": 4, "FLOOR_MOD": 2, "RANGE": 2, "RESIZE_NEAREST_NEIGHBOR": 4, "LEAKY_RELU": 2, "SQUARED_DIFFERENCE": 2,
    "MIRROR_PAD": 3, "ABS": 5, "SPLIT_V": 2, "UNIQUE": 1, "CEIL": 1, "REVERSE_V2": 3, "ADD_N": 1, "GATHER_ND": 4,
    "COS": 1, "WHERE": 2, "RANK": 1, "ELU": 1, "REVERSE_SEQUENCE": 1, "MATRIX_DIAG": 1, "QUANTIZE": 3,
    "MATRIX_SET_DIAG": 1, "ROUND": 1, "HARD_SWISH": 1, "IF": 1, "WHILE": 1, "NON_MAX_SUPPRESSION_V4": 1,
    "NON_MAX_SUPPRESSION_V5": 1, "SCATTER_ND": 1, "SELECT_V2": 2, "DENSIFY": 1, "SEGMENT_SUM": 1, "BATCH_MATMUL": 4,
    "CUMSUM": 1, "CALL_ONCE": 1, "BROADCAST_TO": 3, "RFFT2D": 1, "CONV_3D": 1, "IMAG": 1, "REAL": 1,
    "COMPLEX_ABS": 1, "HASHTABLE": 1, "HASHTABLE_FIND": 1, "HASHTABLE_IMPORT": 1, "HASHTABLE_SIZE": 1,
    "REDUCE_ALL": 1, "CONV_3D_TRANSPOSE": 1, "VAR_HANDLE": 1, "READ_VARIABLE": 1, "ASSIGN_VARIABLE": 1,
    "BROADCAST_ARGS": 1, "RANDOM_STANDARD_NORMAL": 1, "BUCKETIZE": 1, "RANDOM_UNIFORM": 1, "MULTINOMIAL": 1,
    "GELU": 2, "DYNAMIC_UPDATE_SLICE": 1, "RELU_0_TO_1": 1, "UNSORTED_SEGMENT_PROD": 1, "UNSORTED_SEGMENT_MAX": 1,
    "UNSORTED_SEGMENT_SUM": 1, "ATAN2": 1, "UNSORTED_SEGMENT_MIN": 1, "SIGN": 2, "BITCAST": 1, "BITWISE_XOR": 1,
    "RIGHT_SHIFT": 1
}

_AI_EDGE_LITERT_2_3: dict[str, int] = {**_TFLITE_RUNTIME_2_14, **{
    "ADD": 6, "CONCATENATION": 7, "CONV_2D": 8, "DEQUANTIZE": 9, "EMBEDDING_LOOKUP": 5, "FULLY_CONNECTED": 14,
    "MUL": 8, "SOFTMAX": 4, "PAD": 6, "GATHER": 8, "TRANSPOSE": 9, "SPLIT": 5, "CAST": 9, "PADV2": 6, "SLICE": 8,
    "SIN": 2, "TRANSPOSE_CONV": 5, "EQUAL": 5, "NOT_EQUAL": 4, "LOG": 2, "SQRT": 2, "RSQRT": 3, "PACK": 5,
    "UNPACK": 6, "FILL": 5, "SPLIT_V": 3, "REVERSE_V2": 4, "GATHER_ND": 6, "COS": 2, "QUANTIZE": 6,
    "BROADCAST_TO": 4, "GELU": 3, "DYNAMIC_UPDATE_SLICE": 6, "STABLEHLO_ADD": 1, "STABLEHLO_MULTIPLY": 1,
    "STABLEHLO_MAXIMUM": 1, "STABLEHLO_AND": 1, "STABLEHLO_MINIMUM": 1, "STABLEHLO_SCATTER": 1, "STABLEHLO_PAD": 1,
    "STABLEHLO_REDUCE_WINDOW": 1, "STABLEHLO_GATHER": 1, "DILATE": 1, "STABLEHLO_RNG_BIT_GENERATOR": 1,
    "REDUCE_WINDOW": 1, "STABLEHLO_COMPOSITE": 1, "STABLEHLO_SHIFT_LEFT": 1, "STABLEHLO_CASE": 1
}}

_MIN_VERSION = {"BROADCAST_TO": 2}

# Custom ops that BuiltinOpResolver registers by name (register.cc AddCustom); both wheels resolve them.
BUILTIN_CUSTOM_OPS = frozenset({"NumericVerify", "Mfcc", "AudioSpectrogram", "TFLite_Detection_PostProcess"})
# MediaPipe custom ops that only the XNNPACK delegate implements, and only when it takes the node (float graphs).
XNNPACK_CUSTOM_OPS = frozenset({"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D"})


@dataclass(frozen=True)
class _Family:
    display: str
    tables: dict[tuple[int, int], dict[str, int]]  # (major, minor) -> builtin op name -> max version
    has_flex: bool  # links the Flex delegate (full TensorFlow does)
    tf_versioned: bool  # releases numbered like TensorFlow's, so min_runtime_version compares directly


# Keys as the device agent names runtimes (hyphens are accepted too).
RUNTIMES: dict[str, _Family] = {
    "tflite_runtime": _Family("tflite-runtime", {(2, 14): _TFLITE_RUNTIME_2_14}, has_flex=False, tf_versioned=True),
    "ai_edge_litert": _Family("ai-edge-litert", {(2, 3): _AI_EDGE_LITERT_2_3}, has_flex=False, tf_versioned=False),
    "tensorflow": _Family("tensorflow", {}, has_flex=True, tf_versioned=True),
}


@dataclass(frozen=True)
class Compatibility:
    """loadable: False if any problem, else None if anything is unknown, else True."""

    runtime: str
    version: str | None
    loadable: bool | None
    problems: list[str] = field(default_factory=list)  # each one stops the model loading there
    unknowns: list[str] = field(default_factory=list)  # what could not be decided, and why
    notes: list[str] = field(default_factory=list)  # worth knowing, does not stop loading

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Findings:
    problems: list[str] = field(default_factory=list)
    unknowns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_version(text: str | None) -> tuple[int, int, int] | None:
    """"2.14.0" -> (2, 14, 0); "2.3" -> (2, 3, 0); None for anything without major.minor."""
    match = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def _op_problems(info: TFLiteInfo, table: dict[str, int], label: str) -> list[str]:
    out = []
    for code in info.operator_codes:
        if code.is_custom:
            continue
        top = table.get(code.name)
        low = _MIN_VERSION.get(code.name, 1)
        if top is None:
            out.append(f"builtin op {code.name} (code {code.builtin_code}) does not exist in {label}")
        elif code.version > top:
            out.append(f"{code.name} version {code.version} is newer than {label} supports (up to {top}); it "
                       f"refuses the model: \"Didn't find op for builtin opcode '{code.name}' version "
                       f"'{code.version}'\"")
        elif code.version < low:
            out.append(f"{code.name} version {code.version} is older than {label} supports (from {low})")
    return out


def check(info: TFLiteInfo, runtime_name: str, runtime_version: str | None) -> Compatibility:
    """Whether the model can load on runtime_name (e.g. "tflite_runtime") at runtime_version, and why not."""
    family = RUNTIMES.get(runtime_name.strip().lower().replace("-", "_"))
    found = _Findings()
    if info.schema_version != SCHEMA_VERSION:
        found.problems.append(f"schema version {info.schema_version}; interpreters load only version {SCHEMA_VERSION}")
    version = parse_version(runtime_version)
    if family is None:
        found.unknowns.append(f"unknown runtime {runtime_name!r} (known: {', '.join(RUNTIMES)})")
    else:
        _check_custom(info, family, found)
        if version is None:
            found.unknowns.append(f"{family.display} version {runtime_version or 'not known'}: op versions not checked")
        else:
            _check_ops(info, family, version, found)
    loadable = False if found.problems else None if found.unknowns else True
    return Compatibility(runtime_name, runtime_version, loadable, found.problems, found.unknowns, found.notes)


def _check_custom(info: TFLiteInfo, family: _Family, found: _Findings) -> None:
    if info.flex_ops and not family.has_flex:
        found.problems.append(f"Flex ops {', '.join(info.flex_ops)} (SELECT_TF_OPS) need TensorFlow's Flex "
                              f"delegate, which {family.display} does not include; convert without SELECT_TF_OPS "
                              f"or run it on full TensorFlow")
    for op in info.custom_ops:
        if op in XNNPACK_CUSTOM_OPS:
            found.unknowns.append(f"custom op {op} loads only if the XNNPACK delegate takes it (float graphs)")
        elif op not in BUILTIN_CUSTOM_OPS:
            found.problems.append(f"custom op {op} is not registered in {family.display} (\"Encountered "
                                  f"unresolved custom op\"); it needs a runtime built with it")


def _check_ops(info: TFLiteInfo, family: _Family, version: tuple[int, int, int], found: _Findings) -> None:
    label = f"{family.display} {version[0]}.{version[1]}"
    ops = _ops_resolve(info, family, version, label, found)
    need = parse_version(info.min_runtime_version) if family.tf_versioned else None
    if need is None:
        return
    # The converter computes min_runtime_version from its own op-version map: op tables win where they exist.
    declared = f"the model declares min_runtime_version {info.min_runtime_version}"
    if need > version:
        if ops:
            found.notes.append(f"{declared}, newer than {label}, yet every op version it uses is registered there")
        else:
            found.problems.append(f"{declared}, newer than {label}")
    elif ops is None:
        found.notes.append(f"{declared}, which {label} satisfies (a hint, not proof: the converter's map can miss "
                           f"ops)")


def _ops_resolve(info: TFLiteInfo, family: _Family, version: tuple[int, int, int], label: str,
                 found: _Findings) -> bool | None:
    """Whether every builtin op version resolves on this release: from its table, else bounded by the others."""
    exact = family.tables.get(version[:2])
    if exact is not None:
        refused = _op_problems(info, exact, label)
        found.problems.extend(refused)
        return not refused
    newer = [k for k in sorted(family.tables) if k > version[:2]]
    older = [k for k in sorted(family.tables) if k < version[:2]]
    refused = _op_problems(info, family.tables[newer[0]], f"{family.display} {newer[0][0]}.{newer[0][1]}") \
        if newer else []
    if refused:
        found.problems.extend(f"{p} (and older releases support no more)" for p in refused)
        return False
    if older and not _op_problems(info, family.tables[older[-1]], ""):
        found.notes.append(f"no op table for {label}; every op loads on {older[-1][0]}.{older[-1][1]}, "
                           f"and newer releases keep old op versions")
        return True
    converter = parse_version(info.converter_version)
    if family.tf_versioned and converter is not None and converter <= version:
        found.notes.append(f"converted by TensorFlow {info.converter_version}, not newer than {label}")
        return True
    known = ", ".join(f"{k[0]}.{k[1]}" for k in sorted(family.tables)) or "none"
    found.unknowns.append(f"no op table for {label} (tables: {known}): op versions not checked")
    return None
