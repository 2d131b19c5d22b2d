"""The candidates' table: accuracy, size and per-device latency; the front on each device; the recommendation.

A candidate is dominated on a device when another one is at least as fast, as accurate and as small there,
and strictly better in one of them. The recommendation on a device is the fastest candidate that meets the
accuracy bar (the same rule as the run report's, harness.report.recommend); it may differ per device.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..report.recommend import acc_min, accuracy_failure
from ..results.record import Cell, Status, p50


def candidate_row(name: str, entry: dict[str, Any], recipe: dict[str, Any] | None, bar: Mapping[str, float],
                  top1: dict[str, Any] | None, twin: dict[str, Any] | None = None) -> dict[str, Any]:
    """One candidate from its manifest entry (host validation and accuracy included).

    An Edge TPU compilation cannot run on the host: its accuracy is its ``twin``'s, the variant it compiles
    (the same integer arithmetic), and says so in ``accuracy_of``.
    """
    accuracy = entry.get("accuracy") or (twin or {}).get("accuracy") or {}
    tpu = entry.get("edgetpu") or {}
    ok = entry["status"] == Status.OK
    failure = accuracy_failure(accuracy, bar) if ok and accuracy else None
    return {
        "name": name,
        "base": (recipe or {}).get("base", name),
        "keeps_float": list((recipe or {}).get("keeps_float") or ([] if name != "fp32" else ["(everything)"])),
        "float_ops": len((recipe or {}).get("float_nodes") or []),
        "io_type": (recipe or {}).get("io_type"),  # None: the base variant's
        "status": str(entry["status"]),
        "error": entry.get("error"),
        "bytes": entry.get("bytes"),
        "warnings": list(entry.get("warnings") or []),
        "accuracy": {key: acc_min(accuracy, key) for key in ("cosine", "top1_agreement", "snr_db")},
        "top1": (top1 or {}).get("top1"),
        "top1_error": (top1 or {}).get("error"),
        "accuracy_of": entry.get("edgetpu_of"),
        "edgetpu_ops": {k: tpu.get(k) for k in ("tpu_ops", "cpu_ops", "edgetpu_subgraphs")} if tpu else None,
        "meets_bar": ok and bool(accuracy) and failure is None,
        "why_not": None if ok and failure is None else (failure or entry.get("error") or "no accuracy measured"),
        "latency": {},
        "dominated": {},
    }


def add_latency(rows: list[dict[str, Any]], cells: list[Cell]) -> list[str]:
    """Per-device p50 (ms) and status of each candidate from a run's cells; the devices seen."""
    by_name = {row["name"]: row for row in rows}
    devices: list[str] = []
    for cell in cells:
        row = by_name.get(cell["variant"])
        if row is None:
            continue
        if cell["device"] not in devices:
            devices.append(cell["device"])
        row["latency"][cell["device"]] = {"p50_ms": p50(cell), "status": str(cell["status"]), "error": cell["error"]}
    return devices


def _score(row: dict[str, Any], device: str) -> tuple[float, float, float] | None:
    """(latency, -accuracy, size): smaller is better in each; None when not measured."""
    latency = (row["latency"].get(device) or {}).get("p50_ms")
    accuracy = row["top1"] if row["top1"] is not None else row["accuracy"]["cosine"]
    if latency is None or accuracy is None or row["bytes"] is None:
        return None
    return float(latency), -float(accuracy), float(row["bytes"])


def mark_front(rows: list[dict[str, Any]], device: str) -> None:
    scores = {row["name"]: _score(row, device) for row in rows}
    for row in rows:
        mine = scores[row["name"]]
        if mine is None:
            continue
        row["dominated"][device] = any(
            other is not None and all(o <= m for o, m in zip(other, mine)) and other != mine
            for name, other in scores.items() if name != row["name"])


def recommend(rows: list[dict[str, Any]], devices: list[str]) -> dict[str, dict[str, Any]]:
    """Per device: the fastest candidate meeting the accuracy bar, or why there is none."""
    out: dict[str, dict[str, Any]] = {}
    for device in devices:
        mark_front(rows, device)
        fit = [(row["latency"][device]["p50_ms"], row["name"]) for row in rows
               if row["meets_bar"] and (row["latency"].get(device) or {}).get("p50_ms") is not None]
        if fit:
            latency, name = min(fit)
            out[device] = {"candidate": name, "p50_ms": latency,
                           "reason": f"fastest candidate meeting the accuracy bar on {device} ({latency:.3f} ms p50)"}
        else:
            out[device] = {"candidate": None, "p50_ms": None,
                           "reason": "no candidate both meets the accuracy bar and ran on this device"}
    return out
