"""How fast are `render_report` on a big fleet and `edgebench report` (report + index) on a team's history?

1. Renders a 50 devices x 10 variants x 1000 samples export (from real harness.stats summaries) a few times:
   median time and file size against the targets (2 s, 3 MB).
2. Team scale, on each store (SQLite file, and a private PostgreSQL server started from Debian's `postgresql`):
   fills it with RUNS runs x DEVICES x VARIANTS cells (default 400 x 50 x 10 = 200k cells; the newest run with
   1000 samples per cell, the one the report renders; older ones with --history-samples each, which the index
   never reads), then runs `edgebench report` in a fresh process 1 + --repeat times. Printed: the time from the
   command's call to its return (report + index; its CPU time, telling a busy machine's waits apart, and the
   interpreter's imports shown beside it) and the process's peak RSS, against the targets (2 s, 500 MB). The
   first report is cold: it finds the index's change points (importing ruptures and scipy.stats) and stores
   them; the others read them, as every report after `edgebench run` (which finds them) does.
   The PostgreSQL store is filled from the SQLite one by `store copy` (its time printed too).

    python -m benchmarks.bench_report [--devices 50] [--variants 10] [--samples 1000] [--baseline]
                                      [--runs 400] [--history-samples 100] [--stores sqlite,postgresql]

The exports come from tests.support.synthetic, which the report tests build theirs from too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.report.render import render_report
from harness.results.record import Export
from harness.results.store import Store
from tests.support.postgres import postgres_server
from tests.support.synthetic import fleet_export

TARGET_SECONDS = 2.0
TARGET_BYTES = 3_000_000
TARGET_RSS_MB = 500
ROOT = Path(__file__).resolve().parents[1]
# Run in a fresh process: its peak RSS is the command's own, not this filler's.
CHILD = """
import os, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from harness.commands.results import cmd_report
t1, c1 = time.perf_counter(), time.process_time()
with open(os.devnull, "w") as null:
    cmd_report(store=sys.argv[1], out_path=Path(sys.argv[2]), stream=null)
print(time.perf_counter() - t1, time.process_time() - c1, t1 - t0,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def bench_render(a: argparse.Namespace) -> bool:
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
    return median <= TARGET_SECONDS and size <= TARGET_BYTES


def fill(store: Store, newest: Export, runs: int, history_samples: int) -> None:
    """``runs`` runs of the newest run's cells, the older ones drifting slowly and keeping fewer samples."""
    for n in range(runs):
        run_id = store.create_run(f"nightly-{n:03d}", {k: v for k, v in newest["run"].items()
                                                       if k in ("settings", "inventory", "commit", "host")})
        drift = 1 + 0.1 * (n / runs) if n < runs - 1 else 1.0
        with store.db.transaction():
            for device in newest["devices"]:
                store.put_device(run_id, device["name"], device)
            for cell in newest["results"]:
                if n < runs - 1:
                    latency: Any = dict(cell["latency_ms"] or {})
                    latency["samples"] = latency["samples"][:history_samples]
                    latency["p50"] *= drift
                    cell = {**cell, "latency_ms": latency}
                store.put_cell(run_id, cell)
        store.finish_run(run_id)


def _report_child(location: str, out: Path) -> tuple[float, float, float, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, location, str(out)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=600, check=True)
    seconds, cpu_seconds, imports, peak = map(float, done.stdout.split())
    return seconds, cpu_seconds, imports, peak


def bench_report_command(location: str, repeat: int, out: Path) -> tuple[bool, str]:
    """The first report finds the index's change points and stores them (cold: what a store copied from
    elsewhere costs once); the next ones read them, as every report after `edgebench run` does (warm)."""
    cold = _report_child(location, out)
    inside, cpu, starts, rss = zip(*(_report_child(location, out) for _ in range(repeat)))
    t, mb = statistics.median(inside), max(rss + (cold[3],))
    text = (f"report + index: median {t:.2f} s of {repeat} (min {min(inside):.2f}, max {max(inside):.2f}; "
            f"CPU {statistics.median(cpu):.2f} s; +{statistics.median(starts):.2f} s imports before the call); "
            f"cold (change points not yet stored) {cold[0]:.2f} s, CPU {cold[1]:.2f} s; peak RSS {mb:.0f} MB; "
            f"{t / TARGET_SECONDS:.0%} of {TARGET_SECONDS:g} s, {mb / TARGET_RSS_MB:.0%} of {TARGET_RSS_MB} MB; "
            f"report {out.stat().st_size / 1e6:.2f} MB, "
            f"index {(out.parent / 'index.html').stat().st_size / 1e6:.2f} MB")
    return t <= TARGET_SECONDS and mb <= TARGET_RSS_MB, text


def bench_team_scale(a: argparse.Namespace) -> bool:
    newest = fleet_export(a.devices, a.variants, a.samples)
    cells = a.runs * len(newest["results"])
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_file = Path(tmp) / "results.sqlite"
        t0 = time.perf_counter()
        store = Store(sqlite_file)
        fill(store, newest, a.runs, a.history_samples)
        print(f"{a.runs} runs x {len(newest['results'])} cells = {cells} cells (newest run {a.samples} samples per "
              f"cell, older {a.history_samples}): SQLite store filled in {time.perf_counter() - t0:.1f} s, "
              f"{sqlite_file.stat().st_size / 1e6:.0f} MB; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        if "sqlite" in a.stores:
            passed, text = bench_report_command(str(sqlite_file), a.repeat, Path(tmp) / "sqlite" / "latest.html")
            print(f"sqlite     {text}")
            ok &= passed
        if "postgresql" in a.stores:
            with postgres_server() as pg:
                url = pg.create_database("bench")
                t0 = time.perf_counter()
                copied = store.copy_into(Store(url))
                print(f"store copy into PostgreSQL: {copied[1]} cells in {time.perf_counter() - t0:.1f} s")
                passed, text = bench_report_command(url, a.repeat, Path(tmp) / "pg" / "latest.html")
                print(f"postgresql {text}")
                ok &= passed
        store.close()
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--variants", type=int, default=10)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", action="store_true", help="also compare with a baseline run (ratio and CI per cell)")
    ap.add_argument("--runs", type=int, default=400, help="stored runs for the team-scale part (0: skip it)")
    ap.add_argument("--history-samples", type=int, default=100, help="raw samples per cell of the older runs")
    ap.add_argument("--stores", default="sqlite,postgresql")
    a = ap.parse_args(argv)
    ok = bench_render(a)
    if a.runs:
        ok &= bench_team_scale(a)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
