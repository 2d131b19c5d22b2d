"""Can the regression gate be trusted on a noisy machine? False FAILs on identical files, detection of a true
slowdown, and what a decided comparison costs in wall time.

A noise generator loads one core on and off at random intervals (0.2-2 s each, stops by itself) for the whole
benchmark. Models: one small CNN at two input sizes (tests.support.scaled_models), so B is the same
architecture with more work; the true ratio B/A is measured first by a long interleaved reference run (no
gate, many repeats). Every comparison is a real `edgebench run` on the `local` device with `max_regression: 5%`.

    python -m benchmarks.bench_gate_validity [--aa 20] [--ab 10] [--sizes 64,69]

(a) A/A, identical files: side by side (`--baseline-models`, --repeats 5), against a stored run
    (`gate --baseline`, with the noise floor learnt from the other stored runs), and single-repeat runs of both
    kinds: FAIL count (target 0).
(b) A/B, B truly slower: side by side with `--until-conclusive --max-time 60s` (target >= 90% FAIL, each
    deciding within 60 s), and at a fixed --repeats 5.
(c) wall time of one decided comparison against today's default single run.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import random
import statistics
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from harness.cli import main as edgebench
from harness.commands.results import floors_from_history
from harness.gate.budgets import load_budgets
from harness.gate.checks import Verdict
from harness.gate.evaluate import evaluate
from harness.results.comparison import compare
from harness.results.store import Store
from tests.support.scaled_models import scaled_models


def _noise(seconds: float, seed: int) -> None:
    rng = random.Random(seed)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(rng.uniform(0.2, 2.0))
        busy_until = min(end, time.monotonic() + rng.uniform(0.2, 2.0))
        while time.monotonic() < busy_until:
            pass


def _cli(*argv: object) -> tuple[int, float]:
    started = time.monotonic()
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        code = edgebench([str(a) for a in argv])
    return code, time.monotonic() - started


class Bench:
    def __init__(self, work: Path, a: Path, b: Path):
        self.work, self.a, self.b = work, a, b
        self.twin = work / "release" / a.name
        self.twin.parent.mkdir(parents=True, exist_ok=True)
        self.twin.write_bytes(a.read_bytes())
        self.budgets = work / "budgets.yaml"
        self.budgets.write_text("budgets:\n  - max_regression: 5%\n")
        self.n = 0

    def store(self) -> Path:
        self.n += 1
        return self.work / f"s{self.n}.sqlite"

    def side_by_side(self, candidate: Path, *extra: object) -> tuple[Verdict, float]:
        store = self.store()
        code, wall = _cli("run", "--models", candidate, "--baseline-models", self.twin, "--devices", "local",
                          "--budgets", self.budgets, "--store", store, "-q", *extra)
        assert code in (0, 1), f"run failed with exit {code}"
        return (Verdict.FAIL if code == 1 else self._verdict(store)), wall

    def _verdict(self, store: Path, baseline: str | None = None, floors: bool = False) -> Verdict:
        db = Store(store)
        export = db.export_run(db.resolve("latest"))
        base = db.export_run(db.resolve(baseline)) if baseline else None
        sigmas = None
        if floors:
            sigmas = {d: f.sigma for d, f in floors_from_history(db, export["run"]["id"]).items()}
        verdict = evaluate(export, load_budgets(self.budgets), base, floors=sigmas).verdict
        db.close()
        return verdict

    def historical(self, runs: int, repeats: int) -> list[Verdict]:
        """`runs` stored runs of A into one store; each judged against the one before it (floors from the rest)."""
        store = self.store()
        verdicts = []
        for i in range(runs):
            code, _ = _cli("run", "--models", self.a, "--devices", "local", "--repeats", repeats, "--label",
                           f"r{i}", "--store", store, "-q")
            assert code == 0
            if i:
                verdicts.append(self._verdict(store, baseline=f"r{i - 1}", floors=True))
        return verdicts


def _reference(bench: Bench, repeats: int) -> str:
    store = bench.store()
    _cli("run", "--models", bench.b, "--baseline-models", bench.a, "--devices", "local", "--repeats", repeats,
         "--store", store, "-q")
    db = Store(store)
    cells = {c["model"]: c for c in db.cells(db.resolve("latest"))}
    change = compare(cells[bench.b.stem], cells[bench.b.stem + "@baseline"], paired=True)
    assert change is not None and change.ci95 is not None
    return f"x{change.ratio:.3f} [{change.ci95[0]:.3f}, {change.ci95[1]:.3f}] from {change.pairs} paired repeats"


def _count(verdicts: list[Verdict]) -> str:
    return ", ".join(f"{v.name} {sum(x is v for x in verdicts)}" for v in Verdict)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--aa", type=int, default=20, help="A/A comparisons of each kind")
    p.add_argument("--ab", type=int, default=10, help="A/B comparisons of each kind")
    p.add_argument("--sizes", default="64,69", help="input sides of A and B")
    p.add_argument("--reference-repeats", type=int, default=20)
    a = p.parse_args()
    size_a, size_b = (int(s) for s in a.sizes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nets = scaled_models(work / "nets", [size_a, size_b])
        bench = Bench(work, nets[size_a], nets[size_b])
        print(f"true ratio B/A (no added noise): {_reference(bench, a.reference_repeats)}", flush=True)
        noise = multiprocessing.Process(target=_noise, args=(4 * 3600, 0), daemon=True)
        noise.start()
        try:
            aa_pair = [bench.side_by_side(bench.a, "--repeats", 5)[0] for _ in range(a.aa)]
            print(f"(a) A/A side by side, 5 repeats: {_count(aa_pair)}", flush=True)
            aa_one = [bench.side_by_side(bench.a, "--repeats", 1)[0] for _ in range(a.aa)]
            print(f"(a) A/A side by side, 1 repeat: {_count(aa_one)}", flush=True)
            aa_hist = bench.historical(a.aa + 1, 5)
            print(f"(a) A/A against the previous stored run, 5 repeats, noise floor from history: {_count(aa_hist)}",
                  flush=True)
            aa_hist1 = bench.historical(a.aa + 1, 1)
            print(f"(a) A/A against the previous stored run, 1 repeat: {_count(aa_hist1)}", flush=True)
            until = [bench.side_by_side(bench.b, "--repeats", 3, "--until-conclusive", "--max-time", "60s")
                     for _ in range(a.ab)]
            walls = [w for _, w in until]
            print(f"(b) A/B side by side, --until-conclusive --max-time 60s: detected {sum(v is Verdict.FAIL for v, _ in until)}"
                  f"/{a.ab} ({_count([v for v, _ in until])}); wall median {statistics.median(walls):.1f} s, "
                  f"max {max(walls):.1f} s", flush=True)
            fixed = [bench.side_by_side(bench.b, "--repeats", 5) for _ in range(a.ab)]
            print(f"(b) A/B side by side, --repeats 5: detected {sum(v is Verdict.FAIL for v, _ in fixed)}/{a.ab}; "
                  f"wall median {statistics.median(w for _, w in fixed):.1f} s", flush=True)
            single = [_cli("run", "--models", bench.b, "--devices", "local", "--store", bench.store(), "-q")[1]
                      for _ in range(3)]
            print(f"(c) one decided comparison (--until-conclusive) / today's default single run: "
                  f"{statistics.median(walls):.1f} s / {statistics.median(single):.1f} s = "
                  f"{statistics.median(walls) / statistics.median(single):.1f}x", flush=True)
        finally:
            noise.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
