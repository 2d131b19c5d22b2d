"""The results store: every raw sample, one row per cell written as it arrives, in an SQLite file (the
default) or a team's PostgreSQL database (``--store postgresql://USER@HOST:PORT/DB``); see store_db.

Tables (the store's schema_version in ``meta``; every JSON column carries the record's own, RECORD_VERSION):
    meta(key, value)                                             schema_version
    runs(id, label, started_at, finished_at, data)               data: settings, inventory, commit, host, controller
    devices(run_id, name, data)                                  data: status, error, env, agent_version
    cells(run_id, device, model, variant, status, data, p50_ms, series)
                                        data: the export cell (see export_run); p50_ms: its median, for the
                                        history (history.py); series: what else makes runs comparable (JSON
                                        [model sha256, runtime, threads]), for the noise floors (noise.py)
    shifts(key, data)                                            the index's change points, by a hash of the
                                        detector and the series (changepoints.cached_change_points); a few
                                        hundred bytes per series per run

Opening a store first reads it (nothing written): a file or database holding other tables, a schema_version
that is not a number, or one newer than this edgebench is refused before anything changes. Creating the
tables and migrating older stores (MIGRATIONS, step by step) happen in one exclusive transaction, so
processes opening a new store at once create it exactly once.

Several controllers may write one store at once: each run has its own id (drawn again on the rare clash),
and each cell is one row keyed by (run, device, model, variant), written with an upsert: nothing is lost or
duplicated. Every run records the controller that made it (host, user, pid).
"""

from __future__ import annotations

import getpass
import json
import os
import platform
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..common.clock import now_iso, run_id_stamp
from ..common.errors import EdgebenchError
from .history import CellSummary, History, RunCounts
from .noise import SeriesPoint, series_key
from .record import Cell, DeviceRecord, Export, RunHeader, Status, p50
from .store_db import NO_STORE, Database, PostgresDatabase, SqliteDatabase, redact

SCHEMA_VERSION = 4
RECORD_VERSION = 1  # of the export and of the JSON in the data columns: store migrations leave it alone
DEFAULT_STORE = Path(".edgebench") / "results.sqlite"
URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
POSTGRES_SCHEMES = ("postgresql", "postgres")
CELL_COLUMNS = "run_id, device, model, variant, status, data, p50_ms, series"
CELL_VALUES = "?, ?, ?, ?, ?, ?, ?, ?"
RUN_COLUMNS = "id, label, started_at, finished_at, data"

CREATE_V1 = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE runs (id TEXT PRIMARY KEY, label TEXT, started_at TEXT, finished_at TEXT, data TEXT{seq_column})",
    "CREATE TABLE devices (run_id TEXT, name TEXT, data TEXT, PRIMARY KEY (run_id, name))",
    "CREATE TABLE cells (run_id TEXT, device TEXT, model TEXT, variant TEXT, status TEXT, data TEXT, "
    "PRIMARY KEY (run_id, device, model, variant))",
)


def _summary_columns(db: Database) -> None:
    """v1 -> v2: each cell's median in a column, covered by an index, so the history never parses samples."""
    db.execute("ALTER TABLE cells ADD COLUMN p50_ms DOUBLE PRECISION")
    db.execute("CREATE INDEX cells_summary ON cells (run_id, device, model, variant, status, p50_ms)")
    for (run_id,) in db.query("SELECT DISTINCT run_id FROM cells"):  # a run at a time: stores hold gigabytes
        rows = db.query("SELECT device, model, variant, data FROM cells WHERE run_id=?", (run_id,))
        db.executemany("UPDATE cells SET p50_ms=? WHERE run_id=? AND device=? AND model=? AND variant=?",
                       [(p50(json.loads(data)), run_id, *key) for *key, data in rows])


def _series(cell: Cell) -> str | None:
    """The series column: the parts of the cell's series key (noise.series_key) that are not columns already."""
    key = series_key(cell)
    return None if key is None else json.dumps([key[1], key[3], key[4]])


def _series_column(db: Database) -> None:
    """v2 -> v3: what makes two runs comparable in a column, so noise floors never parse a cell's samples."""
    db.execute("ALTER TABLE cells ADD COLUMN series TEXT")
    for (run_id,) in db.query("SELECT DISTINCT run_id FROM cells"):
        rows = db.query("SELECT device, model, variant, data FROM cells WHERE run_id=?", (run_id,))
        db.executemany("UPDATE cells SET series=? WHERE run_id=? AND device=? AND model=? AND variant=?",
                       [(_series(json.loads(data)), run_id, *key) for *key, data in rows])


def _shifts_table(db: Database) -> None:
    """v3 -> v4: the change points found in the index's series, so ``report`` reads what ``run`` found."""
    db.execute("CREATE TABLE shifts (key TEXT PRIMARY KEY, data TEXT)")


# MIGRATIONS[n] upgrades a store from schema_version n to n + 1, on SQLite and PostgreSQL alike.
MIGRATIONS: dict[int, Callable[[Database], None]] = {1: _summary_columns, 2: _series_column, 3: _shifts_table}


def store_path(explicit: str | Path | None = None) -> str | Path:
    """Where the store is: ``explicit``, else $EDGEBENCH_STORE, else the default file. A URL stays a string."""
    location = explicit or os.environ.get("EDGEBENCH_STORE") or DEFAULT_STORE
    return location if isinstance(location, str) and URL.match(location) else Path(location)


def _connect(location: str | Path, create: bool) -> Database:
    if isinstance(location, str):
        found = URL.match(location)
        if found:  # before any path handling: Path() would make a URL a relative file name
            if found.group(1).lower() not in POSTGRES_SCHEMES:
                raise EdgebenchError(f"unknown store URL scheme {found.group(1)!r}: give a file path or "
                                     "postgresql://USER@HOST:PORT/DB", where=redact(location, location))
            return PostgresDatabase(location)
    return SqliteDatabase(Path(location), create=create)


def _version(db: Database) -> int | None:
    """The store's schema_version, read without writing; None when there are no tables at all yet."""
    tables = {str(r[0]).lower() for r in db.query(db.tables_sql)}
    if not tables:
        return None
    row = db.query("SELECT value FROM meta WHERE key='schema_version'") if "meta" in tables else []
    if not row:
        raise EdgebenchError(f"not an edgebench results store (it holds other tables: {', '.join(sorted(tables))}); "
                             "give edgebench a file or database of its own", where=db.where)
    if not re.fullmatch(r"[1-9][0-9]{0,8}", str(row[0][0])):
        raise EdgebenchError(f"not an edgebench results store: schema_version {row[0][0]!r} is not a version number",
                             where=db.where)
    return int(row[0][0])


def _refuse_newer(db: Database, version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise EdgebenchError(f"store has schema_version {version}, this edgebench reads up to {SCHEMA_VERSION}: "
                             "upgrade edgebench", where=db.where)


def _open_schema(db: Database, create: bool) -> None:
    _refuse_newer(db, version := _version(db))
    if version is None and not create:
        raise EdgebenchError(NO_STORE, where=db.where)
    if version != SCHEMA_VERSION:
        with db.transaction(schema=True):
            version = _version(db)  # again, exclusively: another process may have created or migrated it meanwhile
            _refuse_newer(db, version)
            if version is None:
                for statement in CREATE_V1:
                    db.execute(statement.format(seq_column=db.seq_column))
                db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
                version = 1
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](db)
                version += 1
                db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
    db.after_schema()


def _controller() -> dict[str, Any]:
    """Who wrote a run into a store several controllers share."""
    try:
        user: str | None = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        user = None
    return {"host": platform.node(), "user": user, "pid": os.getpid()}


class Store:
    def __init__(self, location: str | Path, *, create: bool = True):
        """Open (``create``: or create) the store at a path or URL; see the module docstring."""
        self.db = _connect(location, create)
        self.path = self.db.where
        try:
            _open_schema(self.db, create)
        except BaseException:
            self.db.close()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------
    def create_run(self, label: str | None, data: dict[str, Any]) -> str:
        payload = json.dumps({"schema_version": RECORD_VERSION, **data, "controller": _controller()})
        return self._insert_run(_fresh_ids(), (label, now_iso(), None, payload))

    def _insert_run(self, ids: Iterable[str], row: Sequence[Any]) -> str:
        """The run (label, started_at, finished_at, data) under the first of ``ids`` no run has yet."""
        for run_id in ids:
            if self.db.execute(f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                               (run_id, *row)):
                return run_id
        raise EdgebenchError("could not draw a free run id", where=self.path)

    def finish_run(self, run_id: str) -> None:
        self.db.execute("UPDATE runs SET finished_at=? WHERE id=?", (now_iso(), run_id))

    def put_device(self, run_id: str, name: str, data: DeviceRecord) -> None:
        self.db.execute(
            "INSERT INTO devices (run_id, name, data) VALUES (?, ?, ?) "
            "ON CONFLICT (run_id, name) DO UPDATE SET data=excluded.data",
            (run_id, name, json.dumps({"schema_version": RECORD_VERSION, **data}, allow_nan=False)),
        )

    def put_cell(self, run_id: str, cell: Cell) -> None:
        """Store one cell at once, so an interrupted run loses nothing already measured."""
        self.db.execute(
            f"INSERT INTO cells ({CELL_COLUMNS}) VALUES ({CELL_VALUES}) ON CONFLICT (run_id, device, model, "
            "variant) DO UPDATE SET status=excluded.status, data=excluded.data, p50_ms=excluded.p50_ms, "
            "series=excluded.series",
            (run_id, cell["device"], cell["model"], cell["variant"], str(cell["status"]),
             json.dumps({"schema_version": RECORD_VERSION, **cell}, allow_nan=False), p50(cell), _series(cell)),
        )

    # -- reading -------------------------------------------------------------
    def resolve(self, ref: str | None) -> str:
        """A run id from 'latest' (default), an id, or a label (its newest run)."""
        newest = f"ORDER BY started_at DESC, {self.db.seq} DESC LIMIT 1"
        if ref in (None, "", "latest"):
            rows = self.db.query(f"SELECT id FROM runs {newest}")
            if not rows:
                raise EdgebenchError("no runs stored yet: run 'edgebench run' first", where=self.path)
            return str(rows[0][0])
        rows = self.db.query("SELECT id FROM runs WHERE id=?", (ref,)) or self.db.query(
            f"SELECT id FROM runs WHERE label=? {newest}", (ref,))
        if not rows:
            raise EdgebenchError(f"no run with id or label {ref!r}", where=self.path)
        return str(rows[0][0])

    def cells(self, run_id: str) -> list[Cell]:
        rows = self.db.query("SELECT data FROM cells WHERE run_id=? ORDER BY device, model, variant", (run_id,))
        return [_cell(json.loads(r[0])) for r in rows]

    def export_run(self, run_id: str) -> Export:
        """The run as the export JSON: schema_version, run, devices, results."""
        rows = self.db.query("SELECT id, label, started_at, finished_at, data FROM runs WHERE id=?", (run_id,))
        if not rows:
            raise EdgebenchError(f"no run {run_id!r}", where=self.path)
        devices: list[DeviceRecord] = [
            {"name": name, **_strip(json.loads(data))}  # type: ignore[typeddict-item]
            for name, data in self.db.query("SELECT name, data FROM devices WHERE run_id=? ORDER BY name", (run_id,))
        ]
        return {"schema_version": RECORD_VERSION, "run": _header(rows[0]), "devices": devices,
                "results": self.cells(run_id)}

    def runs(self) -> list[RunHeader]:
        """Every run's header, oldest first."""
        return [_header(r) for r in self.db.query(
            f"SELECT id, label, started_at, finished_at, data FROM runs ORDER BY started_at, {self.db.seq}")]

    def history(self, recent: int | None = None) -> History:
        """Every run with its counts, and the per-cell summaries of the ``recent`` newest runs (default all):
        what the index and its trends read, without any cell's samples."""
        runs = self.runs()
        counts: dict[str, list[int]] = {str(r["id"]): [0, 0, 0] for r in runs}
        for run_id, n in self.db.query("SELECT run_id, COUNT(*) FROM devices GROUP BY run_id"):
            counts.setdefault(run_id, [0, 0, 0])[0] = int(n)
        for run_id, n, ok in self.db.query("SELECT run_id, COUNT(*), SUM(CASE WHEN status='ok' THEN 1 ELSE 0 END) "
                                           "FROM cells GROUP BY run_id"):
            counts.setdefault(run_id, [0, 0, 0])[1:] = [int(n), int(ok)]
        ids = None if recent is None else [str(r["id"]) for r in runs[max(0, len(runs) - recent):]]
        return History(runs, {k: RunCounts(*v) for k, v in counts.items()}, self.cell_summaries(ids))

    def series_points(self, run_ids: list[str]) -> Iterator[SeriesPoint]:
        """The p50 of every ok cell of these runs with what makes two runs comparable (noise floors), from the
        summary columns: no cell's JSON (its samples) is read."""
        if not run_ids:
            return iter(())
        rows = self.db.query(
            "SELECT run_id, device, variant, p50_ms, series FROM cells WHERE series IS NOT NULL AND p50_ms IS NOT NULL "
            f"AND run_id IN ({', '.join('?' * len(run_ids))})", run_ids)
        parsed: dict[str, list[str]] = {}  # a few hundred distinct series among tens of thousands of rows
        return (SeriesPoint(run, (device, sha, variant, runtime, threads), float(p50))
                for run, device, variant, p50, series in rows
                for sha, runtime, threads in (parsed.get(series) or parsed.setdefault(series, json.loads(series)),))

    def cell_summaries(self, run_ids: list[str] | None = None) -> Iterator[CellSummary]:
        """One summary per cell (run, label, started_at, device, model, variant, status, p50_ms) of these runs
        (default all), read from the summary index: no cell's JSON is parsed."""
        if run_ids is not None and not run_ids:
            return iter(())
        where = f"WHERE c.run_id IN ({', '.join('?' * len(run_ids))})" if run_ids else ""
        rows = self.db.query(
            "SELECT c.run_id, r.label, r.started_at, c.device, c.model, c.variant, c.status, c.p50_ms "
            f"FROM cells c JOIN runs r ON r.id = c.run_id {where}", run_ids or ())
        return (CellSummary(*row) for row in rows)

    def known_shifts(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for i in range(0, len(keys), 500):  # below every backend's limit on bound parameters
            chunk = keys[i:i + 500]
            found.update(self.db.query(f"SELECT key, data FROM shifts WHERE key IN ({', '.join('?' * len(chunk))})",
                                       chunk))
        return found

    def keep_shifts(self, found: Mapping[str, str]) -> None:
        with self.db.transaction():  # another controller may have stored the same series meanwhile: same value
            self.db.executemany("INSERT INTO shifts (key, data) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                                list(found.items()))

    def copy_into(self, dst: Store) -> tuple[int, int, dict[str, str]]:
        """Every run of this store into ``dst``, only the rows it lacks (nothing there is overwritten, copying
        twice adds nothing); one transaction per run. Returns the runs and cells added, and the runs whose id
        ``dst`` gives another run (its id here: its fresh id there)."""
        runs, cells, renamed = 0, 0, {}
        for run_id, *row in self.db.query(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at, {self.db.seq}"):
            devices = self.db.query("SELECT name, data FROM devices WHERE run_id=?", (run_id,))
            rows = self.db.query(f"SELECT {CELL_COLUMNS} FROM cells WHERE run_id=?", (run_id,))
            with dst.db.transaction():
                there, taken = dst._match(run_id, row)
                if there is None:
                    there = dst._insert_run(_fresh_ids() if taken else [run_id, *_fresh_ids()], row)
                    runs += 1
                if there != run_id:
                    renamed[run_id] = there
                dst.db.executemany("INSERT INTO devices (run_id, name, data) VALUES (?, ?, ?) "
                                   "ON CONFLICT (run_id, name) DO NOTHING", [(there, *d) for d in devices])
                cells += dst.db.executemany(f"INSERT INTO cells ({CELL_COLUMNS}) VALUES ({CELL_VALUES}) "
                                            "ON CONFLICT (run_id, device, model, variant) DO NOTHING",
                                            [(there, *r[1:]) for r in rows])
        return runs, cells, renamed

    def _match(self, run_id: str, row: Sequence[Any]) -> tuple[str | None, bool]:
        """The id of the run here that is ``row`` (label, started_at, finished_at, data) from another store, and
        whether ``run_id`` is taken here. The same run has the same label, start and header (data: settings, host,
        controller, ...; written once, as the run starts, and copied verbatim); its finish and cells may differ
        (resumed since)."""
        found = self.db.query("SELECT id, label, started_at, data FROM runs WHERE id=? OR (started_at=? AND data=?)",
                              (run_id, row[1], row[3]))
        same = sorted((r[0] for r in found if (r[1], r[2], r[3]) == (row[0], row[1], row[3])),
                      key=lambda other: other != run_id)
        return (same[0] if same else None), any(r[0] == run_id for r in found)

    def close(self) -> None:
        self.db.close()


def _fresh_ids() -> Iterator[str]:
    """New run ids: two controllers starting in the same second draw the same one 1 in 65536."""
    return (run_id_stamp() + secrets.token_hex(2) for _ in range(8))


def _header(row: tuple[Any, ...]) -> RunHeader:
    header: RunHeader = {"id": row[0], "label": row[1], "started_at": row[2], "finished_at": row[3],
                         **_strip(json.loads(row[4]))}  # type: ignore[typeddict-item]
    return header


def _strip(d: dict[str, Any]) -> dict[str, Any]:
    d.pop("schema_version", None)
    return d


def _cell(d: dict[str, Any]) -> Cell:
    cell: Cell = _strip(d)  # type: ignore[assignment]
    cell["status"] = Status(cell["status"])
    return cell
