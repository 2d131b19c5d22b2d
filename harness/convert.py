"""`edgebench convert`: one model in, one .tflite per variant plus manifest.json out.

Steps, each TensorFlow step in its own child process (harness.convert_worker):
1. prepare: load the model once, export a SavedModel, make calibration and
   evaluation inputs and the reference outputs;
2. convert the variants in parallel processes;
3. validate every variant on this machine with the device agent (load,
   allocate, invoke on the evaluation inputs) and measure its accuracy
   against the reference.
Results of steps 1 and 2 are cached by content (model, options, TensorFlow
version), so converting an unchanged model again takes no TensorFlow at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import select
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .diagnose import converter_failure, inspect_variant, model_load_failure
from .errors import EdgebenchError
from .shipping import sha256_file
from .tflite_file import read_tflite
from .yamlfile import check_keys, load_yaml, where
from .store import now_iso

MANIFEST_SCHEMA_VERSION = 1
VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
EDGETPU = "edgetpu"  # the int8 variant compiled by edgetpu_compiler; asked for by name, not in the default set
CALIBRATED = ("int8", "int16x8")
STEP_TIMEOUT_S = 900
MAX_MODEL_BYTES = 2 * 1024**3


RECIPE_KEYS = {"base", "io_type", "select_tf_ops", "allow_custom_ops"}
IO_TYPES = ("int8", "uint8", "float32")


def parse_variants(text: str | list[str] | None, recipes: dict[str, Any] | None = None) -> list[str]:
    names = VARIANTS if not text else [v.strip() for v in (text.split(",") if isinstance(text, str) else text) if v.strip()]
    known = VARIANTS + (EDGETPU,) + tuple(r for r in (recipes or {}) if r not in VARIANTS)
    for name in names:
        if name not in known:
            raise EdgebenchError(f"unknown variant {name!r} (known: {', '.join(known)})", where="--variants")
    return list(dict.fromkeys(names))


def load_recipes(path: Path) -> dict[str, dict[str, Any]]:
    """Conversion recipes: new variants built on a standard one, or options for a standard one.

        recipes:
          int8_uint8: {base: int8, io_type: uint8}
          fp32_flex: {base: fp32, select_tf_ops: true}
    """
    data = load_yaml(path)
    check_keys(path, data, {"schema_version", "recipes"}, "recipes file", required={"recipes"})
    out: dict[str, dict[str, Any]] = {}
    for name, recipe in (data["recipes"] or {}).items():
        check_keys(path, recipe, RECIPE_KEYS, f"recipe {name!r}")
        base = recipe.get("base", name)
        if base not in VARIANTS:
            raise EdgebenchError(f"recipe {name!r} needs a base variant ({', '.join(VARIANTS)})",
                                 where=where(path, recipe, "base" if "base" in recipe else None))
        if recipe.get("io_type", "int8") not in IO_TYPES:
            raise EdgebenchError(f"io_type must be one of {', '.join(IO_TYPES)}", where=where(path, recipe, "io_type"))
        for flag in ("select_tf_ops", "allow_custom_ops"):
            if not isinstance(recipe.get(flag, False), bool):
                raise EdgebenchError(f"{flag} must be true or false", where=where(path, recipe, flag))
        out[str(name)] = {**recipe, "base": base}
    return out


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


class _Worker:
    """A converter child process; it imports TensorFlow as soon as it starts."""

    def __init__(self, threads: int) -> None:
        # An anonymous file: the child writes its stderr there, the parent reads the tail back, nothing to clean up.
        self.log = tempfile.TemporaryFile(prefix="edgebench-convert-")
        # Workers share the cores: TensorFlow's own thread pools would only fight each other.
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
                   TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.convert_worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=env)

    def call(self, args: list[str]) -> dict[str, Any]:
        """Run one step; a crash, abort or hang becomes an error with the converter's last words."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write((json.dumps(args) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # died already: reported below
        line = b""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                self.proc.kill()
                return {"ok": False, "error": f"converter gave no result in {STEP_TIMEOUT_S} s"}
            chunk = os.read(fd, 65536)
            if not chunk:
                return {"ok": False, "error": f"converter process died ({self._how()}): {self._last_words()}"}
            line += chunk
        result: dict[str, Any] = json.loads(line)
        return result

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _how(self) -> str:
        code = self.proc.wait()
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    def _last_words(self) -> str:
        self.log.seek(0, os.SEEK_END)
        self.log.seek(max(0, self.log.tell() - 1500))
        tail = self.log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in tail[-4:]) or "no output"

    def close(self) -> None:
        """End of input: the worker exits by itself. Not waited for: TensorFlow takes a second to shut down."""
        if self.alive():
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        self.log.close()


class _Pool:
    """Long-lived converter processes: one TensorFlow import per process, not per variant."""

    def __init__(self, size: int):
        self.threads = max(1, (os.cpu_count() or 1) // size)
        self.idle: queue.Queue[_Worker] = queue.Queue()
        self.workers = [_Worker(self.threads) for _ in range(size)]
        for w in self.workers:
            self.idle.put(w)

    def call(self, args: list[str]) -> dict[str, Any]:
        worker = self.idle.get()
        try:
            return worker.call(args)
        finally:
            if not worker.alive():
                worker.close()
                worker = _Worker(self.threads)
                self.workers.append(worker)
            self.idle.put(worker)

    def close(self) -> None:
        for w in self.workers:
            w.close()


def _prepare_dir(options: dict[str, Any], digest: str) -> Path:
    inputs = [digest, _tf_version(), options.get("calibration_sha"), options.get("eval_sha"),
              options.get("custom_objects_sha"), options.get("image_range")]
    return _cache_root() / f"prepare-{_key(*inputs)}"


def _variant_cache(prep: Path, variant: str, recipe: dict[str, Any]) -> Path:
    return _cache_root() / f"variant-{_key(prep.name, variant, recipe, _tf_version(), __version__)}.tflite"


def _prepare(pool: _Pool, source: Path, options: dict[str, Any], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="prepare-", dir=target.parent))
    result = pool.call(["prepare", str(source.resolve()), str(work), json.dumps(options)])
    if not result.get("ok"):
        shutil.rmtree(work, ignore_errors=True)
        raise EdgebenchError(f"cannot load the model: {model_load_failure(str(result.get('error')))}",
                             where=str(source))
    if not (target / "prepare.json").exists():
        work.replace(target)
    else:
        shutil.rmtree(work, ignore_errors=True)


def _convert_one(pool: _Pool | None, prep: Path, variant: str, recipe: dict[str, Any], out: Path) -> dict[str, Any]:
    cached = _variant_cache(prep, variant, recipe)
    if cached.exists():
        shutil.copyfile(cached, out)
        return {"ok": True, "cached": True}
    assert pool is not None
    result = pool.call(["variant", str(prep), variant, str(out), json.dumps({"recipe": recipe})])
    if result.get("ok"):
        _remember(out, cached)
    return {**result, "cached": False}


def _remember(out: Path, cached: Path) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out, cached.with_suffix(".tmp"))
    cached.with_suffix(".tmp").replace(cached)


def _convert_ahead(pool: _Pool, source: Path, prep: Path, variant: str, recipe: dict[str, Any], out: Path,
                   options: dict[str, Any]) -> dict[str, Any]:
    result = pool.call(["keras_variant", str(source.resolve()), variant, str(out),
                        json.dumps({"recipe": recipe, "custom_objects": options.get("custom_objects")})])
    if result.get("ok"):
        _remember(out, _variant_cache(prep, variant, recipe))
    return {**result, "cached": False}


def _same_io(path: Path, info: dict[str, Any]) -> bool:
    """Whether a variant converted from Keras has the prepared SavedModel's signature names."""
    tflite = read_tflite(path)
    return ([t.name for t in tflite.inputs] == [i["name"] for i in info["inputs"]]
            and sorted(t.name for t in tflite.outputs) == sorted(o["name"] for o in info["outputs"]))


def convert(source: Path, out_dir: Path, *, variants: list[str] | None = None, calibration: Path | None = None,
            eval_data: Path | None = None, custom_objects: Path | None = None, recipes: dict[str, Any] | None = None,
            jobs: int | None = None, validate: bool = True, name: str | None = None,
            image_range: tuple[float, float] = (-1.0, 1.0)) -> dict[str, Any]:
    """Convert ``source`` into variants under ``out_dir``; returns the manifest (also written there)."""
    if not source.exists():
        raise EdgebenchError("model not found", where=str(source))
    if source.is_file() and source.suffix not in (".keras", ".h5", ".hdf5"):
        raise EdgebenchError("not a Keras model (.keras, .h5) or a SavedModel directory", where=str(source))
    if source.is_dir() and not (source / "saved_model.pb").exists():
        raise EdgebenchError("directory is not a SavedModel (no saved_model.pb)", where=str(source))
    if source.is_file() and source.stat().st_size > MAX_MODEL_BYTES:
        raise EdgebenchError(f"model larger than {MAX_MODEL_BYTES} bytes", where=str(source))
    for label, path in (("calibration data", calibration), ("evaluation data", eval_data),
                        ("custom objects", custom_objects)):
        if path is not None and not path.exists():
            raise EdgebenchError(f"{label} not found", where=str(path))
    names = parse_variants(variants, recipes)
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = _digest_source(source)
    options: dict[str, Any] = {
        "calibration": str(calibration.resolve()) if calibration else None,
        "calibration_sha": _digest_source(calibration) if calibration else None,
        "eval_data": str(eval_data.resolve()) if eval_data else None,
        "eval_sha": _digest_source(eval_data) if eval_data else None,
        "image_range": list(image_range),
        "custom_objects": str(custom_objects.resolve()) if custom_objects else None,
        "custom_objects_sha": sha256_file(custom_objects) if custom_objects else None,
    }
    recipes = recipes or {}
    prep = _prepare_dir(options, digest)
    wants_edgetpu = EDGETPU in names
    names = [v for v in names if v != EDGETPU]
    if wants_edgetpu and "int8" not in names:
        names.append("int8")  # the Edge TPU compiles the full-integer variant
    todo = [v for v in names if not _variant_cache(prep, v, recipes.get(v, {})).exists()]
    results: dict[str, dict[str, Any]] = {}
    needs_prepare = not (prep / "prepare.json").exists()
    # Warm path: everything cached, no TensorFlow at all. Cold path: all workers start
    # importing TensorFlow at once, so the others are ready when "prepare" is done.
    size = max(1, min(jobs or os.cpu_count() or 1, max(len(todo), 1))) if (todo or needs_prepare) else 0
    pool = _Pool(size) if size else None
    try:
        with ThreadPoolExecutor(max(1, size)) as threads:
            ahead: dict[str, Future[dict[str, Any]]] = {}
            if needs_prepare:
                assert pool is not None
                # While one worker prepares, another converts an uncalibrated variant straight from Keras.
                early = next((v for v in todo if recipes.get(v, {}).get("base", v) not in CALIBRATED), None)
                if early and size > 1 and source.is_file():
                    ahead[early] = threads.submit(_convert_ahead, pool, source, prep, early, recipes.get(early, {}),
                                                  out_dir / f"{early}.tflite", options)
                _prepare(pool, source, options, prep)
            info = json.loads((prep / "prepare.json").read_text())
            for extra in ("eval_inputs.npz", "reference_outputs.npz"):
                shutil.copyfile(prep / extra, out_dir / extra)
            if info["calibration"]["kind"] == "error":
                results = {v: {"ok": False, "error": f"calibration data: {info['calibration']['error']}",
                               "calibration": True} for v in names if recipes.get(v, {}).get("base", v) in CALIBRATED}
            # Longest first (calibrated variants run the representative data too): the last one to finish
            # is then a short one, and both workers stay busy until near the end.
            longest_first = sorted(names, key=lambda v: recipes.get(v, {}).get("base", v) not in CALIBRATED)
            futures = {v: threads.submit(_convert_one, pool, prep, v, recipes.get(v, {}), out_dir / f"{v}.tflite")
                       for v in longest_first if v not in results and v not in ahead}
            results.update({v: f.result() for v, f in futures.items()})
            for v, f in ahead.items():
                results[v] = f.result()
                if not results[v].get("ok") or not _same_io(out_dir / f"{v}.tflite", info):
                    # judged by the same path as every other variant
                    _variant_cache(prep, v, recipes.get(v, {})).unlink(missing_ok=True)
                    results[v] = _convert_one(pool, prep, v, recipes.get(v, {}), out_dir / f"{v}.tflite")
    finally:
        if pool is not None:
            pool.close()

    entries: dict[str, Any] = {}
    for variant in names:
        r = results[variant]
        path = out_dir / f"{variant}.tflite"
        warnings = []
        if recipes.get(variant, {}).get("base", variant) in CALIBRATED and info["calibration"]["kind"] == "random":
            warnings.append("random_calibration")
        if r.get("ok"):
            diagnostics = inspect_variant(path, variant, info)
            entries[variant] = {"status": "ok", "error": None, "file": path.name, "sha256": sha256_file(path),
                                "bytes": path.stat().st_size, "cached": r["cached"],
                                "warnings": warnings + diagnostics["warnings"], "diagnostics": diagnostics}
        else:
            path.unlink(missing_ok=True)
            failure = {"summary": r["error"]} if r.get("calibration") else converter_failure(str(r.get("error")))
            entries[variant] = {"status": "conversion_failed", "error": failure["summary"], "file": None,
                                "sha256": None, "bytes": None, "cached": False, "warnings": warnings,
                                "diagnostics": {**failure, "converter_error": str(r.get("error"))[-4000:]}}
    if wants_edgetpu:
        entries[EDGETPU] = _edgetpu_entry(entries["int8"], out_dir)
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
    if validate:
        from .validate import validate_variants

        validate_variants(manifest, out_dir)
    write_manifest(out_dir, manifest)
    return manifest


def _edgetpu_entry(int8: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Compile the int8 variant for the Edge TPU; how many ops run there is the number users want."""
    from .edgetpu import compile_for_edgetpu

    entry: dict[str, Any] = {"status": "conversion_failed", "file": None, "sha256": None, "bytes": None,
                             "cached": False, "warnings": list(int8["warnings"])}
    if int8["status"] != "ok":
        return {**entry, "error": f"needs the int8 variant, which failed: {int8['error']}"}
    try:
        result = compile_for_edgetpu(out_dir / int8["file"], out_dir)
    except EdgebenchError as exc:
        return {**entry, "error": exc.message}
    if result["status"] != "ok" or not result.get("output_path"):
        return {**entry, "error": result.get("error") or "edgetpu_compiler produced no model", "edgetpu": result}
    path = out_dir / f"{EDGETPU}.tflite"
    Path(result["output_path"]).replace(path)
    return {**entry, "status": "ok", "error": None, "file": path.name, "sha256": sha256_file(path),
            "bytes": path.stat().st_size, "edgetpu": result}


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    tmp = out_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, allow_nan=False))
    tmp.replace(out_dir / "manifest.json")
