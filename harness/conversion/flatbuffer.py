"""Bounds-checked FlatBuffer reads within a work budget: what the .tflite reader (tflite_file.py) stands on.

Every read checks its bounds; every vector's length is capped; and every read (and every 64 bytes copied)
spends one unit of a budget shared by the whole parse: READS_PER_BYTE per byte of the file plus READS_BASE,
at most READS_MAX. Tables may be shared (many offsets to one table), so capping lengths alone leaves the
work quadratic; the budget makes it linear in the file's size, and bounded.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any

MAX_VECTOR_ITEMS = 1_000_000  # far above any real model; bounds the work a hostile file can cause
READS_PER_BYTE = 2  # real models need well under 1 read per byte (tests/test_faults_input.py measures it)
READS_BASE = 100_000
READS_MAX = 20_000_000  # a few seconds: far more structure than any model has (its weights are not read)


class Corrupt(Exception):
    """Internal: the bytes do not form the structure the schema promises."""


class Budget:
    """The work one parse may do: every read costs 1, every copied string or blob 1 per 64 bytes."""

    def __init__(self, size: int) -> None:
        self.total = self.left = min(READS_PER_BYTE * size + READS_BASE, READS_MAX)

    def spend(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise Corrupt(f"its structure needs more than {self.total} reads (tables shared many times over)")


class Buf:
    """Bounds-checked little-endian reads over the file's bytes, within the parse's work budget."""

    def __init__(self, data: bytes | mmap.mmap, budget: Budget | None = None) -> None:
        self.data = data
        self.size = len(data)
        self.budget = budget or Budget(self.size)

    def copy(self, start: int, length: int) -> bytes:
        self.budget.spend(1 + length // 64)
        return bytes(self.data[start:start + length])

    def read(self, fmt: str, pos: int) -> Any:
        self.budget.spend(1)
        width = struct.calcsize(fmt)
        if pos < 0 or pos + width > self.size:
            raise Corrupt(f"read of {width} bytes at offset {pos} is outside the file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def u32(self, pos: int) -> int:
        return int(self.read("<I", pos))

    def ref(self, pos: int) -> int:
        """Follow the uint32 offset stored at pos (relative to pos)."""
        target = pos + self.u32(pos)
        if target >= self.size:
            raise Corrupt(f"offset at {pos} points past the end of the file")
        return target

    def vector(self, pos: int, item_size: int, max_items: int = MAX_VECTOR_ITEMS) -> tuple[int, int]:
        """(first item position, count) of the vector at pos."""
        count = self.u32(pos)
        if count > max_items or pos + 4 + count * item_size > self.size:
            raise Corrupt(f"vector at offset {pos} claims {count} items, more than the file holds")
        return pos + 4, count

    def blob(self, pos: int) -> tuple[int, int]:
        """(start, length) of a byte vector or string: only the file size bounds it, it is never iterated."""
        return self.vector(pos, 1, max_items=self.size)

    def string(self, pos: int) -> str:
        start, length = self.blob(pos)
        return self.copy(start, length).decode("utf-8", errors="replace")

    def table(self, pos: int) -> Table:
        vtable = pos - self.read("<i", pos)
        vt_size = self.read("<H", vtable)
        if vt_size < 4 or vt_size % 2 or vtable + vt_size > self.size:
            raise Corrupt(f"table at offset {pos} has a malformed vtable")
        return Table(self, pos, vtable, vt_size)


class Table:
    def __init__(self, buf: Buf, pos: int, vtable: int, vt_size: int) -> None:
        self.buf, self.pos, self.vtable, self.vt_size = buf, pos, vtable, vt_size

    def _field(self, slot: int) -> int | None:
        """Absolute position of the field at vtable slot (4, 6, 8, ...), None when absent."""
        if slot >= self.vt_size:
            return None
        offset = self.buf.read("<H", self.vtable + slot)
        return self.pos + offset if offset else None

    def scalar(self, slot: int, fmt: str, default: Any) -> Any:
        at = self._field(slot)
        return default if at is None else self.buf.read(fmt, at)

    def string(self, slot: int) -> str | None:
        at = self._field(slot)
        return None if at is None else self.buf.string(self.buf.ref(at))

    def table(self, slot: int) -> Table | None:
        at = self._field(slot)
        return None if at is None else self.buf.table(self.buf.ref(at))

    def scalars(self, slot: int, fmt: str) -> list[Any]:
        at = self._field(slot)
        if at is None:
            return []
        width = struct.calcsize(fmt)
        start, count = self.buf.vector(self.buf.ref(at), width)
        return [self.buf.read(fmt, start + i * width) for i in range(count)]

    def tables(self, slot: int) -> list[Table]:
        at = self._field(slot)
        if at is None:
            return []
        start, count = self.buf.vector(self.buf.ref(at), 4)
        return [self.buf.table(self.buf.ref(start + 4 * i)) for i in range(count)]

    def bytes_span(self, slot: int) -> tuple[int, int]:
        """(start, length) of a [ubyte] field; (0, 0) when absent."""
        at = self._field(slot)
        return (0, 0) if at is None else self.buf.blob(self.buf.ref(at))
