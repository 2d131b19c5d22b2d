"""The command line run in-process, as a user would run it from a shell."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from os import PathLike

from harness.cli import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*argv: str | PathLike[str]) -> CliResult:
    """Run `edgebench ARGV` in-process, as a user would from a shell."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return CliResult(code, out.getvalue(), err.getvalue())


def export_run(store: Path | str, run: str = "latest") -> dict[str, Any]:
    """`edgebench export` of a stored run, parsed."""
    result = run_cli("export", "--run", run, "--store", store)
    assert result.code == 0, result.err
    return json.loads(result.out)
