"""`edgebench store copy SRC DST`: history moved between stores, e.g. a laptop's SQLite into the team's PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from ..common.errors import ExitCode
from ..results.store import Store, store_path
from .output import out


def cmd_store_copy(src: str | Path, dst: str | Path, *, stream: TextIO | None = None) -> int:
    """Copy every run SRC has and DST lacks (and the cells DST lacks of runs it has): run twice, adds nothing."""
    with Store(store_path(src), create=False) as source, Store(store_path(dst)) as target:
        runs, cells, renamed = source.copy_into(target)
    for run_id, there in renamed.items():
        print(f"run {run_id}: {target.path} has another run with that id: this one is {there} there", file=out(stream))
    print(f"copied {runs} run(s), {cells} cell(s) from {source.path} to {target.path}", file=out(stream))
    return ExitCode.OK
