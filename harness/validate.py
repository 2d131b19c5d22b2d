"""Host validation of converted variants: does each one load, prepare and invoke, and how accurate is it?

Uses the same agent and local transport as a benchmark run, so "validated on
the host" means exactly what a device run would do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .inventory import local_device
from .models import from_manifest
from .runner import Settings, measure_device


def validate_variants(manifest: dict[str, Any], out_dir: Path) -> None:
    """Run every converted variant once on this machine; record status, error and accuracy in the manifest."""
    # An Edge TPU model needs the accelerator: it is validated on the device, not here.
    variants = [mv for mv in from_manifest(manifest, out_dir) if mv.status == "ok" and mv.variant != "edgetpu"]
    cells: dict[str, dict[str, Any]] = {}
    settings = Settings(runs=1, warmup=0, min_seconds=0.0, warmup_seconds=0.0, max_runs=1, cell_timeout_s=300)
    measure_device(local_device(), variants, settings, lambda c: cells.__setitem__(c["variant"], c), lambda d: None)
    for variant, entry in manifest["variants"].items():
        cell = cells.get(variant)
        if cell is None:
            continue
        entry["validation"] = {"status": cell["status"], "error": cell["error"], "runtime": cell["runtime"],
                               "inputs": cell["inputs"], "outputs": cell["outputs"]}
        entry["accuracy"] = cell["accuracy"]
        if cell["status"] != "ok":
            entry["status"] = cell["status"]
            entry["error"] = f"host validation ({(cell['runtime'] or {}).get('name')}): {cell['error']}"
