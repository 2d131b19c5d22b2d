"""The quantization doctor on a model built to defeat per-tensor int8: real TensorFlow, real agent runs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.commands.doctor import cmd_doctor, split_labels
from harness.common.errors import EdgebenchError, ExitCode
from harness.doctor.front import mark_front
from harness.doctor.layers import float_tail_recipes, keras_layer, keep_float_recipes, rank_layers
from harness.fleet.jobs import from_converted
from harness.results.store import Store

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"runs": 5, "warmup": 1, "min_seconds": 0.0, "warmup_seconds": 0.0, "max_runs": 5}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("hostile")
    return {"keras3": _build_hostile(out / "keras3", "hostile.keras"),
            "keras2": _build_hostile(out / "keras2", "hostile.h5", "keras2")}


def _build_hostile(directory: Path, file: str, *kind: str) -> Path:
    """tests.support.hostile_model's model (``kind``: keras2 or nested) and its data, in a directory of its own."""
    directory.mkdir()
    subprocess.run([sys.executable, "-m", "tests.support.hostile_model", str(directory / file), *kind],
                   check=True, cwd=ROOT, capture_output=True, timeout=300)
    return directory / file


def _doctor(model: Path, out: Path, **options: object) -> tuple[int, dict, str]:
    stream = io.StringIO()
    data = model.with_name("hostile")
    code = cmd_doctor(model, calibration=Path(f"{data}_calibration.npy"), eval_data=Path(f"{data}_eval.npz"),
                      out_dir=out, stream=stream, **options)  # type: ignore[arg-type]
    return code, json.loads((out / "doctor.json").read_text()), stream.getvalue()


def _assert_hostile_found_and_fixed(code: int, doc: dict, printed: str, out: Path) -> None:
    assert code == ExitCode.OK
    assert doc["schema_version"] == 1 and doc["variant"] == "int8" and doc["method"] == "debugger"
    assert doc["inputs"] == {**doc["inputs"], "kind": "eval", "random": False}
    assert doc["layers"][0]["name"] == "hostile" and doc["layers"][0]["op"] == "CONV_2D"
    assert {e["name"] for e in doc["layers"]} == {"stem", "hostile", "mix", "pool", "head"}  # Keras names back
    assert doc["layers"][0]["metrics"]["channel_snr_db"] < 5 < doc["layers"][1]["metrics"]["channel_snr_db"]
    rows = {c["name"]: c for c in doc["candidates"]}
    assert not rows["int8"]["meets_bar"] and "too inaccurate" in rows["int8"]["why_not"]
    assert rows["int8"]["top1"] < 0.8  # task accuracy against the labels, not only drift
    fix = rows["int8_float1"]
    assert fix["keeps_float"][:2] == ["hostile", "mix"]  # the bad tensor's producer and its consumer
    assert fix["meets_bar"] and fix["top1"] == 1.0 and fix["accuracy"]["cosine"] > 0.999
    # each candidate is an ordinary converted variant: manifest entry, host validation, runnable by `run`
    manifest = json.loads((out / "converted" / "manifest.json").read_text())
    assert manifest["variants"]["int8_float1"]["validation"]["status"] == "ok"
    assert "int8_float1" in [mv.variant for mv in from_converted(out / "converted")]
    html = (out / "doctor.html").read_text()
    assert "<svg" in html and "hostile" in html and "http" not in html.replace("http-equiv", "")
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("#  layer"))
    assert lines[header + 1].split()[:2] == ["1", "hostile"]


def test_a_keras2_model_hostile_layer_comes_first_and_keeping_it_float_brings_int8_back(
        hostile: dict[str, Path], tmp_path: Path) -> None:
    _assert_hostile_found_and_fixed(*_doctor(hostile["keras2"], tmp_path, variant="int8"), tmp_path)


def test_a_layer_inside_a_wrapped_backbone_is_ranked_and_kept_float_by_its_own_name(tmp_path: Path) -> None:
    """Transfer learning: stem, hostile and mix inside a Functional ``backbone`` used as one layer of the model."""
    model = _build_hostile(tmp_path / "nested", "hostile.keras", "nested")
    _assert_hostile_found_and_fixed(*_doctor(model, tmp_path / "doc", variant="int8"), tmp_path / "doc")


def test_measured_on_a_device_the_fix_is_on_the_front_and_the_recommendation_meets_the_bar(
        hostile: dict[str, Path], tmp_path: Path) -> None:
    code, doc, printed = _doctor(hostile["keras3"], tmp_path, variant="int8", devices="local",
                                 store=tmp_path / "results.sqlite", measure=QUICK)
    _assert_hostile_found_and_fixed(code, doc, printed, tmp_path)
    assert doc["run"]
    rows = {c["name"]: c for c in doc["candidates"]}
    assert all(rows[name]["latency"]["local"]["p50_ms"] > 0 for name in ("fp32", "int8", "int8_float1"))
    assert set(rows["int8_float1"]["dominated"]) == {"local"}
    recommended = doc["recommendation"]["local"]["candidate"]
    assert rows[recommended]["meets_bar"]
    fastest_ok = min((c["latency"]["local"]["p50_ms"], c["name"]) for c in rows.values()
                     if c["meets_bar"] and c["latency"].get("local", {}).get("p50_ms") is not None)
    assert recommended == fastest_ok[1]
    assert "local" in (tmp_path / "doctor.html").read_text()
    _assert_the_run_report_links_to_the_doctor(tmp_path)


def _assert_the_run_report_links_to_the_doctor(out: Path) -> None:
    """The run report of these variants: int8 misses the bar, and links to the doctor's page."""
    from harness.report.render import render_report

    db = Store(out / "results.sqlite")
    export = db.export_run(db.resolve("latest"))
    html = render_report(export, out / "reports" / "run.html").read_text()
    assert 'href="../doctor.html"' in html and "int8 misses the accuracy bar" in html
    # a page the manifest names but that is not a doctor page on this machine is no link; the command is
    for cell in export["results"]:
        cell["conversion"] = {**(cell["conversion"] or {}), "doctor": "javascript:alert(1)//doctor.html"}
    html = render_report(export, out / "reports" / "run2.html").read_text()
    assert "doctor's diagnosis</a>" not in html and "edgebench doctor MODEL --variant int8" in html


def test_int16x8_is_localised_by_comparing_tensors_with_the_float_model(hostile: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    code, doc, _ = _doctor(hostile["keras3"], tmp_path, variant="int16x8")
    assert doc["method"] == "compare" and doc["ranked_by"] == {"metric": "snr_drop_db", "higher_is_worse": True}
    assert doc["layers"] and all("snr_drop_db" in e["metrics"] for e in doc["layers"])
    drops = {e["name"]: e["metrics"]["snr_drop_db"] for e in doc["layers"]}
    assert drops["hostile"] > 1  # weights are not an op's inherited error (they once zeroed every conv's drop)
    assert max(drops.values()) < 100  # the first conv is charged from the quantized input, not a perfect one
    assert "tensor by tensor" not in " ".join(doc["notes"])  # not a fallback: the chosen method for int16x8


def test_keras_layer_names_come_back_from_tflite_tensor_names() -> None:
    known = ["stem", "hostile", "conv_1"]
    assert keras_layer("functional_1/hostile_1/BiasAdd;functional_1/hostile_1/convolution", known) == ("hostile", True)
    assert keras_layer("model/conv_1/Relu", known) == ("conv_1", True)  # a user's own _1 is kept
    assert keras_layer("StatefulPartitionedCall_1:0", known) == ("StatefulPartitionedCall_1:0", False)
    assert keras_layer("saved/block_3/add", []) == ("block_3", True)
    # a layer of a nested model is itself, not the model wrapping it; an op's own name is no layer
    nested = ["backbone", "hostile", "pool", "Mean"]
    assert keras_layer("outer_1/backbone_1/hostile_1/BiasAdd", nested) == ("hostile", True)
    assert keras_layer("outer/backbone/hostile/Conv2D;outer/backbone/hostile/BiasAdd", nested) == ("hostile", True)
    assert keras_layer("outer_1/pool_1/Mean", nested) == ("pool", True)


NESTED_TAIL = """
import json, sys
import keras
from harness.conversion.quant_debug import layer_names
inner = keras.Input((4,), name="backbone_input")
backbone = keras.Model(inner, keras.layers.Dense(3, name="logits")(keras.layers.Dense(8, name="hidden")(inner)),
                       name="backbone")
x = keras.Input((4,), name="x")
keras.Model(x, backbone(keras.layers.Dense(4, name="pre")(x)), name="outer").save(sys.argv[1])
print(json.dumps(layer_names(sys.argv[1], None)))
"""


def test_a_model_ending_in_a_nested_model_has_the_nested_models_output_layer_as_its_own(tmp_path: Path) -> None:
    """The renamed output tensor of a single-output model is named after its output layer: the inner one."""
    done = subprocess.run([sys.executable, "-c", NESTED_TAIL, str(tmp_path / "tail.keras")], check=True, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    names, outputs = json.loads(done.stdout.splitlines()[-1])
    assert {"backbone", "hidden", "logits", "pre"} <= set(names) and outputs == ["logits"]


def test_candidates_keep_the_consumers_of_the_worst_tensors_and_skip_repeated_sets() -> None:
    graph = [{"op": "CONV_2D", "inputs": ["in"], "outputs": ["m/a/x"]},
             {"op": "CONV_2D", "inputs": ["m/a/x"], "outputs": ["m/b/x"]},
             {"op": "MEAN", "inputs": ["m/b/x"], "outputs": ["m/c/x"]}]
    localised = {"method": "debugger", "graph": graph, "layer_names": ["a", "b", "c"], "tensors": [
        {"tensor": f"m/{n}/x", "op": "CONV_2D", "metrics": {"channel_snr_db": v}} for n, v in
        (("a", 1.0), ("b", 30.0), ("c", 20.0))]}
    ranked = rank_layers(localised)
    assert [e["name"] for e in ranked] == ["a", "c", "b"]
    recipes = keep_float_recipes(localised, ranked, counts=(1, 2, 4))
    assert recipes["int8_float1"]["keeps_float"] == ["a", "b"]
    assert recipes["int8_float1"]["float_nodes"] == ["m/a/x", "m/b/x"]
    assert "io_type" not in recipes["int8_float1"]  # inner layers: the model keeps int8 inputs and outputs
    assert recipes["int8_float2"]["io_type"] == "float32"  # keeps the output layer c: its output stays float
    assert list(recipes) == ["int8_float1", "int8_float2"]  # k=4 > 3 layers


def test_a_candidate_is_dominated_only_by_one_at_least_as_good_in_everything() -> None:
    def row(name: str, ms: float, cos: float, size: int) -> dict:
        return {"name": name, "latency": {"d": {"p50_ms": ms}}, "accuracy": {"cosine": cos}, "top1": None,
                "bytes": size, "dominated": {}}
    rows = [row("fast", 1.0, 0.90, 10), row("slow_same", 2.0, 0.90, 10), row("accurate", 3.0, 0.999, 10)]
    mark_front(rows, "d")
    assert [r["dominated"]["d"] for r in rows] == [False, True, False]


def test_labels_must_be_integers_one_per_sample(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 2), np.float32), y=np.zeros(4, np.float32))
    with pytest.raises(EdgebenchError, match="integers"):
        split_labels(tmp_path / "bad.npz", tmp_path)
    np.savez(tmp_path / "good.npz", x=np.zeros((4, 2), np.float32), y=np.arange(4))
    inputs, labels = split_labels(tmp_path / "good.npz", tmp_path)
    assert inputs.suffix == ".npy" and labels is not None and np.load(labels).tolist() == [0, 1, 2, 3]


def test_random_inputs_are_flagged_and_a_lossless_variant_says_its_ranking_is_noise(hostile: dict[str, Path],
                                                                                     tmp_path: Path) -> None:
    stream = io.StringIO()
    cmd_doctor(hostile["keras3"], variant="dynamic", out_dir=tmp_path, stream=stream)
    doc = json.loads((tmp_path / "doctor.json").read_text())
    assert doc["inputs"]["kind"] == "calibration" and doc["inputs"]["random"] is True
    assert "WARNING: RANDOM INPUTS" in stream.getvalue() and "RANDOM INPUTS" in (tmp_path / "doctor.html").read_text()
    # the tiny model's dynamic-range variant keeps its small weights float: nothing to blame, and it says so
    assert any("ranking is noise" in note for note in doc["notes"])


def test_a_candidate_that_failed_is_a_row_with_its_reason_never_a_recommendation() -> None:
    from harness.doctor.front import candidate_row, recommend

    bar = {"cosine": 0.99, "top1_agreement": 0.99}
    failed = candidate_row("int8_float1", {"status": "failed_to_prepare", "error": "host validation: no kernel",
                                           "bytes": 10}, {"base": "int8", "keeps_float": ["a"], "float_nodes": ["x"]},
                           bar, None)
    assert failed["status"] == "failed_to_prepare" and not failed["meets_bar"]
    assert failed["why_not"] == "host validation: no kernel" and failed["keeps_float"] == ["a"]
    failed["latency"]["d"] = {"p50_ms": 0.1, "status": "failed_to_prepare", "error": "no kernel"}
    assert recommend([failed], ["d"])["d"]["candidate"] is None


def _standin_compiler(directory: Path) -> Path:
    """An ``edgetpu_compiler`` on PATH: tests.support.edgetpu_compiler (Coral's package is unreachable here)."""
    directory.mkdir()
    script = directory / "edgetpu_compiler"
    script.write_text(f"#!/bin/sh\ncd {ROOT} && exec {sys.executable} -m tests.support.edgetpu_compiler \"$@\"\n")
    script.chmod(0o755)
    return directory


def test_edge_tpu_candidates_are_float_tails_compiled_and_run_on_the_tpu_delegate(
        hostile: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{_standin_compiler(tmp_path / 'bin')}:{os.environ['PATH']}")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("all:\n  hosts:\n    coral:\n      transport: local\n      delegate: edgetpu\n")
    # an Edge TPU board in --devices is enough to get Edge TPU candidates
    code, doc, printed = _doctor(hostile["keras3"], tmp_path / "doc", variant="int8", devices="coral",
                                 inventory=inventory, store=tmp_path / "results.sqlite", measure=QUICK)
    rows = {c["name"]: c for c in doc["candidates"]}
    tail = rows["int8_tail1"]
    assert tail["keeps_float"] == ["hostile", "mix", "pool", "head"]  # from the worst layer to the outputs
    assert tail["meets_bar"] and tail["top1"] == 1.0
    # the compiler maps the int8 prefix (the stem) and leaves the float tail on the CPU; plain int8 maps it all
    tpu, plain = rows["edgetpu_tail1"], rows["edgetpu"]
    assert tpu["status"] == "ok" and tpu["accuracy_of"] == "int8_tail1" and tpu["meets_bar"]
    assert tpu["edgetpu_ops"]["tpu_ops"] >= 1 and tpu["edgetpu_ops"]["cpu_ops"] >= 4
    assert plain["accuracy_of"] == "int8" and plain["edgetpu_ops"]["cpu_ops"] in (0, None)
    assert not plain["meets_bar"]
    assert "edgetpu_tail1: int8_tail1 compiled for the Edge TPU" in printed
    manifest = json.loads((tmp_path / "doc" / "converted" / "manifest.json").read_text())
    assert manifest["variants"]["edgetpu_tail1"]["edgetpu_of"] == "int8_tail1"
    assert "validation" not in manifest["variants"]["edgetpu_tail1"]  # needs the accelerator, not run on the host
    # on the board, compiled variants ask for the Edge TPU delegate (absent here: a failed cell naming it);
    # the CPU variants run beside it
    assert tpu["latency"]["coral"]["status"] == "failed_to_load" and "libedgetpu" in tpu["latency"]["coral"]["error"]
    assert tail["latency"]["coral"]["status"] == "ok"
    assert doc["recommendation"]["coral"]["candidate"] in {n for n, r in rows.items() if r["meets_bar"]}


def test_float_tails_cut_at_the_first_op_of_the_worst_layers_once_per_cut() -> None:
    graph = [{"op": "CONV_2D", "inputs": ["in"], "outputs": ["m/a/x"]},
             {"op": "CONV_2D", "inputs": ["m/a/x"], "outputs": ["m/b/x"]},
             {"op": "FULLY_CONNECTED", "inputs": ["m/b/x"], "outputs": ["m/c/x"]}]
    localised = {"method": "debugger", "graph": graph, "layer_names": ["a", "b", "c"],
                 "tensors": [{"tensor": "m/b/x", "op": "CONV_2D", "metrics": {"channel_snr_db": 1.0}},
                             {"tensor": "m/c/x", "op": "FULLY_CONNECTED", "metrics": {"channel_snr_db": 5.0}},
                             {"tensor": "m/a/x", "op": "CONV_2D", "metrics": {"channel_snr_db": 9.0}}]}
    recipes = float_tail_recipes(localised, rank_layers(localised), counts=(1, 2, 3))
    assert recipes["int8_tail1"]["float_nodes"] == ["m/b/x", "m/c/x"] and recipes["int8_tail1"]["tail_from"] == "b"
    assert "int8_tail2" not in recipes  # b and c: the same cut as b alone
    assert recipes["int8_tail3"]["float_nodes"] == ["m/a/x", "m/b/x", "m/c/x"]
    assert recipes["int8_tail1"]["io_type"] == "float32"  # the outputs are in the float tail
    assert recipes["edgetpu_tail1"]["edgetpu_of"] == "int8_tail1"


def test_a_variant_that_does_not_run_on_the_host_is_reported_with_the_failing_node_not_ranked(
        tmp_path: Path) -> None:
    """MobileNetV2's int16x8 converts, then a depthwise conv refuses its quantization at allocate_tensors
    (the failure FIELD-NOTES records): nothing to compare, and the doctor says so instead of stopping."""
    from benchmarks.bench_convert import BUILD

    model = tmp_path / "small.keras"
    subprocess.run([sys.executable, "-c", BUILD, str(model), "small"], check=True, capture_output=True, timeout=300)
    stream = io.StringIO()
    cmd_doctor(model, variant="int16x8", out_dir=tmp_path / "doc", stream=stream)
    doc = json.loads((tmp_path / "doc" / "doctor.json").read_text())
    assert doc["method"] == "compare" and doc["layers"] == []
    (note,) = [n for n in doc["notes"] if "cannot rank layers" in n]
    assert "does not run on the host" in note and "(DEPTHWISE_CONV_2D) writes" in note and "_depthwise" in note
    rows = {c["name"]: c for c in doc["candidates"]}
    assert rows["int16x8"]["status"] == "failed_to_prepare" and "no_integer_overflow" in rows["int16x8"]["why_not"]
    assert rows["fp32"]["status"] == "ok"  # the rest of the table stands
    assert "cannot rank layers" in stream.getvalue() and "cannot rank layers" in (tmp_path / "doc" / "doctor.html").read_text()


def test_two_inputs_of_one_shape_whose_names_end_alike_each_get_their_own_array(tmp_path: Path) -> None:
    """The doctor's top-1 step on a real two-input model: fed the same array twice, or swapped, it scores ~0.1."""
    from harness.commands.doctor import _evaluate
    from harness.commands.convert import convert_validated
    from harness.conversion.workers import Pool

    model = tmp_path / "two.keras"
    subprocess.run([sys.executable, "-m", "tests.support.two_input_model", str(model)], check=True, cwd=ROOT,
                   capture_output=True, timeout=300)
    eval_inputs, labels = split_labels(tmp_path / "two_eval.npz", tmp_path)
    assert labels is not None
    pool = Pool(1)
    try:
        manifest = convert_validated(model, tmp_path / "converted", variants=["fp32"], name="two", pool=pool,
                                     eval_data=eval_inputs)
        top1 = _evaluate(pool, tmp_path / "converted", manifest, labels)
    finally:
        pool.close()
    assert top1["fp32"] == {"top1": 1.0, "error": None}


def test_sample_arrays_match_inputs_by_exact_name_then_unambiguous_suffix_and_never_guess() -> None:
    from harness.conversion.quant_debug import _ordered

    a, b, c = (np.full((1, 2), v, np.float32) for v in (1, 2, 3))

    def order(samples: dict, *names: str) -> list[float]:
        return [float(x[0, 0]) for x in _ordered(samples, [{"name": n} for n in names])]
    assert order({"image": a, "thermal_image": b}, "serving_default_thermal_image:0", "serving_default_image:0") == [2, 1]
    assert order({"arr_0": a, "arr_1": b}, "serving_default_thermal_image:0", "serving_default_image:0") == [1, 2]
    # a suffix naming one array for one input and no other (a model's own prefix on its input's name)
    assert order({"image": a, "rgb": b}, "serving_default_rgb:0", "cam_image:0") == [2, 1]
    with pytest.raises(EdgebenchError, match=r"inputs \(rgb_image, thermal_image\).*for rgb_image, thermal_image"):
        _ordered({"image": a, "depth": b}, [{"name": "serving_default_rgb_image:0"},
                                            {"name": "serving_default_thermal_image:0"}])  # which one is image's?
    with pytest.raises(EdgebenchError, match=r"no single array for image"):
        _ordered({"picture": c}, [{"name": "serving_default_image:0"}])
