"""A stand-in for the device agent that speaks the wire protocol badly on purpose.

Installed as a device's "python" by ``install(dir, mode)``: the host then runs
``WRAPPER AGENT.pyz serve RUNTIME`` (or ``probe``) and gets this script instead,
which reads the job and answers each cell the way MODE says:

    delegate-string  a string where the delegate mapping belongs
    thermal-string   a string where the thermal record belongs
    huge-int         a 500-digit integer
    deep             an object nested 100 000 levels deep
    nan / inf        NaN, and a number that parses as infinity (1e999)
    negative         negative durations and memory
    chatter          harmless hello and probe frames forever, never a result
    flood            200 MB of garbage on stdout
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

MAGIC = b"EDGEBENCH1"
FLOOD_BYTES = 200 << 20
GOOD_CELL = {"status": "ok", "samples_ms": [1.0, 1.1, 1.2], "init_ms": 1.0, "first_inference_ms": 1.0,
             "peak_rss_mb": 10.0}


def install(directory: Path, mode: str) -> Path:
    """An executable wrapper that runs this script in MODE; give its path as the device's python."""
    wrapper = directory / f"hostile-{mode}"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} {mode} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def frame(body: bytes) -> bytes:
    return MAGIC + b" " + str(len(body)).encode() + b"\n" + body + b"\n"


def obj(**fields: object) -> bytes:
    return frame(json.dumps({"schema_version": 1, **fields}).encode())


def bad_cell(mode: str, cell_id: str) -> bytes:
    """A cell frame whose one bad field is spliced into otherwise valid JSON."""
    head = json.dumps({"schema_version": 1, "type": "cell", "id": cell_id, **GOOD_CELL})[:-1]
    bad = {
        "delegate-string": '"delegate": "xnnpack"',
        "thermal-string": '"thermal_before": "hot"',
        "huge-int": '"model_bytes": ' + "9" * 500,
        "deep": '"delegate": ' + "[" * 100_000 + "]" * 100_000,
        "nan": '"init_ms": NaN',
        "inf": '"peak_rss_mb": 1e999',
        "negative": '"cell_ms": -5.0, "rss_before_mb": -1',
    }[mode]
    return frame(f"{head}, {bad}}}".encode())


def main() -> int:
    mode, command = sys.argv[1], sys.argv[3] if len(sys.argv) > 3 else ""
    out = sys.stdout.buffer
    if mode == "flood":
        chunk = b"x" * (1 << 20)
        for _ in range(FLOOD_BYTES // len(chunk)):
            out.write(chunk)
        return 0
    hello = obj(type="hello", agent_version="0.0-hostile", runtime={"name": "hostile", "version": "0"})
    if command == "probe":
        out.write(bad_cell(mode, "probe") if mode != "chatter" else hello)
        return 0
    header = sys.stdin.buffer.readline()
    job = json.loads(sys.stdin.buffer.read(int(header.split()[1]) + 1))
    out.write(hello)
    out.flush()
    if mode == "chatter":
        while True:
            out.write(hello + obj(type="probe"))
            out.flush()
            time.sleep(0.2)
    for cell in job["cells"]:
        out.write(bad_cell(mode, cell["id"]))
        out.flush()
    out.write(obj(type="done"))
    out.flush()
    os.close(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
