"""Runtime compatibility judged from the file, checked against real conversions and the real ai-edge-litert."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from tests.support.tflite_models import convert_test_models, interpreter
from tests.support.venvs import device_python

from harness.conversion import compat
from harness.conversion.compat import check, parse_version
from harness.conversion.tflite_file import BUILTIN_OPERATORS, CUSTOM_CODE, OperatorCode, read_tflite


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return convert_test_models(tmp_path_factory)


@pytest.mark.parametrize("name", ["mlp_fp32", "cnn_fp32"])
def test_fp32_loads_on_both_runtimes(models: dict[str, Path], name: str) -> None:
    info = read_tflite(models[name])
    for runtime, version in (("tflite_runtime", "2.14.0"), ("ai-edge-litert", "2.3.0")):
        result = check(info, runtime, version)
        assert result.loadable is True, result
        assert result.problems == result.unknowns == []
    interpreter(models[name]).invoke()


@pytest.mark.parametrize("name", ["mlp_dynamic", "cnn_dynamic"])
def test_dynamic_range_variant_is_refused_by_tflite_runtime_2_14(models: dict[str, Path], name: str) -> None:
    """TF 2.21 writes FULLY_CONNECTED v12; tflite-runtime 2.14.0 stops at v10 (checked on the real wheel:
    "Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'")."""
    info = read_tflite(models[name])
    old = check(info, "tflite_runtime", "2.14.0")
    assert old.loadable is False
    assert any("Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'" in p for p in old.problems)
    assert any("min_runtime_version 2.17.0" in p for p in old.problems)
    new = check(info, "ai_edge_litert", "2.3.0")
    assert new.loadable is True and new.problems == []
    interpreter(models[name]).invoke()  # and the real ai-edge-litert agrees


def test_flex_ops_never_load_on_the_lite_wheels(models: dict[str, Path]) -> None:
    info = read_tflite(models["det_flex"])
    for runtime, version in (("tflite_runtime", "2.14.0"), ("ai_edge_litert", "2.3.0"), ("ai_edge_litert", "9.0")):
        result = check(info, runtime, version)
        assert result.loadable is False
        assert any("FlexMatrixDeterminant" in p and "Flex delegate" in p for p in result.problems)
    with pytest.raises(RuntimeError, match="Select TensorFlow op"):
        interpreter(models["det_flex"])
    full_tf = check(info, "tensorflow", "2.21.0")  # full TensorFlow links the Flex delegate
    assert full_tf.loadable is True and full_tf.problems == []


def test_custom_ops_need_a_runtime_that_registers_them(models: dict[str, Path]) -> None:
    info = read_tflite(models["det_custom"])
    result = check(info, "ai_edge_litert", "2.3.0")
    assert result.loadable is False
    assert any("custom op MatrixDeterminant" in p for p in result.problems)
    with pytest.raises(RuntimeError, match="unresolved custom op: MatrixDeterminant"):
        interpreter(models["det_custom"])


def test_custom_ops_built_into_the_runtime_or_its_delegate(models: dict[str, Path]) -> None:
    base = read_tflite(models["mlp_fp32"])

    def with_custom(name: str) -> compat.Compatibility:
        code = OperatorCode(index=len(base.operator_codes), name=name, builtin_code=CUSTOM_CODE, version=1,
                            custom_code=name)
        return check(dataclasses.replace(base, operator_codes=[*base.operator_codes, code]), "tflite_runtime",
                     "2.14.0")

    assert with_custom("TFLite_Detection_PostProcess").loadable is True
    xnnpack = with_custom("Convolution2DTransposeBias")
    assert xnnpack.loadable is None and "XNNPACK" in xnnpack.unknowns[0]


def test_releases_without_a_table_are_bounded_by_the_tables(models: dict[str, Path]) -> None:
    fp32, dynamic = read_tflite(models["mlp_fp32"]), read_tflite(models["mlp_dynamic"])
    older = check(dynamic, "tflite_runtime", "2.11.0")  # refused by 2.14, so by every older release
    assert older.loadable is False and any("FULLY_CONNECTED version" in p for p in older.problems)
    newer = check(fp32, "ai_edge_litert", "2.5.1")  # loads on 2.3, so on newer releases
    assert newer.loadable is True and newer.notes
    unknown = check(dynamic, "ai_edge_litert", "1.4.0")
    assert unknown.loadable is None and "no op table" in unknown.unknowns[0]


def test_min_runtime_version_decides_where_there_is_no_table(models: dict[str, Path]) -> None:
    dynamic = read_tflite(models["mlp_dynamic"])
    old_tf = check(dynamic, "tensorflow", "2.16.1")
    assert old_tf.loadable is False
    assert old_tf.problems == ["the model declares min_runtime_version 2.17.0, newer than tensorflow 2.16"]
    fp32 = check(read_tflite(models["mlp_fp32"]), "tensorflow", "2.10.0")
    assert fp32.loadable is None and any("1.5.0, which tensorflow 2.10 satisfies" in n for n in fp32.notes)
    assert check(dynamic, "tensorflow", "2.21.0").loadable is True  # its own converter's release


def test_unknown_runtime_version_or_schema(models: dict[str, Path]) -> None:
    info = read_tflite(models["mlp_fp32"])
    assert check(info, "onnxruntime", "1.20").loadable is None
    assert check(info, "tflite_runtime", None).loadable is None
    assert check(info, "tflite_runtime", "nightly").loadable is None
    old_schema = check(dataclasses.replace(info, schema_version=2), "ai_edge_litert", "2.3.0")
    assert old_schema.loadable is False and "schema version 2" in old_schema.problems[0]
    assert parse_version("2.14.0") == (2, 14, 0) and parse_version("v2.3") == (2, 3, 0)
    assert parse_version("2.17.0rc1") == (2, 17, 0) and parse_version("latest") is None


def _litert_version() -> str:
    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return "not installed"


@pytest.mark.parametrize("name", ["mlp_fp32", "mlp_dynamic", "mlp_int8", "cnn_fp32", "cnn_dynamic", "tiny_dynamic",
                                  "two_heads", "cumsum", "det_flex", "det_custom"])
def test_verdict_matches_the_installed_interpreter(models: dict[str, Path], name: str) -> None:
    verdict = check(read_tflite(models[name]), "ai_edge_litert", _litert_version())
    try:
        interpreter(models[name])
        loaded = True
    except RuntimeError:
        loaded = False
    assert verdict.loadable in (loaded, None), verdict  # never wrong ...
    if _litert_version().startswith("2.3."):
        assert verdict.loadable == loaded, verdict  # ... and for the release with a table, never unsure


TABLE_LITERT = "2.3."  # the ai-edge-litert release the table was measured on; pinned in pyproject's test extra


def _one_opcode_model(code: int, version: int) -> bytes:
    """A model whose only content is one operator code: building an interpreter resolves it, or refuses."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT()
    model.version = 3
    opcode = schema.OperatorCodeT()
    opcode.builtinCode, opcode.deprecatedBuiltinCode, opcode.version = code, min(code, 127), version
    model.operatorCodes = [opcode]
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs, subgraph.operators = [], [], [], []
    model.subgraphs, model.buffers = [subgraph], [schema.BufferT()]
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _probes(table: dict[str, int]) -> dict[tuple[str, int], tuple[int, bool]]:
    """(op, version) -> (builtin code, whether the table says it loads): the top version and one more; absent ops
    at versions 1 and 2."""
    probes = {}
    for code, name in enumerate(BUILTIN_OPERATORS):
        if name in ("CUSTOM", "PLACEHOLDER_FOR_GREATER_OP_CODES"):
            continue
        top = table.get(name)
        expected = {1: False, 2: False} if top is None else {top: True, top + 1: False}
        if name == "BROADCAST_TO":  # version 1 was rolled back
            expected[1] = False
        probes.update({(name, version): (code, ok) for version, ok in expected.items()})
    return probes


def test_ai_edge_litert_table_matches_the_installed_wheel() -> None:
    """Every builtin code at the table's max version loads, one version more does not, absent codes fail."""
    from ai_edge_litert.interpreter import Interpreter

    # Not a skip: a newer wheel would silently stop checking the table. pyproject's test extra pins it.
    assert _litert_version().startswith(TABLE_LITERT), \
        f"the ai-edge-litert table is for {TABLE_LITERT}x, installed: {_litert_version()}: re-measure the table"

    def loads(code: int, version: int) -> bool:
        try:
            Interpreter(model_content=_one_opcode_model(code, version))
            return True
        except (RuntimeError, ValueError):
            return False

    probes = _probes(compat.RUNTIMES["ai_edge_litert"].tables[(2, 3)])
    assert [(n, v, ok) for (n, v), (code, ok) in probes.items() if loads(code, v) != ok] == []


TFLITE_PROBE = """
import json, sys
from tflite_runtime.interpreter import Interpreter
verdicts = {}
for path in sys.argv[1:]:
    try:
        Interpreter(model_path=path)
        verdicts[path] = True
    except (RuntimeError, ValueError):
        verdicts[path] = False
print(json.dumps(verdicts))
"""


def test_tflite_runtime_2_14_table_matches_the_real_wheel(tmp_path: Path) -> None:
    """The same measurement on the tflite-runtime 2.14.0 wheel, in the device environment the agent tests use."""
    probes = _probes(compat.RUNTIMES["tflite_runtime"].tables[(2, 14)])
    files: dict[tuple[str, int], str] = {}
    for (name, version), (code, _) in probes.items():
        path = tmp_path / f"{name}-{version}.tflite"
        path.write_bytes(_one_opcode_model(code, version))
        files[(name, version)] = str(path)
    python = device_python("tflite")
    done = subprocess.run([str(python), "-c", TFLITE_PROBE, *files.values()], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    verdicts = json.loads(done.stdout)
    which = "import importlib.metadata as m; print(m.version('tflite-runtime'))"
    installed = subprocess.run([str(python), "-c", which], capture_output=True, text=True, check=True).stdout.strip()
    assert installed == "2.14.0"
    assert [(n, v, ok) for (n, v), (_, ok) in probes.items() if verdicts[files[(n, v)]] != ok] == []
