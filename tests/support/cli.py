"""The command line run in-process, as a user would run it from a shell."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
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
