"""manifest.json: what `edgebench convert` wrote into a directory, and what `run` reads back from it.

    {"schema_version": 1, "model": NAME, "source": {...}, "inputs": [...], "outputs": [...],
     "calibration": {...}, "eval_inputs": "eval_inputs.npz", "reference_outputs": "reference_outputs.npz",
     "variants": {VARIANT: {"status", "error", "file", "sha256", "bytes", "warnings", "diagnostics",
                            "validation", "accuracy", ...}}}

A converted directory may come from someone else (a vendor, another team): the manifest is read with a
size cap and a version check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..common.errors import EdgebenchError
from ..common.files import atomic_write, read_capped

MANIFEST_SCHEMA_VERSION = 1
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MANIFEST = "manifest.json"


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write(out_dir / MANIFEST, json.dumps(manifest, indent=1, allow_nan=False), mode=0o644)


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.exists():
        raise EdgebenchError("no manifest.json: not a directory written by 'edgebench convert'", where=str(directory))
    try:
        manifest = json.loads(read_capped(path, MAX_MANIFEST_BYTES, "manifest").decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EdgebenchError(f"unreadable manifest: {exc}", where=str(path)) from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != MANIFEST_SCHEMA_VERSION:
        raise EdgebenchError(f"manifest schema_version {version!r} is not supported (expected "
                             f"{MANIFEST_SCHEMA_VERSION}): convert again", where=str(path))
    return manifest
