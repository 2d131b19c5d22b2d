"""`edgebench convert`: variants, diagnostics, and host validation with the device agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from ..common.errors import EdgebenchError, ExitCode
from ..conversion.manifest import write_manifest
from ..conversion.pipeline import convert
from ..conversion.recipes import load_recipes, parse_variants
from ..fleet.validation import validate_variants
from ..results.record import Status
from .output import fmt, out, table


def convert_validated(source: Path, out_dir: Path, **options: Any) -> dict[str, Any]:
    """Convert, then validate every variant on this machine with the agent a device uses."""
    manifest = convert(source, out_dir, **options)
    validate_variants(manifest, out_dir)
    write_manifest(out_dir, manifest)
    return manifest


def parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise EdgebenchError(f"expected LOW,HIGH (e.g. 0,1 or -1,1), not {text!r}", where="--image-range") from None
    return lo, hi


def _variant_row(name: str, v: dict[str, Any]) -> list[str]:
    acc = v.get("accuracy") or {}
    cosine = min((m.get("cosine") for m in acc.values() if m.get("cosine") is not None), default=None)
    compat = (v.get("diagnostics") or {}).get("compatibility") or {}
    loads = ", ".join(f"{rt}: {'yes' if c['loadable'] else 'NO' if c['loadable'] is False else '?'}"
                      for rt, c in compat.items())
    return [name, str(v["status"]), fmt(round(v["bytes"] / 1024) if v.get("bytes") else None), fmt(cosine, 4),
            loads or "-", ", ".join(v.get("warnings") or []), (v.get("error") or "")[:120]]


def cmd_convert(model: Path, *, variants: str | None = None, calibration: Path | None = None,
                eval_data: Path | None = None, custom_objects: Path | None = None, out_dir: Path | None = None,
                jobs: int | None = None, recipes: Path | None = None, image_range: str | None = None,
                stream: TextIO | None = None) -> int:
    target = out_dir or Path(model.stem + "_tflite")
    recipe_map = load_recipes(recipes) if recipes else {}
    manifest = convert_validated(model, target, variants=parse_variants(variants, recipe_map), calibration=calibration,
                                 eval_data=eval_data, custom_objects=custom_objects, jobs=jobs, recipes=recipe_map,
                                 image_range=parse_range(image_range) if image_range else (-1.0, 1.0))
    rows = [_variant_row(name, v) for name, v in manifest["variants"].items()]
    print(table(rows, ["variant", "status", "KiB", "cosine", "loads on", "warnings", "error"]), file=out(stream))
    print(f"manifest: {target / 'manifest.json'}", file=out(stream))
    ok = all(v["status"] == Status.OK for v in manifest["variants"].values())
    return ExitCode.OK if ok else ExitCode.CELL_FAILURES
