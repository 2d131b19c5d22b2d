"""Read what matters about a .tflite file without TensorFlow: ops and versions, I/O, signatures, metadata, weights.

The file is a FlatBuffer of the TFLite schema (tensorflow/lite/schema/schema.fbs,
now tensorflow/compiler/mlir/lite/schema/schema.fbs): the root table ``Model`` at
the uint32 offset in bytes 0-3, file identifier "TFL3" in bytes 4-7. Every table
starts with an int32 back-offset to its vtable; the vtable lists each field's
offset inside the table (0 = absent, use the default). Reference fields hold a
uint32 offset relative to where they are stored; vectors and strings start with
a uint32 length.

Files come from users, so the reader trusts nothing: a size cap, every read
bounds-checked, every vector length capped, and any inconsistency becomes one
EdgebenchError naming the file. Tables may be shared (many offsets to one table),
so capping lengths is not enough: 2000 subgraph offsets to one subgraph whose
2000 tensor offsets go to one tensor make 4 million tensor visits from 16 KB.
A work budget over the whole parse (flatbuffer.py) bounds the reads and copied
bytes, so the time to read any file is linear in its size and bounded.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..common.errors import EdgebenchError
from .flatbuffer import Buf as _Buf
from .flatbuffer import Corrupt as _Corrupt
from .flatbuffer import Table as _Table
from .tflite_schema import FLOAT_WEIGHTS, BUILTIN_OPERATORS, CUSTOM_CODE, OPTIMIZATION_MODES, TENSOR_TYPES

MAX_TFLITE_BYTES = 2 * 1024**3  # FlatBuffers cannot address more; larger models need external buffers
MAX_RANK = 64  # kernels handle rank <= 6 or so; keeps element counts of hostile shapes cheap
SCHEMA_VERSION = 3  # the only version TFLite interpreters accept
FILE_IDENTIFIER = b"TFL3"

@dataclass(frozen=True)
class OperatorCode:
    """One entry of Model.operator_codes: what an interpreter must resolve, used by an operator or not."""

    index: int
    name: str  # builtin name ("FULLY_CONNECTED"), the custom code for CUSTOM ops, "UNKNOWN_<code>" if newer than us
    builtin_code: int
    version: int
    custom_code: str | None

    @property
    def is_custom(self) -> bool:
        return self.builtin_code == CUSTOM_CODE

    @property
    def is_flex(self) -> bool:
        """A TensorFlow op carried by SELECT_TF_OPS: needs the Flex delegate."""
        return self.is_custom and (self.custom_code or "").startswith("Flex")


@dataclass(frozen=True)
class IOTensor:
    """A subgraph-0 input or output, described like the interpreter's get_input_details()."""

    name: str  # the signature's name for it when there is a signature, else the tensor name
    tensor: str  # tensor name in the graph (get_input_details()["name"])
    index: int  # tensor index in subgraph 0
    shape: list[int]
    shape_signature: list[int]  # -1 for dimensions unknown at conversion (dynamic batch)
    dtype: str
    scale: float  # per-tensor quantization; 0.0 when not quantized or quantized per channel
    zero_point: int
    scales: list[float]
    zero_points: list[int]
    quantized_dimension: int

    def to_dict(self) -> dict[str, Any]:
        """The export JSON's "inputs"/"outputs" entry."""
        return {"name": self.name, "tensor": self.tensor, "shape": list(self.shape),
                "shape_signature": list(self.shape_signature), "dtype": self.dtype, "scale": self.scale,
                "zero_point": self.zero_point}


@dataclass(frozen=True)
class Signature:
    key: str
    subgraph_index: int
    inputs: dict[str, int]  # signature name -> tensor index in that subgraph
    outputs: dict[str, int]


@dataclass
class WeightStats:
    """Constant tensors (those with data in a buffer), counted once per buffer."""

    tensors: int = 0
    elements: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class TFLiteInfo:
    path: str
    size_bytes: int
    schema_version: int
    description: str | None
    operator_codes: list[OperatorCode]
    op_counts: dict[str, int]  # operators per opcode name in subgraph 0 (the one an interpreter runs)
    op_counts_all: dict[str, int]  # over every subgraph (control flow bodies, other signatures)
    subgraph_count: int
    inputs: list[IOTensor]
    outputs: list[IOTensor]
    signatures: list[Signature]
    metadata: dict[str, int]  # metadata name -> size in bytes of its buffer
    min_runtime_version: str | None
    converter_version: str | None  # TensorFlow version from CONVERSION_METADATA
    optimizations: list[str]  # ConversionOptions.model_optimization_modes names
    weights: dict[str, WeightStats]  # "float32", "float16", ..., "quantized" (integer with scale), "other"

    @property
    def has_conversion_metadata(self) -> bool:
        return "CONVERSION_METADATA" in self.metadata

    @property
    def custom_ops(self) -> list[str]:
        return sorted({c.name for c in self.operator_codes if c.is_custom and not c.is_flex})

    @property
    def flex_ops(self) -> list[str]:
        return sorted({c.name for c in self.operator_codes if c.is_flex})

    @property
    def quantized_weight_fraction(self) -> float | None:
        """Share of weight elements stored quantized; near 0 means a "quantized" variant is really float.

        None when the model has no float or quantized weights at all.
        """
        quantized = self.weights.get("quantized", WeightStats()).elements
        total = quantized + sum(self.weights[k].elements for k in FLOAT_WEIGHTS if k in self.weights)
        return quantized / total if total else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["inputs"] = [t.to_dict() for t in self.inputs]
        out["outputs"] = [t.to_dict() for t in self.outputs]
        out["custom_ops"] = self.custom_ops
        out["flex_ops"] = self.flex_ops
        out["quantized_weight_fraction"] = self.quantized_weight_fraction
        out["has_conversion_metadata"] = self.has_conversion_metadata
        return out


def read_tflite(path: Path, *, max_bytes: int = MAX_TFLITE_BYTES) -> TFLiteInfo:
    """Describe the .tflite file at path; EdgebenchError(where=path) if it is not a readable TFLite model."""
    where = str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise EdgebenchError(f"file is {size} bytes, larger than the {max_bytes}-byte limit", where=where)
        if size < 8:
            raise EdgebenchError(f"not a TFLite model: only {size} bytes", where=where)
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _parse(data, where)
    except OSError as exc:
        raise EdgebenchError(f"cannot read the model: {exc.strerror or exc}", where=where) from exc


def parse_tflite(data: bytes, *, where: str = "<bytes>") -> TFLiteInfo:
    """Describe a TFLite model held in memory."""
    if len(data) > MAX_TFLITE_BYTES:
        raise EdgebenchError(f"model is larger than {MAX_TFLITE_BYTES} bytes", where=where)
    if len(data) < 8:
        raise EdgebenchError(f"not a TFLite model: only {len(data)} bytes", where=where)
    return _parse(data, where)


def _parse(data: bytes | mmap.mmap, where: str) -> TFLiteInfo:
    identifier = bytes(data[4:8])
    if identifier != FILE_IDENTIFIER:
        raise EdgebenchError(f"not a TFLite model: file identifier {identifier!r}, expected {FILE_IDENTIFIER!r}",
                             where=where)
    try:
        return _model(_Buf(data), where)
    except (_Corrupt, struct.error) as exc:
        raise EdgebenchError(f"corrupt or truncated TFLite model: {exc}", where=where) from exc


def _operator_code(index: int, t: _Table) -> OperatorCode:
    # Codes >= 127 live only in builtin_code; older files have only the int8 deprecated_builtin_code
    # (127 there is a placeholder). TFLite reads max(builtin_code, deprecated_builtin_code).
    code = max(t.scalar(10, "<i", 0), t.scalar(4, "<b", 0))
    custom = t.string(6)
    if code == CUSTOM_CODE:
        name = custom or "CUSTOM"
    else:
        name = BUILTIN_OPERATORS[code] if 0 <= code < len(BUILTIN_OPERATORS) else f"UNKNOWN_{code}"
    return OperatorCode(index=index, name=name, builtin_code=code, version=t.scalar(8, "<i", 1), custom_code=custom)


def _dtype(code: int) -> str:
    return TENSOR_TYPES[code] if 0 <= code < len(TENSOR_TYPES) else f"unknown_{code}"


def _shape(t: _Table, slot: int) -> list[int]:
    dims = [int(d) for d in t.scalars(slot, "<i")]
    if len(dims) > MAX_RANK:
        raise _Corrupt(f"tensor of rank {len(dims)}")
    return dims


def _io_tensor(tensors: list[_Table], index: int, names: dict[int, str]) -> IOTensor:
    if not 0 <= index < len(tensors):
        raise _Corrupt(f"subgraph input/output refers to tensor {index} of {len(tensors)}")
    t = tensors[index]
    shape = _shape(t, 4)
    quant = t.table(12)
    scales = [float(s) for s in quant.scalars(8, "<f")] if quant else []
    if not all(math.isfinite(s) for s in scales):  # would also make the description invalid JSON
        raise _Corrupt(f"tensor {index} has a non-finite quantization scale")
    zero_points = [int(z) for z in quant.scalars(10, "<q")] if quant else []
    per_tensor = len(scales) == 1 and len(zero_points) == 1  # the interpreter's legacy (scale, zero_point)
    tensor_name = t.string(10) or ""
    return IOTensor(
        name=names.get(index, tensor_name), tensor=tensor_name, index=index, shape=shape,
        shape_signature=_shape(t, 18) or shape, dtype=_dtype(t.scalar(6, "<b", 0)),
        scale=scales[0] if per_tensor else 0.0, zero_point=zero_points[0] if per_tensor else 0,
        scales=scales, zero_points=zero_points, quantized_dimension=quant.scalar(16, "<i", 0) if quant else 0)


def _buffer_span(buf: _Buf, b: _Table) -> tuple[int, int]:
    """(start, length) of a Buffer's bytes: inline data, or offset/size past the FlatBuffer (schema 3c)."""
    start, length = b.bytes_span(4)
    if length:
        return start, length
    offset, size = b.scalar(6, "<Q", 0), b.scalar(8, "<Q", 0)
    if offset > 1:  # 0 and 1 mean "no external data"
        if offset + size > buf.size:
            raise _Corrupt(f"buffer data at offset {offset} ({size} bytes) is outside the file")
        return offset, size
    return 0, 0


def _conversion_metadata(buf: _Buf, start: int, length: int) -> tuple[str | None, list[str]]:
    """(TensorFlow version, optimization modes) from the nested CONVERSION_METADATA FlatBuffer.

    Interpreters never read it, so an unreadable one is reported as absent rather than as an error.
    """
    try:
        if length < 8:
            return None, []
        nested = _Buf(buf.copy(start, length), buf.budget)
        root = nested.table(nested.u32(0))
        env, options = root.table(4), root.table(6)
        version = env.string(4) if env else None
        modes = [OPTIMIZATION_MODES.get(m, str(m)) for m in options.scalars(4, "<i")] if options else []
        return version, modes
    except (_Corrupt, struct.error):
        return None, []


def _op_counts(subgraph: _Table, codes: list[OperatorCode]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for op in subgraph.tables(10):
        index = op.scalar(4, "<I", 0)
        if index >= len(codes):
            raise _Corrupt(f"operator uses opcode {index} of {len(codes)}")
        counts[codes[index].name] += 1
    return counts


def _signature(t: _Table) -> Signature:
    return Signature(key=t.string(8) or "", subgraph_index=t.scalar(12, "<I", 0),
                     inputs={m.string(4) or "": m.scalar(6, "<I", 0) for m in t.tables(4)},
                     outputs={m.string(4) or "": m.scalar(6, "<I", 0) for m in t.tables(6)})


def _weight_kind(t: _Table) -> str:
    dtype = _dtype(t.scalar(6, "<b", 0))
    if dtype in FLOAT_WEIGHTS:
        return dtype
    quant = t.table(12)
    if dtype.startswith(("int", "uint")) and quant is not None and quant.scalars(8, "<f"):
        return "quantized"
    return "other"


def _weights(subgraphs: list[_Table], span: Callable[[int], tuple[int, int]]) -> dict[str, WeightStats]:
    weights: dict[str, WeightStats] = {}
    seen: set[int] = set()
    for sg in subgraphs:
        for t in sg.tables(4):
            index = t.scalar(8, "<I", 0)
            if index == 0 or index in seen:  # buffer 0 is the shared empty buffer; count shared ones once
                continue
            _, length = span(index)
            if not length:
                continue
            seen.add(index)
            stats = weights.setdefault(_weight_kind(t), WeightStats())
            stats.tensors += 1
            stats.elements += math.prod(max(d, 0) for d in _shape(t, 4))
            stats.bytes += length
    return weights


def _model(buf: _Buf, where: str) -> TFLiteInfo:
    model = buf.table(buf.u32(0))
    codes = [_operator_code(i, t) for i, t in enumerate(model.tables(6))]
    subgraphs = model.tables(8)
    per_subgraph = [_op_counts(sg, codes) for sg in subgraphs]
    signatures = [_signature(t) for t in model.tables(18)]

    inputs: list[IOTensor] = []
    outputs: list[IOTensor] = []
    if subgraphs:
        tensors = subgraphs[0].tables(4)
        # Signature names are the stable key for outputs (converters may reorder them).
        sig0 = next((s for s in signatures if s.subgraph_index == 0), None)
        in_names = {i: n for n, i in sig0.inputs.items()} if sig0 else {}
        out_names = {i: n for n, i in sig0.outputs.items()} if sig0 else {}
        inputs = [_io_tensor(tensors, i, in_names) for i in subgraphs[0].scalars(6, "<i")]
        outputs = [_io_tensor(tensors, i, out_names) for i in subgraphs[0].scalars(8, "<i")]

    spans = [_buffer_span(buf, b) for b in model.tables(12)]  # checks every buffer lies inside the file

    def span(index: int) -> tuple[int, int]:
        if index >= len(spans):
            raise _Corrupt(f"reference to buffer {index} of {len(spans)}")
        return spans[index]

    metadata: dict[str, int] = {}
    min_runtime: str | None = None
    converter: str | None = None
    optimizations: list[str] = []
    for entry in model.tables(16):
        name = entry.string(4) or ""
        start, length = span(entry.scalar(6, "<I", 0))
        metadata[name] = length
        if name == "min_runtime_version":  # a NUL-padded string, e.g. b"2.17.0\0\0..."
            min_runtime = buf.copy(start, min(length, 256)).split(b"\0", 1)[0].decode(
                "ascii", errors="replace") or None
        elif name == "CONVERSION_METADATA":
            converter, optimizations = _conversion_metadata(buf, start, length)

    return TFLiteInfo(
        path=where, size_bytes=buf.size, schema_version=model.scalar(4, "<I", 0), description=model.string(10),
        operator_codes=codes, op_counts=dict(per_subgraph[0]) if per_subgraph else {},
        op_counts_all=dict(sum(per_subgraph, Counter())), subgraph_count=len(subgraphs), inputs=inputs,
        outputs=outputs, signatures=signatures, metadata=metadata, min_runtime_version=min_runtime,
        converter_version=converter, optimizations=optimizations, weights=_weights(subgraphs, span))
