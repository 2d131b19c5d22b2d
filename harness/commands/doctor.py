"""`edgebench doctor`: which layers lose the accuracy, what to keep in float, and what that costs per device.

1. Localise: convert fp32 and the quantized variants (the usual pipeline, host validation included), then
   rank the Keras layers by the error quantization adds (harness.conversion.quant_debug).
2. Prescribe: candidates keeping the worst layers (and their consumers) in float, re-quantized from the
   one calibration; for an Edge TPU, float tails compiled by edgetpu_compiler. Written into the same
   converted directory as recipes, so each is a manifest variant that `edgebench run` measures like any other.
3. Measure (with --devices): every candidate on every device in one interleaved `edgebench run`.
4. Show: DIR/doctor.json and DIR/doctor.html.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..common.clock import now_iso
from ..common.errors import EdgebenchError, ExitCode
from ..common.files import atomic_write
from ..config.settings import RunPolicy
from ..conversion.manifest import write_manifest
from ..conversion.pipeline import prepared_dir
from ..conversion.workers import Pool
from ..doctor.front import add_latency, candidate_row, recommend
from ..doctor.layers import RANKED_BY, float_tail_recipes, keep_float_recipes, rank_layers
from ..report.doctor_page import render_doctor
from ..report.recommend import DOCTOR_VARIANTS, resolve_accuracy_bar
from ..results.record import Status
from ..results.store import Store, store_path
from .convert import convert_validated
from .output import default_inventory, fmt, out, table
from .run import cmd_run

DOCTOR_SCHEMA_VERSION = 1
ALWAYS = ["fp32", "int8", "int16x8"]  # the float reference, plain int8, and int16 activations


def split_labels(eval_data: Path, work: Path) -> tuple[Path, Path | None]:
    """--eval-data FILE.npz with labels: ``x`` (or one array per input name) and integer ``y``.

    The inputs go to the conversion as evaluation data (a .npy for ``x``); the labels are kept apart.
    Anything else is evaluation data without labels, as for `convert`.
    """
    if eval_data.suffix != ".npz" or not eval_data.is_file():
        return eval_data, None
    with np.load(eval_data, allow_pickle=False) as data:
        if "y" not in data.files:
            return eval_data, None
        labels = np.asarray(data["y"]).reshape(-1)
        inputs = {k: data[k] for k in data.files if k != "y"}
    if labels.dtype.kind not in "iu" or not inputs or any(len(a) != len(labels) for a in inputs.values()):
        raise EdgebenchError("labels 'y' must be integers, one per sample of every input", where=str(eval_data))
    np.save(work / "eval_labels.npy", labels.astype(np.int64))
    if list(inputs) == ["x"]:
        np.save(work / "eval_inputs.npy", inputs["x"])
        return work / "eval_inputs.npy", work / "eval_labels.npy"
    np.savez(work / "eval_inputs.npz", **inputs)  # type: ignore[arg-type]
    return work / "eval_inputs.npz", work / "eval_labels.npy"


def _least_accurate(manifest: dict[str, Any]) -> str:
    """The quantized variant with the lowest cosine (the one a conversion would flag first)."""
    def cosine(name: str) -> float:
        acc = manifest["variants"].get(name, {}).get("accuracy") or {}
        values = [m["cosine"] for m in acc.values() if m.get("cosine") is not None]
        return min(values, default=2.0)
    return min(DOCTOR_VARIANTS, key=cosine)


def _inputs_used(manifest: dict[str, Any], prep: Path, eval_given: bool) -> dict[str, Any]:
    calibration = manifest["calibration"]
    if eval_given:
        return {"kind": "eval", "path": str(prep / "eval_inputs.npz"), "random": False, "warning": None}
    random = calibration["kind"] == "random"
    return {"kind": "calibration", "path": str(prep / "calibration.npz"), "random": random,
            "warning": "RANDOM INPUTS: no --calibration nor --eval-data given; the ranking reflects smooth random "
                       "images, not your data" if random else None}


def _localise(pool: Pool, prep: Path, variant: str, converted: Path, manifest: dict[str, Any],
              options: dict[str, Any]) -> dict[str, Any]:
    def file(name: str) -> str | None:
        entry = manifest["variants"].get(name) or {}
        return str(converted / entry["file"]) if entry.get("file") else None

    result = pool.call(["doctor_localise", str(prep), json.dumps({
        "variant": variant, "inputs": options["inputs"]["path"], "float_file": file("fp32"),
        "variant_file": file(variant), "source": str(options["model"].resolve()),
        "custom_objects": str(options["custom_objects"].resolve()) if options["custom_objects"] else None})])
    if not result.get("ok"):
        raise EdgebenchError(f"cannot localise the {variant} error: {result.get('error')}", where=str(options["model"]))
    return result


def _measure(converted: Path, name: str, devices: str, options: Mapping[str, Any], stream: TextIO) -> tuple[str, Any]:
    """Every candidate on every device in one interleaved run (the run command's own machinery)."""
    label = f"doctor-{name}-{now_iso()}"
    cmd_run(models=[converted], inventory=options.get("inventory"), devices=devices, label=label,
            store=options.get("store"), measure=options.get("measure"), policy=options.get("policy") or RunPolicy(),
            quiet=True, stream=stream)
    db = Store(store_path(options.get("store")))
    try:
        run_id = db.resolve(label)
        return run_id, db.export_run(run_id)["results"]
    finally:
        db.close()


def _evaluate(pool: Pool, converted: Path, manifest: dict[str, Any], labels: Path) -> dict[str, Any]:
    files = {name: str(converted / e["file"]) for name, e in manifest["variants"].items()
             if e.get("file") and "edgetpu_of" not in e}  # an Edge TPU file needs the accelerator
    result = pool.call(["doctor_evaluate", json.dumps({"files": files, "labels": str(labels),
                                                        "inputs": str(converted / manifest["eval_inputs"])})])
    if not result.get("ok"):
        return {name: {"top1": None, "error": result.get("error")} for name in files}
    top1: dict[str, Any] = result["top1"]
    return top1


def _print(doc: dict[str, Any], stream: TextIO) -> None:
    metric = doc["ranked_by"]["metric"]
    print(f"{doc['variant']}: layers ranked by {metric} ({doc['method']}, {doc['inputs']['kind']} inputs)", file=stream)
    if doc["inputs"].get("warning"):
        print(f"WARNING: {doc['inputs']['warning']}", file=stream)
    for note in doc["notes"]:
        print(f"note: {note}", file=stream)
    if doc["layers"]:
        print(table([[str(i + 1), e["name"], e["op"], fmt(e["metrics"].get(metric), 2)]
                     for i, e in enumerate(doc["layers"][:10])], ["#", "layer", "op", metric]), file=stream)
    devices = list(doc["recommendation"])
    rows = [[c["name"], c["status"], ", ".join(c["keeps_float"][:4]) or "-", fmt(c["accuracy"]["cosine"], 4),
             fmt(c["top1"], 3), fmt(round(c["bytes"] / 1024) if c["bytes"] else None),
             "yes" if c["meets_bar"] else "no"]
            + [fmt((c["latency"].get(d) or {}).get("p50_ms"), 3) for d in devices] for c in doc["candidates"]]
    print(table(rows, ["candidate", "status", "keeps float", "cosine", "top-1", "KiB", "meets bar"]
                + [f"p50 ms {d}" for d in devices]), file=stream)
    for c in doc["candidates"]:
        if c["accuracy_of"]:
            tpu = c["edgetpu_ops"] or {}
            where = (f"{tpu.get('tpu_ops')} ops on the Edge TPU, {tpu.get('cpu_ops')} on the CPU"
                     if c["status"] == Status.OK else c["error"])
            print(f"{c['name']}: {c['accuracy_of']} compiled for the Edge TPU (accuracy is {c['accuracy_of']}'s): "
                  f"{where}", file=stream)
    for device, rec in doc["recommendation"].items():
        print(f"{device}: {rec['candidate'] or 'none'} ({rec['reason']})", file=stream)


def _document(variant: str, model: Path, localised: dict[str, Any], inputs: dict[str, Any],
              candidates: list[dict[str, Any]], bar: dict[str, float], labels: Path | None) -> dict[str, Any]:
    metric, higher_is_worse = RANKED_BY[localised["method"]]
    return {"schema_version": DOCTOR_SCHEMA_VERSION, "created_at": now_iso(), "model": str(model), "variant": variant,
            "method": localised["method"],
            "api": ("tf.lite.experimental.QuantizationDebugger" if localised["method"] == "debugger"
                    else "tf.lite.Interpreter(experimental_preserve_all_tensors=True), float vs quantized"),
            "ranked_by": {"metric": metric, "higher_is_worse": higher_is_worse}, "inputs": inputs,
            "notes": localised["notes"], "accuracy_bar": bar, "labels": str(labels) if labels else None,
            "layers": rank_layers(localised), "candidates": candidates, "recommendation": {}, "run": None}


def _wants_edgetpu(asked: bool, devices: str | None, inventory: Path | None) -> bool:
    """Edge TPU candidates when asked, or when a device to measure on is an Edge TPU board."""
    return asked or bool(devices) and any(d.delegate == "edgetpu"
                                          for d in default_inventory(inventory).select(devices))


def cmd_doctor(model: Path, *, variant: str | None = None, calibration: Path | None = None,
               eval_data: Path | None = None, custom_objects: Path | None = None, out_dir: Path | None = None,
               devices: str | None = None, inventory: Path | None = None, store: Path | None = None,
               measure: Mapping[str, Any] | None = None, policy: RunPolicy = RunPolicy(), edgetpu: bool = False,
               stream: TextIO | None = None) -> int:
    """Localise, prescribe, (measure,) show; returns the exit code: 0 when a candidate meets the accuracy bar."""
    stream = out(stream)
    edgetpu = _wants_edgetpu(edgetpu, devices, inventory)
    if variant is not None and variant not in DOCTOR_VARIANTS:
        raise EdgebenchError(f"unknown variant {variant!r} (the doctor treats {', '.join(DOCTOR_VARIANTS)})",
                             where="--variant")
    target = out_dir or Path(model.stem + "_doctor")
    converted = target / "converted"
    target.mkdir(parents=True, exist_ok=True)
    eval_inputs, labels = split_labels(eval_data, target) if eval_data else (None, None)
    conv = {"calibration": calibration, "eval_data": eval_inputs, "custom_objects": custom_objects}
    first = list(dict.fromkeys(ALWAYS + [variant or "dynamic"]))
    pool = Pool(max(1, min(2, os.cpu_count() or 1)))  # TensorFlow imported once per process, for every step
    try:
        manifest = convert_validated(model, converted, variants=first, name=model.stem, pool=pool, **conv)
        chosen = variant or _least_accurate(manifest)
        prep = prepared_dir(model, calibration=calibration, eval_data=eval_inputs, custom_objects=custom_objects)
        inputs = _inputs_used(manifest, prep, eval_inputs is not None)
        localised = _localise(pool, prep, chosen, converted, manifest,
                              {"inputs": inputs, "model": model, "custom_objects": custom_objects})
        ranked = rank_layers(localised)
        recipes = {**keep_float_recipes(localised, ranked), **(float_tail_recipes(localised, ranked) if edgetpu else {})}
        extra = ["edgetpu"] if edgetpu else []
        manifest = convert_validated(model, converted, variants=first + extra + list(recipes), recipes=recipes,
                                     name=model.stem, pool=pool, **conv)
        top1 = _evaluate(pool, converted, manifest, labels) if labels else {}
    finally:
        pool.close()
    manifest["doctor"] = str((target / "doctor.html").resolve())  # run reports of these variants link to it
    write_manifest(converted, manifest)
    bar = resolve_accuracy_bar(None)
    variants = manifest["variants"]
    candidates = [candidate_row(name, entry, recipes.get(name), bar, top1.get(entry.get("edgetpu_of") or name),
                                variants.get(entry.get("edgetpu_of") or ""))
                  for name, entry in variants.items()]
    doc = _document(chosen, model, localised, inputs, candidates, bar, labels)
    if devices:
        run_id, cells = _measure(converted, model.stem, devices, {"inventory": inventory, "store": store,
                                                                  "measure": measure, "policy": policy}, stream)
        doc["run"] = run_id
        doc["recommendation"] = recommend(candidates, add_latency(candidates, cells))
    atomic_write(target / "doctor.json", json.dumps(doc, indent=1, allow_nan=False), mode=0o644)
    atomic_write(target / "doctor.html", render_doctor(doc), mode=0o644)
    _print(doc, stream)
    print(f"doctor: {target / 'doctor.json'}, {target / 'doctor.html'}; candidates runnable with "
          f"'edgebench run --models {converted}'", file=stream)
    fixed = any(c["meets_bar"] for c in candidates if c["name"] != "fp32" and c["status"] == Status.OK)
    return ExitCode.OK if fixed else ExitCode.CELL_FAILURES
