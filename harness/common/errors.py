"""The one user-facing error type and the exit codes of every command."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    BUDGET_BROKEN = 1  # gate: at least one budget failed
    BAD_INPUT = 2  # user input is wrong: file, line or device named in the message
    CELL_FAILURES = 3  # the run completed, but some cells are not "ok"
    HARNESS_ERROR = 4  # a bug in edgebench: traceback printed
    INTERRUPTED = 130


class EdgebenchError(Exception):
    """A problem the user can fix. Raised anywhere, printed once by the CLI as one line."""

    def __init__(self, message: str, *, where: str | None = None, exit_code: ExitCode = ExitCode.BAD_INPUT):
        super().__init__(message)
        self.message = message
        self.where = where
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message
