"""An export made whole before it is shown: every field the report reads exists (None when unknown).

A store holds runs from every kind of failure: a device that never answered has no environment, a run
that was interrupted has no end, an older or a hand-edited export lacks fields. The report must render
all of them, so the view code and the templates read a completed copy, never the raw export; the field
lists are the record's own TypedDicts, so a field added there is covered here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..results.record import Cell, DeviceRecord, Export, LatencySummary, RunHeader

# what the device cards and the run header read from the free-form `env` and `host` mappings
ENV_KEYS = ("arch", "cpu_model", "cores", "os", "kernel", "governor", "runtime")
HOST_KEYS = ("hostname", "edgebench", "python")


def _keys(typed: Any) -> frozenset[str]:
    return frozenset(typed.__required_keys__ | typed.__optional_keys__)


def _filled(value: Any, keys: Iterable[str], **defaults: Any) -> dict[str, Any]:
    """A copy of ``value`` (a mapping, else empty) with every key present."""
    out = dict(value) if isinstance(value, Mapping) else {}
    for key in keys:
        if out.get(key) is None:
            out[key] = defaults.get(key)
    return out


def complete_cell(cell: Mapping[str, Any]) -> Cell:
    out = _filled(cell, _keys(Cell), flags=[], device="?", model="?", variant="?", status="unknown")
    out["flags"] = [str(f) for f in out["flags"]]
    if out["latency_ms"] is not None:
        out["latency_ms"] = _filled(out["latency_ms"], _keys(LatencySummary))
    return out  # type: ignore[return-value]


def complete_device(device: Mapping[str, Any]) -> DeviceRecord:
    out = _filled(device, _keys(DeviceRecord), groups=[], tags=[])
    out["env"] = _filled(out["env"], ENV_KEYS)
    return out  # type: ignore[return-value]


def complete_run(header: Mapping[str, Any] | None) -> RunHeader:
    run = _filled(header, _keys(RunHeader))
    if run["host"] is not None:
        run["host"] = _filled(run["host"], HOST_KEYS)
    return run  # type: ignore[return-value]


def complete_export(export: Export) -> Export:
    return {"schema_version": export["schema_version"], "run": complete_run(export.get("run")),
            "devices": [complete_device(d) for d in export.get("devices") or ()],
            "results": [complete_cell(c) for c in export.get("results") or ()]}
