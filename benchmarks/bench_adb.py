"""Do two adb phones run commands at once? Wall time of two phones in parallel / one after the other.

Two test phones (tests.support.adb_device: the adb wire protocol on loopback) behind Debian's real adb server,
started on a private port and killed at the end. Each command sleeps 1 s; parallel should cost about half of
serial. Target: ratio <= 0.6 (the correctness check, that the intervals overlap, is in tests/test_adb_transport.py).

    python -m benchmarks.bench_adb [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.config.inventory import Device
from harness.fleet.transport.adb import AdbTransport
from tests.support.adb_device import AdbTestDevice
from tests.support.sshd import free_port

TARGET_RATIO = 0.6
COMMAND = ["sh", "-c", "sleep 1; getprop ro.product.model"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    adb = shutil.which("adb")
    if adb is None:
        sys.exit("needs the adb client: apt-get install adb")
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(free_port())
    subprocess.run([adb, "start-server"], check=True, capture_output=True, timeout=30)
    with tempfile.TemporaryDirectory() as tmp:
        phones = [AdbTestDevice(Path(tmp) / name).start() for name in ("p1", "p2")]
        try:
            transports = [AdbTransport(Device(name=f"phone-{i}", transport="adb", serial=p.serial))
                          for i, p in enumerate(phones)]
            for t in transports:
                t.connect()
            ratios = []
            for _ in range(a.rounds):
                t0 = time.perf_counter()
                for t in transports:
                    t.run(COMMAND, 20)
                serial = time.perf_counter() - t0
                t0 = time.perf_counter()
                with ThreadPoolExecutor(len(transports)) as pool:
                    list(pool.map(lambda t: t.run(COMMAND, 20), transports))
                ratios.append((time.perf_counter() - t0) / serial)
        finally:
            for p in phones:
                p.stop()
            subprocess.run([adb, "kill-server"], capture_output=True, timeout=30)
    ratio = statistics.median(ratios)
    print(f"2 adb phones, a 1 s command each: parallel/serial wall time median {ratio:.2f} of {a.rounds} rounds "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}); target <= {TARGET_RATIO}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
