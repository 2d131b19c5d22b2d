"""`edgebench store copy SRC DST`: history moved between stores, e.g. a laptop's SQLite into the team's PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from ..common.errors import ExitCode
from ..results.store import Store, store_path
from .output import out


def cmd_store_copy(src: str | Path, dst: str | Path, *, stream: TextIO | None = None) -> int:
    """Copy every run SRC has and DST lacks (and the cells DST lacks of runs it has): run twice, adds nothing."""
    source = Store(store_path(src), create=False)
    try:
        target = Store(store_path(dst))
        try:
            runs, cells = source.copy_into(target)
        finally:
            target.close()
    finally:
        source.close()
    print(f"copied {runs} run(s), {cells} cell(s) from {source.path} to {target.path}", file=out(stream))
    return ExitCode.OK
