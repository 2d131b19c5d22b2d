"""`edgebench convert`: one model in, one .tflite per variant plus manifest.json out.

Steps, each TensorFlow step in a converter process (harness.conversion.workers):
1. prepare: load the model once, export a SavedModel, make calibration and
   evaluation inputs and the reference outputs;
2. convert the variants in parallel processes;
3. inspect every converted file (diagnostics.py) and write the manifest.
Host validation (does each variant load, prepare and invoke; how accurate is it) runs the device
agent, so the command that converts calls it (harness.fleet.validation), not this stage.
Results of steps 1 and 2 are cached by content (model, options, TensorFlow version), so
converting an unchanged model again takes no TensorFlow at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from ..common.clock import now_iso
from ..common.errors import EdgebenchError
from ..common.files import atomic_copy, sha256_file
from ..results.record import Status
from .diagnostics import converter_failure, inspect_variant, model_load_failure
from .manifest import MANIFEST_SCHEMA_VERSION, write_manifest
from .recipes import CALIBRATED, EDGETPU, parse_variants
from .tflite_file import read_tflite
from .workers import Pool

MAX_MODEL_BYTES = 2 * 1024**3
SOURCE_SUFFIXES = (".keras", ".h5", ".hdf5")


def _digest_source(src: Path) -> str:
    if src.is_file():
        return sha256_file(src)
    h = hashlib.sha256()
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(src)).encode() + b"\0" + sha256_file(path).encode())
    return h.hexdigest()


def _tf_version() -> str:
    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    raise EdgebenchError("TensorFlow is not installed: conversion needs it (pip install 'edgebench[convert]')")


def _cache_root() -> Path:
    return Path(os.environ.get("EDGEBENCH_CACHE") or Path.home() / ".cache" / "edgebench") / "convert"


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass
class _Job:
    """One conversion: its source, options, and where its prepared inputs and converted variants are cached."""

    source: Path
    out_dir: Path
    options: dict[str, Any]
    recipes: dict[str, Any]
    prep: Path

    def base(self, variant: str) -> str:
        return str(self.recipes.get(variant, {}).get("base", variant))

    def recipe(self, variant: str) -> dict[str, Any]:
        return dict(self.recipes.get(variant, {}))

    def cached(self, variant: str) -> Path:
        return _cache_root() / (f"variant-{_key(self.prep.name, variant, self.recipe(variant), _tf_version(), __version__)}"
                                ".tflite")

    def out(self, variant: str) -> Path:
        return self.out_dir / f"{variant}.tflite"


def _check_inputs(source: Path, extras: dict[str, Path | None]) -> None:
    if not source.exists():
        raise EdgebenchError("model not found", where=str(source))
    if source.is_file() and source.suffix not in SOURCE_SUFFIXES:
        raise EdgebenchError("not a Keras model (.keras, .h5) or a SavedModel directory", where=str(source))
    if source.is_dir() and not (source / "saved_model.pb").exists():
        raise EdgebenchError("directory is not a SavedModel (no saved_model.pb)", where=str(source))
    if source.is_file() and source.stat().st_size > MAX_MODEL_BYTES:
        raise EdgebenchError(f"model larger than {MAX_MODEL_BYTES} bytes", where=str(source))
    for label, path in extras.items():
        if path is not None and not path.exists():
            raise EdgebenchError(f"{label} not found", where=str(path))


def _prepare(pool: Pool, job: _Job) -> None:
    job.prep.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="prepare-", dir=job.prep.parent))
    result = pool.call(["prepare", str(job.source.resolve()), str(work), json.dumps(job.options)])
    if not result.get("ok"):
        shutil.rmtree(work, ignore_errors=True)
        raise EdgebenchError(f"cannot load the model: {model_load_failure(str(result.get('error')))}",
                             where=str(job.source))
    if not (job.prep / "prepare.json").exists():
        work.replace(job.prep)
    else:
        shutil.rmtree(work, ignore_errors=True)


def _convert_one(pool: Pool | None, job: _Job, variant: str) -> dict[str, Any]:
    cached, out = job.cached(variant), job.out(variant)
    if cached.exists():
        shutil.copyfile(cached, out)
        return {"ok": True, "cached": True}
    assert pool is not None
    result = pool.call(["variant", str(job.prep), variant, str(out), json.dumps({"recipe": job.recipe(variant)})])
    if result.get("ok"):
        atomic_copy(out, cached)
    return {**result, "cached": False}


def _convert_ahead(pool: Pool, job: _Job, variant: str) -> dict[str, Any]:
    result = pool.call(["keras_variant", str(job.source.resolve()), variant, str(job.out(variant)),
                        json.dumps({"recipe": job.recipe(variant), "custom_objects": job.options.get("custom_objects")})])
    if result.get("ok"):
        atomic_copy(job.out(variant), job.cached(variant))
    return {**result, "cached": False}


def _same_io(path: Path, info: dict[str, Any]) -> bool:
    """Whether a variant converted from Keras has the prepared SavedModel's signature names."""
    tflite = read_tflite(path)
    return ([t.name for t in tflite.inputs] == [i["name"] for i in info["inputs"]]
            and sorted(t.name for t in tflite.outputs) == sorted(o["name"] for o in info["outputs"]))


def _convert_all(job: _Job, names: list[str], jobs: int | None,
                 shared: Pool | None = None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Prepare (unless cached) and convert every variant; (prepare.json, result per variant).

    Warm path: everything cached, no TensorFlow at all. Cold path: all workers start importing
    TensorFlow at once, so the others are ready when "prepare" is done; meanwhile one of them
    converts an uncalibrated variant straight from Keras.
    """
    todo = [v for v in names if not job.cached(v).exists()]
    needs_prepare = not (job.prep / "prepare.json").exists()
    size = max(1, min(jobs or os.cpu_count() or 1, max(len(todo), 1))) if (todo or needs_prepare) else 0
    pool = shared or (Pool(size) if size else None)  # a caller's pool has TensorFlow imported already
    results: dict[str, dict[str, Any]] = {}
    try:
        with ThreadPoolExecutor(max(1, size)) as threads:
            ahead: dict[str, Future[dict[str, Any]]] = {}
            if needs_prepare:
                assert pool is not None
                early = next((v for v in todo if job.base(v) not in CALIBRATED), None)
                if early and size > 1 and job.source.is_file():
                    ahead[early] = threads.submit(_convert_ahead, pool, job, early)
                _prepare(pool, job)
            info = json.loads((job.prep / "prepare.json").read_text())
            for extra in ("eval_inputs.npz", "reference_outputs.npz"):
                shutil.copyfile(job.prep / extra, job.out_dir / extra)
            if info["calibration"]["kind"] == "error":
                results = {v: {"ok": False, "error": f"calibration data: {info['calibration']['error']}",
                               "calibration": True} for v in names if job.base(v) in CALIBRATED}
            # Longest first (calibrated variants run the representative data too): the last one to finish
            # is then a short one, and both workers stay busy until near the end.
            longest_first = sorted(names, key=lambda v: job.base(v) not in CALIBRATED)
            futures = {v: threads.submit(_convert_one, pool, job, v)
                       for v in longest_first if v not in results and v not in ahead}
            results.update({v: f.result() for v, f in futures.items()})
            for v, f in ahead.items():
                results[v] = f.result()
                if not results[v].get("ok") or not _same_io(job.out(v), info):
                    job.cached(v).unlink(missing_ok=True)  # judged by the same path as every other variant
                    results[v] = _convert_one(pool, job, v)
    finally:
        if pool is not None and pool is not shared:
            pool.close()
    return info, results


def _entry(job: _Job, variant: str, result: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """The manifest entry of one converted (or failed) variant."""
    path = job.out(variant)
    warnings = ["random_calibration"] if job.base(variant) in CALIBRATED and info["calibration"]["kind"] == "random" \
        else []
    if result.get("ok"):
        diagnostics = inspect_variant(path, variant, info)
        return {"status": Status.OK, "error": None, "file": path.name, "sha256": sha256_file(path),
                "bytes": path.stat().st_size, "cached": result["cached"],
                "warnings": warnings + diagnostics["warnings"], "diagnostics": diagnostics}
    path.unlink(missing_ok=True)
    failure = {"summary": result["error"]} if result.get("calibration") else converter_failure(str(result.get("error")))
    return {"status": Status.CONVERSION_FAILED, "error": failure["summary"], "file": None, "sha256": None,
            "bytes": None, "cached": False, "warnings": warnings,
            "diagnostics": {**failure, "converter_error": str(result.get("error"))[-4000:]}}


def _job(source: Path, out_dir: Path, calibration: Path | None, eval_data: Path | None, custom_objects: Path | None,
         recipes: dict[str, Any] | None, image_range: tuple[float, float]) -> _Job:
    """The conversion's options and where its prepared inputs are cached (keyed by content)."""
    options: dict[str, Any] = {
        "calibration": str(calibration.resolve()) if calibration else None,
        "calibration_sha": _digest_source(calibration) if calibration else None,
        "eval_data": str(eval_data.resolve()) if eval_data else None,
        "eval_sha": _digest_source(eval_data) if eval_data else None,
        "image_range": list(image_range),
        "custom_objects": str(custom_objects.resolve()) if custom_objects else None,
        "custom_objects_sha": sha256_file(custom_objects) if custom_objects else None,
    }
    prep_key = [_digest_source(source), _tf_version(), options["calibration_sha"], options["eval_sha"],
                options["custom_objects_sha"], options["image_range"]]
    return _Job(source, out_dir, options, recipes or {}, _cache_root() / f"prepare-{_key(*prep_key)}")


def prepared_dir(source: Path, *, calibration: Path | None = None, eval_data: Path | None = None,
                 custom_objects: Path | None = None, image_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    """Where `convert` with these options keeps the prepared SavedModel, calibration and evaluation inputs."""
    return _job(source, Path(), calibration, eval_data, custom_objects, None, image_range).prep


def convert(source: Path, out_dir: Path, *, variants: list[str] | None = None, calibration: Path | None = None,
            eval_data: Path | None = None, custom_objects: Path | None = None, recipes: dict[str, Any] | None = None,
            jobs: int | None = None, name: str | None = None,
            image_range: tuple[float, float] = (-1.0, 1.0), pool: Pool | None = None) -> dict[str, Any]:
    """Convert ``source`` into variants under ``out_dir``; returns the manifest (also written there).

    ``pool``: converter processes to use (and leave open) instead of starting new ones.
    """
    _check_inputs(source, {"calibration data": calibration, "evaluation data": eval_data,
                           "custom objects": custom_objects})
    names = parse_variants(variants, recipes)
    out_dir.mkdir(parents=True, exist_ok=True)
    job = _job(source, out_dir, calibration, eval_data, custom_objects, recipes, image_range)
    digest = _digest_source(source)
    # Edge TPU variants are another variant compiled by edgetpu_compiler: `edgetpu` the int8 one, a recipe's
    # `edgetpu_of` its own (the doctor's float tails).
    compiled = {v: str((recipes or {}).get(v, {}).get("edgetpu_of", "int8")) for v in names
                if v == EDGETPU or "edgetpu_of" in (recipes or {}).get(v, {})}
    names = list(dict.fromkeys([v for v in names if v not in compiled] + list(compiled.values())))
    info, results = _convert_all(job, names, jobs, pool)
    entries = {variant: _entry(job, variant, results[variant], info) for variant in names}
    for variant, of in compiled.items():
        entries[variant] = _edgetpu_entry(variant, of, entries[of], out_dir)
    manifest: dict[str, Any] = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "model": name or source.stem,
        "source": {"path": str(source), "sha256": digest},
        "created_at": now_iso(),
        "edgebench": __version__,
        "tensorflow": info["tensorflow"],
        "inputs": info["inputs"],
        "outputs": info["outputs"],
        "calibration": info["calibration"],
        "eval_inputs": "eval_inputs.npz",
        "reference_outputs": "reference_outputs.npz",
        "variants": entries,
    }
    write_manifest(out_dir, manifest)
    return manifest


def _edgetpu_entry(variant: str, of: str, source: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Compile variant ``of`` for the Edge TPU; how many ops run there is the number users want."""
    from .edgetpu import compile_for_edgetpu

    entry: dict[str, Any] = {"status": Status.CONVERSION_FAILED, "file": None, "sha256": None, "bytes": None,
                             "cached": False, "warnings": list(source["warnings"]), "edgetpu_of": of}
    if source["status"] != Status.OK:
        return {**entry, "error": f"needs the {of} variant, which failed: {source['error']}"}
    try:
        result = compile_for_edgetpu(out_dir / source["file"], out_dir)
    except EdgebenchError as exc:
        return {**entry, "error": exc.message}
    if result["status"] != Status.OK or not result.get("output_path"):
        return {**entry, "error": result.get("error") or "edgetpu_compiler produced no model", "edgetpu": result}
    path = out_dir / f"{variant}.tflite"
    Path(result["output_path"]).replace(path)
    return {**entry, "status": Status.OK, "error": None, "file": path.name, "sha256": sha256_file(path),
            "bytes": path.stat().st_size, "edgetpu": result}
