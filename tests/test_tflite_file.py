"""The .tflite reader against files made by real TensorFlow and read by the real ai-edge-litert interpreter."""

from __future__ import annotations

import json
import random
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.common.errors import EdgebenchError
from harness.conversion.tflite_file import IOTensor, TFLiteInfo, parse_tflite, read_tflite
from tests.support.tflite_models import convert_test_models, interpreter

@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return convert_test_models(tmp_path_factory)


def versions(info: TFLiteInfo) -> dict[str, int]:
    return {c.name: c.version for c in info.operator_codes}


def assert_same_as_interpreter(ours: list[IOTensor], details: list[dict[str, Any]]) -> None:
    assert len(ours) == len(details)
    for mine, real in zip(ours, details, strict=True):
        assert mine.tensor == real["name"]
        assert mine.index == real["index"]
        assert mine.shape == real["shape"].tolist()
        assert mine.shape_signature == real["shape_signature"].tolist()
        assert mine.dtype == np.dtype(real["dtype"]).name
        assert (mine.scale, mine.zero_point) == pytest.approx(real["quantization"])
        q = real["quantization_parameters"]
        assert mine.scales == pytest.approx(q["scales"].tolist())
        assert mine.zero_points == q["zero_points"].tolist()
        assert mine.quantized_dimension == q["quantized_dimension"]


@pytest.mark.parametrize("name", ["mlp_fp32", "mlp_dynamic", "mlp_int8", "cnn_fp32", "cnn_dynamic", "two_heads"])
def test_io_details_equal_the_real_interpreters(models: dict[str, Path], name: str) -> None:
    info = read_tflite(models[name])
    it = interpreter(models[name])
    assert_same_as_interpreter(info.inputs, it.get_input_details())
    assert_same_as_interpreter(info.outputs, it.get_output_details())
    signatures = it.get_signature_list()
    assert {s.key for s in info.signatures} == set(signatures)
    for sig in info.signatures:
        runner = it.get_signature_runner(sig.key)
        assert sig.inputs == {k: d["index"] for k, d in runner.get_input_details().items()}
        assert sig.outputs == {k: d["index"] for k, d in runner.get_output_details().items()}
    json.dumps(info.to_dict(), allow_nan=False)  # plain JSON, no NaN


@pytest.mark.parametrize("name", ["mlp_fp32", "mlp_dynamic", "mlp_int8", "cnn_dynamic", "two_heads", "cumsum",
                                  "det_custom"])
def test_op_counts_equal_the_real_interpreters(models: dict[str, Path], name: str) -> None:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # No default delegate, so the node list is the file's own operators.
    it = Interpreter(model_path=str(models[name]),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    assert read_tflite(models[name]).op_counts == Counter(op["op_name"] for op in it._get_ops_details())


def test_extended_and_deprecated_builtin_codes(models: dict[str, Path]) -> None:
    info = read_tflite(models["cumsum"])
    assert {(c.name, c.builtin_code) for c in info.operator_codes} == {("BROADCAST_TO", 130), ("CUMSUM", 128)}

    # A file from before schema 3a: only the int8 deprecated_builtin_code is set.
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(models["mlp_fp32"].read_bytes(), 0))
    for code in model.operatorCodes:
        code.deprecatedBuiltinCode, code.builtinCode = code.builtinCode, 0  # 0 (the default) is not written
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    old = parse_tflite(bytes(builder.Output()))
    assert versions(old) == {"FULLY_CONNECTED": 1, "SOFTMAX": 1}
    assert old.op_counts == {"FULLY_CONNECTED": 2, "SOFTMAX": 1}


def test_large_buffers_are_not_mistaken_for_corruption(models: dict[str, Path]) -> None:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(models["mlp_fp32"].read_bytes(), 0))
    big = schema.BufferT()
    big.data = np.ones(3_000_000, np.uint8)  # more bytes than the reader's cap on items it iterates over
    model.buffers.append(big)
    builder = flatbuffers.Builder(4_000_000)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    assert parse_tflite(bytes(builder.Output())).op_counts == {"FULLY_CONNECTED": 2, "SOFTMAX": 1}


def test_fp32_and_dynamic_mlp(models: dict[str, Path]) -> None:
    fp32, dynamic = read_tflite(models["mlp_fp32"]), read_tflite(models["mlp_dynamic"])
    assert fp32.schema_version == 3
    assert versions(fp32) == {"FULLY_CONNECTED": 1, "SOFTMAX": 1}
    assert versions(dynamic)["FULLY_CONNECTED"] >= 12  # TF 2.21's hybrid FULLY_CONNECTED
    assert fp32.op_counts == dynamic.op_counts == {"FULLY_CONNECTED": 2, "SOFTMAX": 1}
    assert fp32.op_counts_all == fp32.op_counts and fp32.subgraph_count == 1
    assert fp32.min_runtime_version == "1.5.0" and dynamic.min_runtime_version == "2.17.0"
    assert fp32.has_conversion_metadata and fp32.converter_version and fp32.converter_version.startswith("2.")
    assert dynamic.optimizations == ["PTQ_DYNAMIC_RANGE"] and fp32.optimizations == []
    assert fp32.quantized_weight_fraction == 0.0
    assert dynamic.weights["quantized"].tensors == 1 and dynamic.weights["quantized"].elements == 32 * 64
    assert dynamic.weights["quantized"].bytes == 32 * 64  # int8
    assert 0.7 < (dynamic.quantized_weight_fraction or 0) < 1.0  # the 64x10 layer stays float
    assert fp32.custom_ops == fp32.flex_ops == []


def test_cnn_dynamic_uses_new_op_versions(models: dict[str, Path]) -> None:
    fp32, dynamic = read_tflite(models["cnn_fp32"]), read_tflite(models["cnn_dynamic"])
    assert versions(fp32) == {"CONV_2D": 1, "MEAN": 1, "FULLY_CONNECTED": 1}
    assert versions(dynamic)["CONV_2D"] == 5 and versions(dynamic)["FULLY_CONNECTED"] >= 12
    assert dynamic.op_counts == {"CONV_2D": 2, "MEAN": 1, "FULLY_CONNECTED": 2}


def test_quantized_variant_that_is_really_float_is_visible(models: dict[str, Path]) -> None:
    info = read_tflite(models["tiny_dynamic"])
    assert info.optimizations == ["PTQ_DYNAMIC_RANGE"]  # the converter was asked to quantize ...
    assert info.quantized_weight_fraction == 0.0  # ... and quantized nothing
    assert "quantized" not in info.weights and info.weights["float32"].elements == 8 * 4


def test_int8_io_quantization(models: dict[str, Path]) -> None:
    info = read_tflite(models["mlp_int8"])
    (x,), (y,) = info.inputs, info.outputs
    assert x.dtype == y.dtype == "int8"
    assert x.scale > 0 and y.scale == pytest.approx(1 / 256) and y.zero_point == -128  # softmax output
    assert info.quantized_weight_fraction == 1.0
    assert info.optimizations == ["PTQ_FULL_INTEGER"]


def test_dynamic_batch_dimension(models: dict[str, Path]) -> None:
    (x,) = read_tflite(models["mlp_fp32"]).inputs
    assert x.name == "features" and x.shape == [1, 32] and x.shape_signature == [-1, 32]
    (image,) = read_tflite(models["cnn_fp32"]).inputs
    assert image.shape_signature == [-1, 16, 16, 3] and image.dtype == "float32"
    (static,) = read_tflite(models["two_heads"]).inputs
    assert static.shape == static.shape_signature == [2, 8]


def test_outputs_named_by_signature(models: dict[str, Path]) -> None:
    info = read_tflite(models["two_heads"])
    (sig,) = info.signatures
    assert sig.key == "serving_default" and set(sig.outputs) == {"zeta_scores", "alpha_value"}
    by_name = {o.name: o for o in info.outputs}
    assert set(by_name) == {"zeta_scores", "alpha_value"}
    assert by_name["zeta_scores"].shape == [2, 3] and by_name["alpha_value"].shape == [2, 1]
    for name, out in by_name.items():
        assert sig.outputs[name] == out.index
        assert out.tensor.startswith("StatefulPartitionedCall")  # the graph's name, kept beside the signature's
        assert out.to_dict()["name"] == name and out.to_dict()["tensor"] == out.tensor


def test_flex_and_custom_ops_are_named(models: dict[str, Path]) -> None:
    flex = read_tflite(models["det_flex"])
    assert flex.flex_ops == ["FlexMatrixDeterminant"] and flex.custom_ops == []
    assert flex.op_counts == {"FlexMatrixDeterminant": 1}
    (code,) = flex.operator_codes
    assert code.is_custom and code.is_flex and code.builtin_code == 32
    custom = read_tflite(models["det_custom"])
    assert custom.custom_ops == ["MatrixDeterminant"] and custom.flex_ops == []
    assert custom.signatures == []  # no signature: outputs keep their tensor names
    assert [o.name for o in custom.outputs] == [o.tensor for o in custom.outputs]


# --- untrusted input -----------------------------------------------------------------------------------------


def test_truncated_files_are_refused(models: dict[str, Path], tmp_path: Path) -> None:
    data = models["mlp_fp32"].read_bytes()
    for size in (0, 7, 8, 64, len(data) // 2, len(data) - 200):
        path = tmp_path / f"cut{size}.tflite"
        path.write_bytes(data[:size])
        with pytest.raises(EdgebenchError) as err:
            read_tflite(path)
        assert err.value.where == str(path)
        assert "TFLite" in err.value.message


def test_non_tflite_files_are_refused(tmp_path: Path) -> None:
    for name, content in (("model.keras", b"PK\x03\x04" + bytes(100)), ("notes.txt", b"hello world, not a model"),
                          ("model.onnx", b"\x08\x07\x12\x04\x00TFL3" + bytes(32))):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(EdgebenchError, match="not a TFLite model") as err:
            read_tflite(path)
        assert err.value.where == str(path)
    with pytest.raises(EdgebenchError, match="cannot read") as err:
        read_tflite(tmp_path / "missing.tflite")
    assert err.value.where == str(tmp_path / "missing.tflite")


def test_size_limit(models: dict[str, Path]) -> None:
    with pytest.raises(EdgebenchError, match="larger than"):
        read_tflite(models["mlp_fp32"], max_bytes=1000)


def test_hostile_offsets_and_lengths(models: dict[str, Path]) -> None:
    data = bytearray(models["mlp_fp32"].read_bytes())
    root = struct.unpack_from("<I", data, 0)[0]
    for patch in (struct.pack("<I", len(data) + 4), struct.pack("<I", 0xFFFFFFFF)):
        bad = bytearray(data)
        bad[0:4] = patch  # root table outside the file
        with pytest.raises(EdgebenchError, match="corrupt"):
            parse_tflite(bytes(bad), where="bad.tflite")
    bad = bytearray(data)
    struct.pack_into("<i", bad, root, -0x7FFFFFF0)  # vtable far outside
    with pytest.raises(EdgebenchError, match="corrupt"):
        parse_tflite(bytes(bad))


def test_random_corruption_never_escapes_as_another_error(models: dict[str, Path]) -> None:
    """Flip bytes anywhere: the reader returns an answer or raises EdgebenchError, nothing else."""
    rng = random.Random(1)
    refused = 0
    for name in ("mlp_dynamic", "two_heads", "det_flex"):
        data = models[name].read_bytes()
        for _ in range(150):
            bad = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                bad[rng.randrange(8, len(bad))] = rng.randrange(256)
            try:
                parse_tflite(bytes(bad), where=name)
            except EdgebenchError as exc:
                refused += 1
                assert exc.where == name
    assert refused > 0
