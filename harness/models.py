"""The model variants a run measures: from `edgebench convert` output directories or bare .tflite files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EdgebenchError
from .shipping import sha256_file

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_TFLITE_BYTES = 2 * 1024**3


@dataclass(eq=False)  # identity: the runner keys pending work by variant object
class ModelVariant:
    model: str
    variant: str
    path: Path | None
    status: str = "ok"  # not "ok": conversion or host validation failed, the variant is not shipped
    error: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    eval_inputs: Path | None = None
    reference_outputs: Path | None = None
    conversion: dict[str, Any] | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.model}/{self.variant}"


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / "manifest.json"
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise EdgebenchError("manifest too large", where=str(path))
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgebenchError("no manifest.json: not a directory written by 'edgebench convert'", where=str(directory)) from None
    except (OSError, ValueError) as exc:
        raise EdgebenchError(f"unreadable manifest: {exc}", where=str(path)) from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != 1:
        raise EdgebenchError(f"manifest schema_version {version!r} is not supported (expected 1): convert again",
                             where=str(path))
    return manifest


def from_converted(directory: Path, only: list[str] | None = None) -> list[ModelVariant]:
    return from_manifest(read_manifest(directory), directory, only)


def from_manifest(manifest: dict[str, Any], directory: Path, only: list[str] | None = None) -> list[ModelVariant]:
    """The variants a manifest describes, with their files under ``directory``."""
    out = []
    for variant, entry in manifest["variants"].items():
        if only and variant not in only:
            continue
        path = directory / entry["file"] if entry.get("file") else None
        out.append(ModelVariant(
            model=manifest["model"], variant=variant, path=path, status=entry["status"], error=entry.get("error"),
            sha256=entry.get("sha256"), bytes=entry.get("bytes"),
            eval_inputs=directory / manifest["eval_inputs"] if manifest.get("eval_inputs") else None,
            reference_outputs=directory / manifest["reference_outputs"] if manifest.get("reference_outputs") else None,
            conversion=entry, flags=list(entry.get("warnings") or []),
        ))
    return out


def from_tflite(path: Path) -> ModelVariant:
    if path.stat().st_size > MAX_TFLITE_BYTES:
        raise EdgebenchError(f"model larger than {MAX_TFLITE_BYTES} bytes", where=str(path))
    return ModelVariant(model=path.stem, variant="tflite", path=path, sha256=sha256_file(path), bytes=path.stat().st_size)


def discover(path: Path, only: list[str] | None = None) -> list[ModelVariant]:
    """Variants under a converted directory, a directory of them, or a .tflite file."""
    if not path.exists():
        raise EdgebenchError("model path not found", where=str(path))
    if path.is_file():
        if path.suffix != ".tflite":
            raise EdgebenchError("not a .tflite file (source models are converted by 'edgebench convert' or a suite)",
                                 where=str(path))
        return [from_tflite(path)]
    if (path / "manifest.json").exists():
        return from_converted(path, only)
    found: list[ModelVariant] = []
    for child in sorted(path.iterdir()):
        if child.is_dir() and (child / "manifest.json").exists():
            found += from_converted(child, only)
        elif child.suffix == ".tflite":
            found.append(from_tflite(child))
    if not found:
        raise EdgebenchError("no converted models (manifest.json) or .tflite files here", where=str(path))
    return found
