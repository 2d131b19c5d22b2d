"""Host validation of converted variants: does each one load, prepare and invoke, and how accurate is it?

Uses the same agent and local transport as a benchmark run, so "validated on
the host" means exactly what a device run would do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config.inventory import local_device
from ..config.settings import MeasureSettings, RunPolicy
from ..results.record import Cell, Status
from .jobs import from_manifest
from .runner import measure_device

# One invoke per variant: enough to know it runs, and to compare its outputs.
VALIDATION = MeasureSettings(runs=1, warmup=0, min_seconds=0.0, warmup_seconds=0.0, max_runs=1, cell_timeout_s=300)


def validate_variants(manifest: dict[str, Any], out_dir: Path) -> None:
    """Run every converted variant once on this machine; record status, error and accuracy in the manifest."""
    # An Edge TPU model needs the accelerator: it is validated on the device, not here.
    variants = [mv for mv in from_manifest(manifest, out_dir) if mv.status == Status.OK and not mv.for_edgetpu]
    cells: dict[str, Cell] = {}
    measure_device(local_device(), variants, VALIDATION, RunPolicy(), lambda c: cells.__setitem__(c["variant"], c),
                   lambda d: None)
    for variant, entry in manifest["variants"].items():
        cell = cells.get(variant)
        if cell is None:
            continue
        entry["validation"] = {"status": cell["status"], "error": cell["error"], "runtime": cell["runtime"],
                               "inputs": cell["inputs"], "outputs": cell["outputs"]}
        entry["accuracy"] = cell["accuracy"]
        if cell["status"] != Status.OK:
            entry["status"] = cell["status"]
            runtime = cell["runtime"]["name"] if cell["runtime"] else None
            entry["error"] = f"host validation ({runtime}): {cell['error']}"
