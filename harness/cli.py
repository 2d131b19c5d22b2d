"""`edgebench` command line: parse arguments, call harness.commands, turn errors into exit codes.

Exit codes: 0 success, 1 a budget is broken, 2 bad input (file/line or device
named), 3 the run finished but some cells failed, 4 an edgebench bug, 130
interrupted.

Each command is two small functions here: its arguments, and the call of its
command function with them (COMMANDS).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from . import __version__, commands
from .commands.conclusive import MAX_REPEATS
from .common.errors import EdgebenchError, ExitCode
from .config.settings import MeasureSettings, RunPolicy, cli_flag, parse_duration

Args = argparse.Namespace


def _store(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--store", help="results database: a file or postgresql://USER@HOST:PORT/DB "
                                     "(default $EDGEBENCH_STORE or .edgebench/results.sqlite)")


def _devices(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--inventory", type=Path)
    sp.add_argument("--devices", help="names, groups or tags, comma-separated")
    sp.add_argument("--trust-new-hosts", action="store_true", help="accept and record unknown SSH host keys")


def _measure_flags(sp: argparse.ArgumentParser) -> None:
    """One flag per measurement setting, named and described where the setting is defined."""
    for f in fields(MeasureSettings):
        flag = cli_flag(f.name)
        if flag is None:
            continue
        kind = f.metadata["kind"]
        if kind is bool:
            sp.add_argument(flag, dest=f.name, action="store_true", default=None, help=f.metadata["help"])
        else:
            # durations stay text here: the setting parses and checks them, naming the flag
            sp.add_argument(flag, dest=f.name, type=str if f.metadata["duration"] else kind,
                            help=f"{f.metadata['help']} (default {f.default})")


def _convert_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model", type=Path)
    sp.add_argument("--variants", help="comma-separated: fp32,fp16,dynamic,int8,int16x8 (default all)")
    sp.add_argument("--calibration", type=Path,
                    help=".npy/.npz samples or a folder of images (default: random, flagged in every report)")
    sp.add_argument("--image-range", metavar="LOW,HIGH", help="pixel range images are scaled to (default -1,1)")
    sp.add_argument("--recipes", type=Path, help="YAML recipes: extra variants or options (io_type, select_tf_ops)")
    sp.add_argument("--eval-data", type=Path, help=".npy/.npz evaluation inputs for accuracy")
    sp.add_argument("--custom-objects", type=Path, help="Python file defining the model's custom layers")
    sp.add_argument("-o", "--out", dest="out_dir", type=Path, help="output directory (default MODEL_tflite)")
    sp.add_argument("-j", "--jobs", type=int, help="parallel conversions (default: CPU count)")


def _convert(a: Args) -> int:
    return commands.cmd_convert(a.model, variants=a.variants, calibration=a.calibration, eval_data=a.eval_data,
                                custom_objects=a.custom_objects, out_dir=a.out_dir, jobs=a.jobs, recipes=a.recipes,
                                image_range=a.image_range)


def _doctor_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model", type=Path)
    sp.add_argument("--variant", choices=["int8", "int16x8", "dynamic"],
                    help="the variant to diagnose (default: the least accurate of them)")
    sp.add_argument("--calibration", type=Path, help="as for convert (default: random, flagged loudly)")
    sp.add_argument("--eval-data", type=Path,
                    help=".npz with inputs (x, or one array per input name) and integer labels y for top-1")
    sp.add_argument("--custom-objects", type=Path, help="Python file defining the model's custom layers")
    _devices(sp)
    _measure_flags(sp)
    _store(sp)
    sp.add_argument("--edgetpu", action="store_true",
                    help="also build Edge TPU candidates (float tails; implied by an Edge TPU device in --devices)")
    sp.add_argument("-o", "--out", dest="out_dir", type=Path, help="output directory (default MODEL_doctor)")


def _doctor(a: Args) -> int:
    measure = {f.name: getattr(a, f.name) for f in fields(MeasureSettings) if hasattr(a, f.name)}
    return commands.cmd_doctor(a.model, variant=a.variant, calibration=a.calibration, eval_data=a.eval_data,
                               custom_objects=a.custom_objects, out_dir=a.out_dir, devices=a.devices,
                               inventory=a.inventory, store=a.store, measure=measure,
                               policy=RunPolicy(trust_new_hosts=a.trust_new_hosts), edgetpu=a.edgetpu)


def _devices_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", nargs="?", choices=["list", "check", "setup", "purge"], default="list",
                    help="list: probe each device; check: also host key, numpy, disk, temperature, throttling; "
                         "setup: create a venv with numpy and a runtime on it; purge: delete its edgebench cache")
    sp.add_argument("--runtime", default="auto", help="for setup: ai_edge_litert, tflite_runtime or auto")
    _devices(sp)
    sp.add_argument("--json", action="store_true")


def _devices_cmd(a: Args) -> int:
    if a.action == "purge":
        return commands.cmd_purge(inventory=a.inventory, devices=a.devices, trust_new_hosts=a.trust_new_hosts)
    if a.action == "setup":
        return commands.cmd_setup(inventory=a.inventory, devices=a.devices, runtime=a.runtime,
                                  trust_new_hosts=a.trust_new_hosts)
    return commands.cmd_devices(inventory=a.inventory, devices=a.devices, trust_new_hosts=a.trust_new_hosts,
                                as_json=a.json, detailed=a.action == "check")


def _run_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("suite", nargs="?", type=Path, help="suite file (default ./suite.yaml when present)")
    sp.add_argument("--models", type=Path, action="append", help="converted directory or .tflite (repeatable)")
    sp.add_argument("--baseline-models", type=Path, action="append", metavar="MODELS",
                    help="the release to compare with, measured side by side (interleaved repeat by repeat); "
                         "max_regression budgets then compare against it (repeatable)")
    sp.add_argument("--until-conclusive", action="store_true",
                    help="add repeats until every max_regression check is decided, --max-repeats or --max-time is "
                         "reached (needs --baseline-models)")
    sp.add_argument("--max-time", metavar="DURATION", help="with --until-conclusive: stop adding repeats after "
                                                            "DURATION (60s, 5m or seconds) from the run's start")
    sp.add_argument("--max-repeats", metavar="N", type=int, default=MAX_REPEATS,
                    help="with --until-conclusive: a cell still undecided after N repeats a side stays inconclusive "
                         f"(default {MAX_REPEATS})")
    _devices(sp)
    _measure_flags(sp)
    sp.add_argument("--label")
    sp.add_argument("--resume", metavar="RUN", help="continue an interrupted run, measuring only what is missing")
    sp.add_argument("--budgets", type=Path, help="gate the run on this budgets file")
    sp.add_argument("--ship-failed", action="store_true",
                    help="also measure variants that failed on the host (a device's runtime may still load them)")
    sp.add_argument("--lock-timeout", metavar="DURATION", default=f"{RunPolicy.lock_timeout_s:g}s",
                    help="wait this long (90s, 5m) for a labgrid place another controller holds, then record its "
                         f"cells as device_busy (default {RunPolicy.lock_timeout_s:g}s)")
    sp.add_argument("-q", "--quiet", action="store_true")
    _store(sp)


def _run(a: Args) -> int:
    measure = {f.name: getattr(a, f.name) for f in fields(MeasureSettings) if hasattr(a, f.name)}
    return commands.cmd_run(a.suite, models=a.models, inventory=a.inventory, devices=a.devices, label=a.label,
                            store=a.store, resume=a.resume, measure=measure, quiet=a.quiet, gate_budgets=a.budgets,
                            policy=RunPolicy(trust_new_hosts=a.trust_new_hosts, ship_failed=a.ship_failed,
                                             lock_timeout_s=_duration(a.lock_timeout, "--lock-timeout", zero_ok=True)),
                            baseline_models=a.baseline_models, until_decided=a.until_conclusive,
                            max_time_s=_duration(a.max_time, "--max-time") if a.max_time else None,
                            max_repeats=a.max_repeats)


def _duration(text: str, flag: str, *, zero_ok: bool = False) -> float:
    """A DURATION flag (60s, 5m or seconds) in seconds."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise EdgebenchError(f"{flag} must be a duration such as 60s, 5m or 1h, not {text!r}", where=flag) from None
    if seconds < 0 or (seconds == 0 and not zero_ok):
        raise EdgebenchError(f"{flag} must be {'zero or more' if zero_ok else 'positive'}", where=flag)
    return seconds


def _report_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--run", default="latest")
    sp.add_argument("--baseline", help="run id or label to compare against")
    sp.add_argument("-o", "--out", dest="out_path", type=Path)
    _store(sp)


def _report(a: Args) -> int:
    return commands.cmd_report(run=a.run, baseline=a.baseline, out_path=a.out_path, store=a.store)


def _gate_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--budgets", type=Path, required=True)
    sp.add_argument("--run", default="latest")
    sp.add_argument("--baseline")
    sp.add_argument("--junit", type=Path)
    sp.add_argument("--markdown", type=Path)
    sp.add_argument("--allow-missing", action="store_true", help="unmeasured cells warn instead of failing")
    _store(sp)


def _gate(a: Args) -> int:
    return commands.cmd_gate(a.budgets, run=a.run, baseline=a.baseline, junit=a.junit, markdown=a.markdown,
                             allow_missing=a.allow_missing, store=a.store)


def _export_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--run", default="latest")
    sp.add_argument("--format", default="json", choices=["json", "pytest-benchmark"])
    _store(sp)


def _export(a: Args) -> int:
    return commands.cmd_export(run=a.run, fmt=a.format, store=a.store)


def _store_cmd_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", choices=["copy"], help="copy: every run of SRC that DST lacks into DST")
    sp.add_argument("src", help="store to read: a file or postgresql://USER@HOST:PORT/DB")
    sp.add_argument("dst", help="store to add to (created when new)")


def _store_cmd(a: Args) -> int:
    return commands.cmd_store_copy(a.src, a.dst)


def _demo_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--runs", type=int)
    _store(sp)


def _demo(a: Args) -> int:
    return commands.cmd_demo(store=a.store, runs=a.runs)


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[Args], int]]
COMMANDS: dict[str, Command] = {
    "convert": ("convert a Keras/SavedModel model into TFLite variants", _convert_args, _convert),
    "devices": ("list devices and whether each is reachable", _devices_args, _devices_cmd),
    "run": ("benchmark every variant on every selected device", _run_args, _run),
    "report": ("write a self-contained HTML report", _report_args, _report),
    "gate": ("check a run against latency budgets (exit 1 when one is broken)", _gate_args, _gate),
    "export": ("print a run as JSON", _export_args, _export),
    "doctor": ("find the layers quantization hurts, build fixes, measure them", _doctor_args, _doctor),
    "store": ("copy history between stores (SQLite, PostgreSQL), idempotently", _store_cmd_args, _store_cmd),
    "demo": ("convert the bundled model, benchmark it here, write reports/demo.html", _demo_args, _demo),
}


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="re-raise internal errors with their traceback")
    p = argparse.ArgumentParser(prog="edgebench", description="Benchmark TFLite variants of Keras models on edge devices.",
                                parents=[common])
    p.add_argument("--version", action="version", version=f"edgebench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, parents=[common]))
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command][2](args))
    except EdgebenchError as exc:
        print(f"edgebench: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("edgebench: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception:
        if getattr(args, "debug", False):
            raise
        traceback.print_exc()
        print("edgebench: internal error (a bug: please report it with the traceback above)", file=sys.stderr)
        return int(ExitCode.HARNESS_ERROR)
