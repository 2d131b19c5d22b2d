"""Timestamps: UTC, ISO 8601, to the second, wherever edgebench records one."""

from __future__ import annotations

from datetime import datetime, timezone


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_id_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-")
