"""Progress of a run: a live table on a terminal (each device's state, cells done, ETA), plain lines
otherwise (a pipe, a log file, CI), nothing with -q.

Fed by the run's two callbacks (a cell stored, a device finished), which the runner already serialises,
so the display costs one update per cell however large the fleet; rich redraws the table on its own
thread a few times a second.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..results.record import Cell, DeviceRecord, Status, p50


@dataclass
class _Device:
    total: int
    done: int = 0
    failed: int = 0
    last: str = ""
    state: str = "waiting"


class Progress:
    """Counts cells per device and says how long the rest should take."""

    def __init__(self, devices: dict[str, int], stream: TextIO):
        self.devices = {name: _Device(total) for name, total in devices.items()}
        self.stream = stream
        self.started = time.monotonic()

    @property
    def eta_s(self) -> float | None:
        """Remaining seconds at the pace so far (cells of all devices together); None before the first cell."""
        done = sum(d.done for d in self.devices.values())
        total = sum(d.total for d in self.devices.values())
        return (time.monotonic() - self.started) * (total - done) / done if done else None

    def cell(self, cell: Cell) -> None:
        d = self.devices[cell["device"]]
        d.done += 1
        d.failed += cell["status"] != Status.OK
        median = p50(cell)
        d.last = f"{cell['model']}/{cell['variant']}: {cell['status']}" + (f" p50 {median:.3f} ms" if median else "")
        d.state = "measuring"
        self.show_cell(cell["device"], d)

    def device(self, record: DeviceRecord) -> None:
        d = self.devices[record["name"]]
        d.state = "done" if record["status"] == Status.OK else str(record["status"])

    def show_cell(self, name: str, d: _Device) -> None:
        done = sum(x.done for x in self.devices.values())
        total = sum(x.total for x in self.devices.values())
        print(f"  [{name}] {d.last} ({done}/{total} cells, {_eta(self.eta_s)})", file=self.stream, flush=True)

    def close(self) -> None:
        pass


class LiveProgress(Progress):
    """The same, as a table redrawn in place."""

    def __init__(self, devices: dict[str, int], stream: TextIO):
        super().__init__(devices, stream)
        self.live = Live(get_renderable=self._render, console=Console(file=stream), refresh_per_second=4,
                         transient=False)
        self.live.start()

    def show_cell(self, name: str, d: _Device) -> None:
        pass  # the table redraws itself

    def _render(self) -> Group:
        table = Table(box=None, pad_edge=False)
        for column in ("device", "state", "cells", "last cell"):
            table.add_column(column)
        for name, d in self.devices.items():
            colour = "green" if d.state == "done" else "yellow" if d.state in ("waiting", "measuring") else "red"
            table.add_row(name, Text(d.state, style=colour), f"{d.done}/{d.total}"
                          + (f" ({d.failed} not ok)" if d.failed else ""), d.last)
        done = sum(d.done for d in self.devices.values())
        total = sum(d.total for d in self.devices.values())
        return Group(table, Text(f"{done}/{total} cells, {time.monotonic() - self.started:.0f} s, {_eta(self.eta_s)}"))

    def close(self) -> None:
        self.live.stop()


class Quiet(Progress):
    def show_cell(self, name: str, d: _Device) -> None:
        pass


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA after the first cell"
    return f"ETA {seconds:.0f} s" if seconds < 120 else f"ETA {seconds / 60:.0f} min"


def progress_for(devices: dict[str, int], stream: TextIO, quiet: bool) -> Progress:
    """cells per device -> the display that suits where ``stream`` goes."""
    if quiet:
        return Quiet(devices, stream)
    if stream.isatty() and not os.environ.get("CI"):
        return LiveProgress(devices, stream)
    return Progress(devices, stream)
