"""How fast is `render_report` on a big fleet, and how big is the file?

Builds a 50 devices x 10 variants x 1000 samples export from real harness.stats summaries, renders it a few
times and prints the median time and the file size against the targets (2 s, 3 MB).

    python -m benchmarks.bench_report [--devices 50] [--variants 10] [--samples 1000] [--baseline]

The exports come from tests.support.synthetic, which the report tests build theirs from too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.report.render import render_report
from tests.support.synthetic import fleet_export

TARGET_SECONDS = 2.0
TARGET_BYTES = 3_000_000
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--variants", type=int, default=10)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", action="store_true", help="also compare with a baseline run (Mann-Whitney per cell)")
    a = ap.parse_args(argv)
    export = fleet_export(a.devices, a.variants, a.samples)
    baseline = fleet_export(a.devices, a.variants, a.samples, seed=1, slowdown=0.97, run_id="base") if a.baseline \
        else None
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.html"
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            render_report(export, out, baseline=baseline)
            times.append(time.perf_counter() - t0)
        size = out.stat().st_size
    median = statistics.median(times)
    print(f"render_report {a.devices} devices x {a.variants} variants x {a.samples} samples"
          f"{' + baseline' if baseline else ''}: median {median:.3f} s of {a.repeat} "
          f"(min {min(times):.3f}, max {max(times):.3f}); {median / TARGET_SECONDS:.0%} of the {TARGET_SECONDS:g} s target")
    print(f"file size {size / 1e6:.2f} MB; {size / TARGET_BYTES:.0%} of the {TARGET_BYTES / 1e6:g} MB target")
    return 0 if median <= TARGET_SECONDS and size <= TARGET_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
