"""One device's bookkeeping: which (variant, repeat) results are still due, in which order the running
measurer will report them, and the repeats already received.

Repeats of a variant are interleaved across variants (v1 v2 v3 v3 v2 v1 ...) so thermal drift does not
punish whichever variant runs last; each repeat is a fresh process (the unit of replication), and the
repeats of a variant become one cell. Every variant ends as exactly one emitted cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..results.record import Cell, Measured, Status, build_cell, merge_repeats
from .jobs import ModelVariant

CellCallback = Callable[[Cell], None]


@dataclass(frozen=True)
class Item:
    """One result due from the device: a repeat of a variant."""

    variant: ModelVariant
    repeat: int


class Ledger:
    def __init__(self, device: str, variants: list[ModelVariant], repeats: int, emit: CellCallback):
        self.device = device
        self.repeats = max(1, repeats)
        self.emit = emit
        # odd repeats run in reverse order (A B B A ...): neither of two neighbours always goes first
        self.pending = [Item(mv, r) for r in range(self.repeats) for mv in (variants if r % 2 == 0 else variants[::-1])]
        self.expected: list[Item] = []  # what the running measurer will still report, in order
        self._parts: dict[int, list[Measured]] = {}  # by id of the variant

    def frame_id(self, item: Item) -> str:
        return item.variant.key if self.repeats == 1 else f"{item.variant.key}#{item.repeat}"

    def start(self) -> list[Item]:
        """A measurer starts on everything pending, in order."""
        self.expected = list(self.pending)
        return self.expected

    def receive(self, status: Status, error: str | None, measured: Measured) -> None:
        """The result of the next expected item."""
        item = self.expected.pop(0)
        if item not in self.pending:
            return  # a later repeat of a variant that already failed
        mv = item.variant
        if status != Status.OK:
            self.emit(build_cell(self.device, mv, status, error, measured))
            self._drop(mv)
            return
        self.pending.remove(item)
        parts = self._parts.setdefault(id(mv), [])
        parts.append(measured)
        if len(parts) == self.repeats:
            self.emit(build_cell(self.device, mv, Status.OK, None, merge_repeats(parts), repeats=self.repeats))
            del self._parts[id(mv)]

    def fail_current(self, status: Status, error: str, stderr_tail: str | None = None) -> None:
        """The result the measurer was working on will not come."""
        item = self.expected.pop(0)
        if item in self.pending:
            self.emit(build_cell(self.device, item.variant, status, error, {"stderr_tail": stderr_tail or None}))
            self._drop(item.variant)

    def fail_all(self, status: Status, error: str) -> None:
        for mv in dict.fromkeys(item.variant for item in self.pending):
            self.emit(build_cell(self.device, mv, status, error))
        self.pending = []
        self.expected = []

    def single_repeat(self) -> None:
        """Measure each variant once (a runner that cannot interleave repeats)."""
        self.repeats = 1
        self.pending = [item for item in self.pending if item.repeat == 0]

    def _drop(self, mv: ModelVariant) -> None:
        self.pending = [item for item in self.pending if item.variant is not mv]
        self._parts.pop(id(mv), None)
