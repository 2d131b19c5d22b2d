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
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .errors import EdgebenchError
from .shipping import sha256_file
from .store import now_iso

MANIFEST_SCHEMA_VERSION = 1
VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
CALIBRATED = ("int8", "int16x8")
STEP_TIMEOUT_S = 900
MAX_MODEL_BYTES = 2 * 1024**3


def parse_variants(text: str | list[str] | None) -> list[str]:
    names = VARIANTS if not text else [v.strip() for v in (text.split(",") if isinstance(text, str) else text) if v.strip()]
    for name in names:
        if name not in VARIANTS:
            raise EdgebenchError(f"unknown variant {name!r} (known: {', '.join(VARIANTS)})", where="--variants")
    return list(dict.fromkeys(names))


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


def _step(args: list[str], log: Path) -> dict[str, Any]:
    """Run one worker step; a crash or abort becomes an error with the child's last words."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    with open(log, "wb") as err:
        try:
            done = subprocess.run([sys.executable, "-m", "harness.convert_worker", *args], stdout=subprocess.PIPE,
                                  stderr=err, timeout=STEP_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"converter gave no result in {STEP_TIMEOUT_S} s"}
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = log.read_bytes()[-1500:].decode(errors="replace").strip().splitlines()
        last = " | ".join(tail[-4:]) or "no output"
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
        result = {"ok": False, "error": f"converter process died ({how}): {last}"}
    return result


def _prepare(source: Path, options: dict[str, Any], digest: str) -> Path:
    inputs = [digest, _tf_version(), options.get("calibration_sha"), options.get("eval_sha"),
              options.get("custom_objects_sha")]
    target = _cache_root() / f"prepare-{_key(*inputs)}"
    if (target / "prepare.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="prepare-", dir=target.parent))
    result = _step(["prepare", str(source.resolve()), str(work), json.dumps(options)], work / "prepare.log")
    if not result.get("ok"):
        shutil.rmtree(work, ignore_errors=True)
        raise EdgebenchError(f"cannot load the model: {result.get('error')}", where=str(source))
    if not (target / "prepare.json").exists():
        work.replace(target)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _convert_one(prep: Path, variant: str, recipe: dict[str, Any], out: Path) -> dict[str, Any]:
    info = json.loads((prep / "prepare.json").read_text())
    cached = _cache_root() / f"variant-{_key(prep.name, variant, recipe, info['tensorflow'], __version__)}.tflite"
    if cached.exists():
        shutil.copyfile(cached, out)
        return {"ok": True, "cached": True}
    with tempfile.TemporaryDirectory() as tmp:
        result = _step(["variant", str(prep), variant, str(out), json.dumps({"recipe": recipe})], Path(tmp) / "log")
    if result.get("ok"):
        shutil.copyfile(out, cached.with_suffix(".tmp"))
        cached.with_suffix(".tmp").replace(cached)
    return {**result, "cached": False}


def convert(source: Path, out_dir: Path, *, variants: list[str] | None = None, calibration: Path | None = None,
            eval_data: Path | None = None, custom_objects: Path | None = None, recipes: dict[str, Any] | None = None,
            jobs: int | None = None, validate: bool = True, name: str | None = None) -> dict[str, Any]:
    """Convert ``source`` into variants under ``out_dir``; returns the manifest (also written there)."""
    if not source.exists():
        raise EdgebenchError("model not found", where=str(source))
    if source.is_file() and source.suffix not in (".keras", ".h5", ".hdf5"):
        raise EdgebenchError("not a Keras model (.keras, .h5) or a SavedModel directory", where=str(source))
    if source.is_dir() and not (source / "saved_model.pb").exists():
        raise EdgebenchError("directory is not a SavedModel (no saved_model.pb)", where=str(source))
    if source.is_file() and source.stat().st_size > MAX_MODEL_BYTES:
        raise EdgebenchError(f"model larger than {MAX_MODEL_BYTES} bytes", where=str(source))
    for label, path in (("calibration", calibration), ("evaluation data", eval_data), ("custom objects", custom_objects)):
        if path is not None and not path.is_file():
            raise EdgebenchError(f"{label} file not found", where=str(path))
    names = parse_variants(variants)
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = _digest_source(source)
    options: dict[str, Any] = {
        "calibration": str(calibration.resolve()) if calibration else None,
        "calibration_sha": sha256_file(calibration) if calibration else None,
        "eval_data": str(eval_data.resolve()) if eval_data else None,
        "eval_sha": sha256_file(eval_data) if eval_data else None,
        "custom_objects": str(custom_objects.resolve()) if custom_objects else None,
        "custom_objects_sha": sha256_file(custom_objects) if custom_objects else None,
    }
    prep = _prepare(source, options, digest)
    info = json.loads((prep / "prepare.json").read_text())
    for extra in ("eval_inputs.npz", "reference_outputs.npz"):
        shutil.copyfile(prep / extra, out_dir / extra)

    recipes = recipes or {}
    workers = max(1, min(len(names), jobs or os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        futures = {v: pool.submit(_convert_one, prep, v, recipes.get(v, {}), out_dir / f"{v}.tflite") for v in names}
        results = {v: f.result() for v, f in futures.items()}

    entries: dict[str, Any] = {}
    for variant in names:
        r = results[variant]
        path = out_dir / f"{variant}.tflite"
        warnings = []
        if variant in CALIBRATED and info["calibration"]["kind"] == "random":
            warnings.append("random_calibration")
        if r.get("ok"):
            entries[variant] = {"status": "ok", "error": None, "file": path.name, "sha256": sha256_file(path),
                                "bytes": path.stat().st_size, "cached": r["cached"], "warnings": warnings}
        else:
            path.unlink(missing_ok=True)
            entries[variant] = {"status": "conversion_failed", "error": r.get("error"), "file": None,
                                "sha256": None, "bytes": None, "cached": False, "warnings": warnings}
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


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    tmp = out_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, allow_nan=False))
    tmp.replace(out_dir / "manifest.json")
