"""What `edgebench run` checks in its input before measuring: unique cell keys, and a resume that
measures with the settings the run was started with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..common.errors import EdgebenchError
from ..config.settings import MeasureSettings, cli_flag
from ..config.suite import Suite
from ..fleet.jobs import ModelVariant
from ..results.record import Status
from ..results.store import Store


def checked_variants(found: list[tuple[Path, ModelVariant]]) -> list[ModelVariant]:
    """The variants found under each source path (discover keeps them inside it), refused when two of them
    would be stored as the same cell (model/variant): one result would replace the other, and with
    --repeats their samples would merge into one cell."""
    seen: dict[str, Path] = {}
    out = []
    for source, mv in found:
        origin = (mv.path or source).resolve()
        if mv.key in seen and seen[mv.key] != origin:
            raise EdgebenchError(f"two models would be stored as the same cell {mv.key!r}: {seen[mv.key]} and "
                                 f"{origin}; rename one (the model name is the file's stem or the manifest's "
                                 f"'model')", where=str(origin))
        if mv.key not in seen:  # the same file given twice is measured once
            seen[mv.key] = origin
            out.append(mv)
    return out


def resume_run(db: Store, ref: str, suite: Suite, measure: Mapping[str, Any],
               ) -> tuple[str, set[tuple[str, str, str]], MeasureSettings]:
    """(run id, cells already ok, the run's own settings) for `run --resume`.

    The run header records the settings the run was started with; its missing and failed cells are
    measured with those, so every cell of the run means the same thing. A setting given now (in the
    suite or on the command line, ``measure``) that differs from the run's is refused."""
    given = {**suite.settings, **{k: v for k, v in measure.items() if v is not None}}
    where = {**suite.settings_where, **{k: cli_flag(k) or k for k, v in measure.items() if v is not None}}
    run_id = db.resolve(ref)
    export = db.export_run(run_id)
    known = {f.name for f in fields(MeasureSettings)}
    stored = {k: v for k, v in (export["run"].get("settings") or {}).items() if k in known}
    settings = MeasureSettings().merged(stored, lambda key: f"run {run_id} settings")
    recorded = settings.describe()
    for key, value in given.items():
        if value is None or key not in recorded:
            continue  # not recorded with the run (e.g. --op-profile): this command's value applies
        now = MeasureSettings().merged({key: value}, lambda k: where.get(k, k)).describe()[key]
        if now != recorded[key]:
            raise EdgebenchError(f"run {run_id} was measured with {key}={recorded[key]!r}, not {now!r}: resume "
                                 "without it (the run's settings are used) or start a new run", where=where.get(key))
    settings = MeasureSettings().merged({**stored, **{k: v for k, v in given.items() if k not in recorded}},
                                        lambda key: where.get(key, key))
    done = {(c["device"], c["model"], c["variant"]) for c in export["results"] if c["status"] == Status.OK}
    return run_id, done, settings
