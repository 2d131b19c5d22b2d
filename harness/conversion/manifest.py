"""manifest.json: what `edgebench convert` wrote into a directory, and what `run` reads back from it.

    {"schema_version": 1, "model": NAME, "source": {...}, "inputs": [...], "outputs": [...],
     "calibration": {...}, "eval_inputs": "eval_inputs.npz", "reference_outputs": "reference_outputs.npz",
     "variants": {VARIANT: {"status", "error", "file", "sha256", "bytes", "warnings", "diagnostics",
                            "validation", "accuracy", ...}}}

A converted directory may come from someone else (a vendor, another team): the manifest is read with a
size cap and a version check, its variant names must be safe path components (harness.common.names),
and every file it names must resolve inside the directory (symlinks included): otherwise it is refused,
so a manifest cannot make `run` read or ship any other file of the host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..common.errors import EdgebenchError
from ..common.files import atomic_write, inside, read_capped
from ..common.names import safe_name
from ..results.record import Status

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
    _check_entries(manifest, directory, str(path))
    return manifest


def _check_entries(manifest: dict[str, Any], directory: Path, where: str) -> None:
    """Variant names safe, statuses known, and every file named inside ``directory``."""
    if not isinstance(manifest.get("model"), str):
        raise EdgebenchError("manifest has no model name", where=where)
    variants = manifest.get("variants")
    if not isinstance(variants, dict):
        raise EdgebenchError("manifest has no 'variants' mapping", where=where)
    for key in ("eval_inputs", "reference_outputs"):
        if manifest.get(key) is not None:
            inside(directory, manifest[key], key, where)
    statuses = {s.value for s in Status}
    for name, entry in variants.items():
        safe_name(name, "variant name", where)
        if not isinstance(entry, dict) or entry.get("status") not in statuses:
            raise EdgebenchError(f"variant {name!r}: not a mapping with a known status", where=where)
        if entry.get("file") is not None:
            inside(directory, entry["file"], f"variant {name!r} file", where)
