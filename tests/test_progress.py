"""Run progress: a live table on a real terminal (a pty), plain lines in a pipe or in CI, nothing with -q."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from harness.commands.progress import LiveProgress, Progress, Quiet, progress_for
from harness.results.record import Cell, DeviceRecord, Status


def _cell(device: str, status: Status = Status.OK) -> Cell:
    return {"device": device, "model": "m", "variant": "fp32", "status": status, "latency_ms": None}  # type: ignore[typeddict-item]


def test_a_terminal_gets_a_live_table_with_every_device_and_an_eta(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)
    master, slave = os.openpty()
    with open(slave, "w") as terminal:
        progress = progress_for({"pi-1": 2, "pi-2": 2}, terminal, quiet=False)
        assert isinstance(progress, LiveProgress)
        progress.cell(_cell("pi-1"))
        progress.cell(_cell("pi-2", Status.TIMEOUT))
        progress.device({"name": "pi-2", "status": Status.TIMEOUT})  # type: ignore[typeddict-item]
        time.sleep(0.6)  # at least one redraw
        progress.close()
        drawn = os.read(master, 1 << 16).decode(errors="replace")
    os.close(master)
    assert "pi-1" in drawn and "pi-2" in drawn and "timeout" in drawn and "1 not ok" in drawn
    assert "2/4 cells" in drawn and "ETA" in drawn


def test_a_pipe_or_ci_gets_plain_lines_and_quiet_gets_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    pipe = io.StringIO()
    progress = progress_for({"pi-1": 2}, pipe, quiet=False)
    assert type(progress) is Progress
    progress.cell(_cell("pi-1"))
    assert pipe.getvalue().startswith("  [pi-1] m/fp32: ok (1/2 cells, ETA ")
    monkeypatch.setenv("CI", "1")
    master, slave = os.openpty()
    with open(slave, "w") as terminal:
        assert type(progress_for({"pi-1": 2}, terminal, quiet=False)) is Progress  # a CI log is no terminal
        assert type(progress_for({"pi-1": 2}, terminal, quiet=True)) is Quiet
    os.close(master)
