"""`edgebench` command line: parse arguments, call harness.commands, turn errors into exit codes.

Exit codes: 0 success, 1 a budget is broken, 2 bad input (file/line or device
named), 3 the run finished but some cells failed, 4 an edgebench bug, 130
interrupted.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from . import __version__, commands
from .errors import EdgebenchError, ExitCode


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgebench", description="Benchmark TFLite variants of Keras models on edge devices.")
    p.add_argument("--version", action="version", version=f"edgebench {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def store_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--store", type=Path, help="results database (default .edgebench/results.sqlite or $EDGEBENCH_STORE)")

    c = sub.add_parser("convert", help="convert a Keras/SavedModel model into TFLite variants")
    c.add_argument("model", type=Path)
    c.add_argument("--variants", help="comma-separated: fp32,fp16,dynamic,int8,int16x8 (default all)")
    c.add_argument("--calibration", type=Path,
                   help=".npy/.npz samples or a folder of images (default: random, flagged in every report)")
    c.add_argument("--image-range", metavar="LOW,HIGH", help="pixel range images are scaled to (default -1,1)")
    c.add_argument("--recipes", type=Path, help="YAML recipes: extra variants or options (io_type, select_tf_ops)")
    c.add_argument("--eval-data", type=Path, help=".npy/.npz evaluation inputs for accuracy")
    c.add_argument("--custom-objects", type=Path, help="Python file defining the model's custom layers")
    c.add_argument("-o", "--out", type=Path, help="output directory (default MODEL_tflite)")
    c.add_argument("-j", "--jobs", type=int, help="parallel conversions (default: CPU count)")

    d = sub.add_parser("devices", help="list devices and whether each is reachable")
    d.add_argument("action", nargs="?", choices=["list", "check", "setup", "purge"], default="list",
                   help="list: probe each device; check: also host key, numpy, disk, temperature, throttling; "
                        "setup: create a venv with numpy and a runtime on it; purge: delete its edgebench cache")
    d.add_argument("--runtime", default="auto", help="for setup: ai_edge_litert, tflite_runtime or auto")
    d.add_argument("--inventory", type=Path)
    d.add_argument("--devices", help="names, groups or tags, comma-separated")
    d.add_argument("--trust-new-hosts", action="store_true", help="accept and record unknown SSH host keys")
    d.add_argument("--json", action="store_true")

    r = sub.add_parser("run", help="benchmark every variant on every selected device")
    r.add_argument("suite", nargs="?", type=Path, help="suite file (default ./suite.yaml when present)")
    r.add_argument("--models", type=Path, action="append", help="converted directory or .tflite (repeatable)")
    r.add_argument("--inventory", type=Path)
    r.add_argument("--devices", help="names, groups or tags, comma-separated")
    r.add_argument("--runs", type=int)
    r.add_argument("--warmup", type=int)
    r.add_argument("--min-seconds", type=float)
    r.add_argument("--threads", type=int)
    r.add_argument("--repeats", type=int, help="measure each variant N times, interleaved across variants")
    r.add_argument("--label")
    r.add_argument("--resume", metavar="RUN", help="continue an interrupted run, measuring only what is missing")
    r.add_argument("--trust-new-hosts", action="store_true", help="accept and record unknown SSH host keys")
    r.add_argument("--cell-timeout", type=float, help="seconds before a silent cell is killed (default 600)")
    r.add_argument("--budgets", type=Path, help="gate the run on this budgets file")
    r.add_argument("--op-profile", action="store_true", help="benchmark_model devices: record per-op timings")
    r.add_argument("--ship-failed", action="store_true",
                   help="also measure variants that failed on the host (a device's runtime may still load them)")
    r.add_argument("-q", "--quiet", action="store_true")
    store_arg(r)

    rep = sub.add_parser("report", help="write a self-contained HTML report")
    rep.add_argument("--run", default="latest")
    rep.add_argument("--baseline", help="run id or label to compare against")
    rep.add_argument("-o", "--out", type=Path)
    store_arg(rep)

    g = sub.add_parser("gate", help="check a run against latency budgets (exit 1 when one is broken)")
    g.add_argument("--budgets", type=Path, required=True)
    g.add_argument("--run", default="latest")
    g.add_argument("--baseline")
    g.add_argument("--junit", type=Path)
    g.add_argument("--markdown", type=Path)
    g.add_argument("--allow-missing", action="store_true", help="unmeasured cells warn instead of failing")
    store_arg(g)

    e = sub.add_parser("export", help="print a run as JSON")
    e.add_argument("--run", default="latest")
    e.add_argument("--format", default="json", choices=["json", "pytest-benchmark"])
    store_arg(e)

    demo = sub.add_parser("demo", help="convert the bundled model, benchmark it here, write reports/demo.html")
    demo.add_argument("--runs", type=int)
    store_arg(demo)
    return p


def dispatch(a: argparse.Namespace) -> int:
    if a.command == "convert":
        return commands.cmd_convert(a.model, variants=a.variants, calibration=a.calibration, eval_data=a.eval_data,
                                    custom_objects=a.custom_objects, out=a.out, jobs=a.jobs, recipes=a.recipes,
                                    image_range=a.image_range)
    if a.command == "devices":
        if a.action == "purge":
            return commands.cmd_purge(inventory=a.inventory, devices=a.devices, trust_new_hosts=a.trust_new_hosts)
        if a.action == "setup":
            return commands.cmd_setup(inventory=a.inventory, devices=a.devices, runtime=a.runtime,
                                      trust_new_hosts=a.trust_new_hosts)
        return commands.cmd_devices(inventory=a.inventory, devices=a.devices, trust_new_hosts=a.trust_new_hosts,
                                    as_json=a.json, detailed=a.action == "check")
    if a.command == "run":
        return commands.cmd_run(a.suite, models=a.models, inventory=a.inventory, devices=a.devices, runs=a.runs,
                                warmup=a.warmup, min_seconds=a.min_seconds, threads=a.threads, repeats=a.repeats,
                                label=a.label,
                                store=a.store, resume=a.resume, trust_new_hosts=a.trust_new_hosts,
                                cell_timeout=a.cell_timeout, quiet=a.quiet, gate_budgets=a.budgets,
                                op_profile=a.op_profile, ship_failed=a.ship_failed)
    if a.command == "report":
        return commands.cmd_report(run=a.run, baseline=a.baseline, out=a.out, store=a.store)
    if a.command == "gate":
        return commands.cmd_gate(a.budgets, run=a.run, baseline=a.baseline, junit=a.junit, markdown=a.markdown,
                                 allow_missing=a.allow_missing, store=a.store)
    if a.command == "export":
        return commands.cmd_export(run=a.run, fmt=a.format, store=a.store)
    if a.command == "demo":
        return commands.cmd_demo(store=a.store, runs=a.runs)
    raise AssertionError(a.command)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(dispatch(args))
    except EdgebenchError as exc:
        print(f"edgebench: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("edgebench: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception:
        if args.debug:
            raise
        traceback.print_exc()
        print("edgebench: internal error (a bug: please report it with the traceback above)", file=sys.stderr)
        return int(ExitCode.HARNESS_ERROR)
