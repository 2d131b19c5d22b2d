"""Files written atomically, hashed, and read with a size cap: one definition each."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import EdgebenchError


@contextmanager
def replacing(path: Path, *, mode: int | None = None) -> Iterator[Path]:
    """A temporary file beside ``path`` that replaces it when the block succeeds (removed when it fails),
    so a reader, or a crash, never sees half a file. ``mode`` sets its permissions (mkstemp makes 0600)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise EdgebenchError(f"cannot write: {exc.strerror or exc}", where=str(path)) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes | str, *, mode: int | None = None) -> Path:
    with replacing(path, mode=mode) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def atomic_copy(source: Path, target: Path) -> Path:
    with replacing(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def sha256_file(path: Path, limit: int | None = None) -> str:
    """The file's sha256; with ``limit``, refused (naming it) once more than ``limit`` bytes were read: a file
    that grows while it is hashed cannot keep the reader going."""
    h = hashlib.sha256()
    read = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            read += len(block)
            if limit is not None and read > limit:
                raise EdgebenchError(f"file is larger than {limit} bytes", where=str(path))
            h.update(block)
    return h.hexdigest()


def read_capped(path: Path, limit: int, what: str = "file") -> bytes:
    """The whole file, refused (naming it) when larger than ``limit`` bytes or not a regular file: opened
    without blocking, so a FIFO put in its place cannot hold the reader."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise EdgebenchError(f"{what} not found", where=str(path)) from None
    except OSError as exc:
        raise EdgebenchError(f"cannot read {what}: {exc.strerror or exc}", where=str(path)) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise EdgebenchError(f"{what} is not a regular file (a FIFO, device or socket): refused", where=str(path))
        data = f.read(limit + 1)
    if len(data) > limit:
        raise EdgebenchError(f"{what} is larger than {limit} bytes", where=str(path))
    return data


def inside(directory: Path, relative: object, what: str, where: str) -> Path:
    """``directory / relative`` when it stays inside ``directory`` once symlinks are resolved; else an
    EdgebenchError naming ``where``. Paths read from untrusted files (manifests, suites) go through here,
    so no input can make edgebench read, ship or overwrite a file outside the directory it came with."""
    if not isinstance(relative, str) or not relative or "\0" in relative:
        raise EdgebenchError(f"{what} must be a relative path, not {relative!r}", where=where)
    base = directory.resolve()
    target = (directory / relative).resolve()
    if Path(relative).is_absolute() or not target.is_relative_to(base):
        raise EdgebenchError(f"{what} {relative!r} points outside {directory}: refused", where=where)
    return directory / relative
