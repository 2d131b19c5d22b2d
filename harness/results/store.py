"""The results store: one SQLite file, every raw sample, one row per cell written as it arrives.

Tables (schema_version in ``meta``; every JSON column also carries its own):
    runs(id, label, started_at, finished_at, data)      data: settings, inventory, commit, host
    devices(run_id, name, data)                          data: status, error, env, agent_version
    cells(run_id, device, model, variant, status, data)  data: the export cell (see export_run)

Older stores are migrated step by step by the functions in MIGRATIONS; a store
written by a newer edgebench is refused rather than misread.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..common.clock import now_iso, run_id_stamp
from ..common.errors import EdgebenchError
from .record import Cell, DeviceRecord, Export, RunHeader, Status

SCHEMA_VERSION = 1
DEFAULT_STORE = Path(".edgebench") / "results.sqlite"
# MIGRATIONS[n] upgrades a store from schema_version n to n + 1.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}


def store_path(explicit: str | Path | None = None) -> Path:
    return Path(explicit or os.environ.get("EDGEBENCH_STORE") or DEFAULT_STORE)


class Store:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self._init()
        except sqlite3.DatabaseError as exc:
            raise EdgebenchError(f"not a usable edgebench results store: {exc}", where=str(path)) from None

    def _init(self) -> None:
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self.db.executescript(
                    """
                    CREATE TABLE runs (id TEXT PRIMARY KEY, label TEXT, started_at TEXT, finished_at TEXT, data TEXT);
                    CREATE TABLE devices (run_id TEXT, name TEXT, data TEXT, PRIMARY KEY (run_id, name));
                    CREATE TABLE cells (run_id TEXT, device TEXT, model TEXT, variant TEXT, status TEXT, data TEXT,
                                        PRIMARY KEY (run_id, device, model, variant));
                    """
                )
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                return
            version = int(row[0])
            if version > SCHEMA_VERSION:
                raise EdgebenchError(
                    f"store has schema_version {version}, this edgebench reads up to {SCHEMA_VERSION}: upgrade edgebench",
                    where=str(self.path),
                )
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](self.db)
                version += 1
                self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))

    # -- writing -------------------------------------------------------------
    def create_run(self, label: str | None, data: dict[str, Any]) -> str:
        run_id = run_id_stamp() + secrets.token_hex(2)
        with self.db:
            self.db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, NULL, ?)",
                (run_id, label, now_iso(), json.dumps({"schema_version": SCHEMA_VERSION, **data})),
            )
        return run_id

    def finish_run(self, run_id: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET finished_at=? WHERE id=?", (now_iso(), run_id))

    def put_device(self, run_id: str, name: str, data: DeviceRecord) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO devices VALUES (?, ?, ?)",
                (run_id, name, json.dumps({"schema_version": SCHEMA_VERSION, **data}, allow_nan=False)),
            )

    def put_cell(self, run_id: str, cell: Cell) -> None:
        """Store one cell at once, so an interrupted run loses nothing already measured."""
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, cell["device"], cell["model"], cell["variant"], cell["status"],
                 json.dumps({"schema_version": SCHEMA_VERSION, **cell}, allow_nan=False)),
            )

    # -- reading -------------------------------------------------------------
    def resolve(self, ref: str | None) -> str:
        """A run id from 'latest' (default), an id, or a label (its newest run)."""
        if ref in (None, "", "latest"):
            row = self.db.execute("SELECT id FROM runs ORDER BY rowid DESC LIMIT 1").fetchone()
            if row is None:
                raise EdgebenchError("no runs stored yet: run 'edgebench run' first", where=str(self.path))
            return str(row[0])
        row = self.db.execute("SELECT id FROM runs WHERE id=?", (ref,)).fetchone() or self.db.execute(
            "SELECT id FROM runs WHERE label=? ORDER BY rowid DESC LIMIT 1", (ref,)
        ).fetchone()
        if row is None:
            raise EdgebenchError(f"no run with id or label {ref!r}", where=str(self.path))
        return str(row[0])

    def cells(self, run_id: str) -> list[Cell]:
        rows = self.db.execute(
            "SELECT data FROM cells WHERE run_id=? ORDER BY device, model, variant", (run_id,)
        ).fetchall()
        return [_cell(json.loads(r[0])) for r in rows]

    def export_run(self, run_id: str) -> Export:
        """The run as the export JSON: schema_version, run, devices, results."""
        row = self.db.execute("SELECT id, label, started_at, finished_at, data FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise EdgebenchError(f"no run {run_id!r}", where=str(self.path))
        run: RunHeader = {"id": row[0], "label": row[1], "started_at": row[2], "finished_at": row[3],
                          **_strip(json.loads(row[4]))}  # type: ignore[typeddict-item]
        devices: list[DeviceRecord] = [
            {"name": name, **_strip(json.loads(data))}  # type: ignore[typeddict-item]
            for name, data in self.db.execute("SELECT name, data FROM devices WHERE run_id=? ORDER BY name", (run_id,))
        ]
        return {"schema_version": SCHEMA_VERSION, "run": run, "devices": devices, "results": self.cells(run_id)}

    def runs(self) -> list[dict[str, Any]]:
        return [
            {"id": r[0], "label": r[1], "started_at": r[2], "finished_at": r[3]}
            for r in self.db.execute("SELECT id, label, started_at, finished_at FROM runs ORDER BY rowid")
        ]

    def close(self) -> None:
        self.db.close()


def _strip(d: dict[str, Any]) -> dict[str, Any]:
    d.pop("schema_version", None)
    return d


def _cell(d: dict[str, Any]) -> Cell:
    cell: Cell = _strip(d)  # type: ignore[assignment]
    cell["status"] = Status(cell["status"])
    return cell
