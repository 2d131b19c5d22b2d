"""The commands, as plain functions: the CLI parses arguments and calls these; so do the tests."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .convert import convert, load_recipes, parse_variants
from .errors import EdgebenchError, ExitCode
from .inventory import Device, Inventory, load_inventory
from .models import ModelVariant, discover, from_converted
from .runner import Settings, measure_all
from .shipping import agent_zip, purge, ship
from .store import Store, store_path
from .suite import ModelEntry, Suite, load_suite
from .transport import Transport, TransportError, make_transport
from .transport.adb import AdbTransport

DEFAULT_INVENTORY = Path("inventory.yaml")
DEFAULT_SUITE = Path("suite.yaml")
CONVERTED_DIR = Path(".edgebench") / "converted"


def _out(stream: TextIO | None) -> TextIO:
    return stream or sys.stdout


def _inventory(path: Path | None) -> Inventory:
    """An explicit inventory must exist; ./inventory.yaml is used when present; else just `local`."""
    if path is not None:
        return load_inventory(path)
    return load_inventory(DEFAULT_INVENTORY if DEFAULT_INVENTORY.exists() else None)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def summary_table(cells: list[dict[str, Any]]) -> str:
    rows = []
    for c in cells:
        lat = c.get("latency_ms") or {}
        note = c["error"] if c["status"] != "ok" else ", ".join(c.get("flags") or [])
        rows.append([c["device"], c["model"], c["variant"], c["status"], _fmt(lat.get("p50"), 3), _fmt(lat.get("p90"), 3),
                     _fmt(c.get("init_ms")), _fmt(c.get("peak_rss_mb"), 1),
                     _fmt(round(c["model_bytes"] / 1024) if c.get("model_bytes") else None), (note or "")[:110]])
    return table(rows, ["device", "model", "variant", "status", "p50 ms", "p90 ms", "init ms", "rss MB", "KiB", "notes"])


# -- convert -------------------------------------------------------------------
def cmd_convert(model: Path, *, variants: str | None = None, calibration: Path | None = None,
                eval_data: Path | None = None, custom_objects: Path | None = None, out: Path | None = None,
                jobs: int | None = None, recipes: Path | None = None, image_range: str | None = None,
                stream: TextIO | None = None) -> int:
    out_dir = out or Path(model.stem + "_tflite")
    recipe_map = load_recipes(recipes) if recipes else {}
    manifest = convert(model, out_dir, variants=parse_variants(variants, recipe_map), calibration=calibration,
                       eval_data=eval_data, custom_objects=custom_objects, jobs=jobs, recipes=recipe_map,
                       image_range=parse_range(image_range) if image_range else (-1.0, 1.0))
    rows = []
    for name, v in manifest["variants"].items():
        acc = v.get("accuracy") or {}
        cosine = min((m.get("cosine") for m in acc.values() if m.get("cosine") is not None), default=None)
        compat = (v.get("diagnostics") or {}).get("compatibility") or {}
        loads = ", ".join(f"{rt}: {'yes' if c['loadable'] else 'NO' if c['loadable'] is False else '?'}"
                          for rt, c in compat.items())
        rows.append([name, v["status"], _fmt(round(v["bytes"] / 1024) if v.get("bytes") else None), _fmt(cosine, 4),
                     loads or "-", ", ".join(v.get("warnings") or []), (v.get("error") or "")[:120]])
    print(table(rows, ["variant", "status", "KiB", "cosine", "loads on", "warnings", "error"]), file=_out(stream))
    print(f"manifest: {out_dir / 'manifest.json'}", file=_out(stream))
    return ExitCode.OK if all(v["status"] == "ok" for v in manifest["variants"].values()) else ExitCode.CELL_FAILURES


def parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise EdgebenchError(f"expected LOW,HIGH (e.g. 0,1 or -1,1), not {text!r}", where="--image-range") from None
    return lo, hi


# -- devices -------------------------------------------------------------------
def probe_device(device: Device, trust_new_hosts: bool = False) -> dict[str, Any]:
    """Ship the agent and ask it what the device is; failures are a status, never an exception."""
    from .protocol import ProtocolError, read_frame

    info: dict[str, Any] = {"name": device.name, "transport": device.transport, "reachable": False, "error": None}
    try:
        with make_transport(device, trust_new_hosts=trust_new_hosts) as t:
            shipped = ship(t, [agent_zip()])
            result = t.run([device.python, shipped.remote[agent_zip()], "probe", device.runtime], 120)
            info["reachable"] = True
            import io

            frame = read_frame(io.BytesIO(result.stdout))
            if frame is None:
                raise ProtocolError(f"no answer (exit {result.code}): {result.stderr.decode(errors='replace')[-300:]}")
            info.update(env=frame.get("env"), thermal=frame.get("thermal"), runtime=frame.get("runtime"),
                        error=frame.get("error"), host_key="verified" if device.transport == "ssh" else None,
                        free_disk_mb=_free_disk_mb(t), edgetpu=edgetpu_info(t),
                        android=t.device_facts() if isinstance(t, AdbTransport) else None)
    except TransportError as exc:
        info.update(status=exc.status, error=exc.message)
    except ProtocolError as exc:
        info.update(status="invalid_output", error=str(exc))
    info.setdefault("status", "ok" if info["reachable"] and not info["error"] else "environment_error")
    return info


# Coral Edge TPU: a PCIe/M.2 module appears as /dev/apex_N, a USB Accelerator by its USB ids (before and after
# its firmware loads). $1 is a root prefix, for tests on a fabricated sysfs tree.
_EDGETPU_PROBE = r"""root=$1; found=""
for dev in "$root"/dev/apex_*; do [ -e "$dev" ] && found="pcie"; done
for d in "$root"/sys/bus/usb/devices/*; do
  case "$(cat "$d/idVendor" 2>/dev/null):$(cat "$d/idProduct" 2>/dev/null)" in
    1a6e:089a|18d1:9302) found="${found:+$found,}usb";;
  esac
done
echo "edgetpu=$found"
echo "libedgetpu=$(dpkg-query -W -f='${Version}' libedgetpu1-std libedgetpu1-max 2>/dev/null | head -c 80)"
"""


def edgetpu_info(t: Transport, root: str = "") -> dict[str, Any]:
    """Whether an Edge TPU is attached (usb, pcie) and which libedgetpu package is installed."""
    try:
        done = t.run(["sh", "-c", _EDGETPU_PROBE, "sh", root], 30)
    except TransportError:
        return {"attached": None, "libedgetpu": None}
    values = dict(line.split("=", 1) for line in done.stdout.decode(errors="replace").splitlines() if "=" in line)
    return {"attached": values.get("edgetpu") or None, "libedgetpu": values.get("libedgetpu") or None}


def _free_disk_mb(t: Transport) -> int | None:
    """Free space where edgebench keeps its cache (POSIX df: works on Linux and Android's toybox)."""
    try:
        done = t.run(["df", "-Pk", t.home()], 30)
        return int(done.stdout.decode().splitlines()[-1].split()[3]) // 1024 if done.code == 0 else None
    except (TransportError, IndexError, ValueError):
        return None


def cmd_devices(*, inventory: Path | None = None, devices: str | None = None, trust_new_hosts: bool = False,
                as_json: bool = False, detailed: bool = False, stream: TextIO | None = None) -> int:
    """List (or, detailed, check) every selected device: reachable, host key, Python, runtime, disk, heat."""
    inv = _inventory(inventory)
    selected = inv.select(devices)
    with ThreadPoolExecutor(max(1, len(selected))) as pool:
        infos = list(pool.map(lambda d: probe_device(d, trust_new_hosts), selected))
    if as_json:
        print(json.dumps({"schema_version": 1, "devices": infos}, indent=1), file=_out(stream))
    else:
        rows = []
        for i in infos:
            env = i.get("env") or {}
            rt = i.get("runtime") or {}
            row = [i["name"], i["transport"], i["status"], _fmt(env.get("arch")), _fmt(env.get("python")),
                   f"{rt.get('name')} {rt.get('version')}" if rt else "-"]
            if detailed:
                thermal = i.get("thermal") or {}
                temps = (thermal.get("temperatures_c") or {}).values()
                throttled = thermal.get("throttled")
                tpu = i.get("edgetpu") or {}
                row += [_fmt(i.get("host_key")), _fmt(env.get("numpy")), _fmt(i.get("free_disk_mb")),
                        _fmt(max(temps) if temps else None, 1), hex(throttled) if throttled is not None else "-",
                        f"{tpu.get('attached') or 'none'} (libedgetpu {tpu.get('libedgetpu') or 'missing'})"]
            rows.append(row + [(i.get("error") or "")[:100]])
        header = ["device", "transport", "status", "arch", "python", "runtime"]
        if detailed:
            header += ["host key", "numpy", "free MB", "max temp C", "throttled", "edge tpu"]
        print(table(rows, header + ["error"]), file=_out(stream))
    return ExitCode.OK if all(i["status"] == "ok" for i in infos) else ExitCode.CELL_FAILURES


# Creates a virtual environment on the device and installs numpy + one runtime (from the device's own index).
_SETUP = """set -e
python=$1; venv=$2; shift 2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
"$venv/bin/python" -c 'import numpy; print(numpy.__version__)'
"""
RUNTIME_PACKAGES = {"ai_edge_litert": ["numpy", "ai-edge-litert"], "tflite_runtime": ["numpy<2", "tflite-runtime"]}


def setup_device(device: Device, runtime: str, trust_new_hosts: bool = False) -> dict[str, Any]:
    """Prepare a device: a venv with numpy and the runtime that fits its Python and architecture."""
    probe = probe_device(device, trust_new_hosts)
    env = probe.get("env") or {}
    if not probe["reachable"]:
        return {**probe, "venv": None}
    if runtime == "auto":
        major_minor = tuple(int(x) for x in (env.get("python") or "0.0").split(".")[:2])
        runtime = "ai_edge_litert" if major_minor >= (3, 10) and env.get("arch") in ("x86_64", "aarch64") \
            else "tflite_runtime"
    with make_transport(device, trust_new_hosts=trust_new_hosts) as t:
        venv = t.home().rstrip("/") + "/venv"
        done = t.run(["sh", "-c", _SETUP, "sh", device.python, venv, *RUNTIME_PACKAGES[runtime]], 1800)
    ok = done.code == 0
    return {"name": device.name, "status": "ok" if ok else "setup_failed", "runtime": runtime,
            "venv": f"{venv}/bin/python" if ok else None,
            "error": None if ok else done.stderr.decode(errors="replace").strip()[-400:]}


def cmd_setup(*, inventory: Path | None = None, devices: str | None = None, runtime: str = "auto",
              trust_new_hosts: bool = False, stream: TextIO | None = None) -> int:
    if runtime not in ("auto", *RUNTIME_PACKAGES):
        raise EdgebenchError(f"unknown runtime {runtime!r} (auto, {', '.join(RUNTIME_PACKAGES)})", where="--runtime")
    selected = _inventory(inventory).select(devices)
    with ThreadPoolExecutor(max(1, len(selected))) as pool:
        results = list(pool.map(lambda d: setup_device(d, runtime, trust_new_hosts), selected))
    rows = [[r["name"], r["status"], _fmt(r.get("runtime") if r.get("venv") else None), _fmt(r.get("venv")),
             (r.get("error") or "")[:100]] for r in results]
    print(table(rows, ["device", "status", "runtime", "python to use (ansible_python_interpreter)", "error"]),
          file=_out(stream))
    return ExitCode.OK if all(r["status"] == "ok" for r in results) else ExitCode.CELL_FAILURES


def cmd_purge(*, inventory: Path | None = None, devices: str | None = None, trust_new_hosts: bool = False) -> int:
    for device in _inventory(inventory).select(devices):
        with make_transport(device, trust_new_hosts=trust_new_hosts) as t:
            purge(t)
    return ExitCode.OK


# -- run -----------------------------------------------------------------------
def _variants_for(entry: ModelEntry, stream: TextIO) -> list[ModelVariant]:
    if entry.is_source:
        name = entry.name or entry.path.stem
        out = CONVERTED_DIR / name
        print(f"converting {entry.path} -> {out}", file=stream)
        convert(entry.path, out, variants=parse_variants(entry.variants), calibration=entry.calibration,
                eval_data=entry.eval_data, custom_objects=entry.custom_objects, name=name)
        return from_converted(out, entry.variants)
    return discover(entry.path, entry.variants)


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def cmd_run(suite_path: Path | None = None, *, models: list[Path] | None = None, inventory: Path | None = None,
            devices: str | None = None, runs: int | None = None, warmup: int | None = None,
            min_seconds: float | None = None, threads: int | None = None, repeats: int | None = None,
            label: str | None = None,
            store: Path | None = None, resume: str | None = None, trust_new_hosts: bool = False,
            cell_timeout: float | None = None, quiet: bool = False, stream: TextIO | None = None,
            gate_budgets: Path | None = None, op_profile: bool = False, ship_failed: bool = False) -> int:
    """Benchmark every variant on every selected device; returns the exit code (run id printed)."""
    out = _out(stream)
    if suite_path is None and not models and DEFAULT_SUITE.exists():
        suite_path = DEFAULT_SUITE
    suite = load_suite(suite_path) if suite_path else Suite(path=None)
    entries = [ModelEntry(p) for p in models] if models else suite.models
    if not entries:
        raise EdgebenchError("nothing to run: give a suite file, --models, or put a suite.yaml here")
    inv = _inventory(inventory or suite.inventory)
    selected = inv.select(devices or suite.devices)
    overrides = {"runs": runs, "warmup": warmup, "min_seconds": min_seconds, "threads": threads,
                 "cell_timeout_s": cell_timeout, "repeats": repeats}
    known = {f.name for f in fields(Settings)}
    chosen = {**suite.settings, **{k: v for k, v in overrides.items() if v is not None}}
    settings = Settings(**{k: v for k, v in chosen.items() if k in known}, trust_new_hosts=trust_new_hosts,
                        op_profile=op_profile, ship_failed=ship_failed)
    variants = [mv for entry in entries for mv in _variants_for(entry, out)]

    db = Store(store_path(store))
    if resume:
        run_id = db.resolve(resume)
        done = {(c["device"], c["model"], c["variant"]) for c in db.cells(run_id) if c["status"] == "ok"}
    else:
        run_id = db.create_run(label or suite.label, {
            "settings": settings.describe(), "inventory": str(inv.path) if inv.path else None,
            "suite": str(suite.path) if suite.path else None, "commit": _git_commit(),
            "host": {"hostname": platform.node(), "edgebench": __version__, "python": platform.python_version()},
        })
        done = set()
    plan = [(d, [mv for mv in variants if (d.name, mv.model, mv.variant) not in done]) for d in selected]
    skipped = len(selected) * len(variants) - sum(len(v) for _, v in plan)
    print(f"run {run_id}: {len(selected)} device(s) x {len(variants)} variant(s)"
          + (f", {skipped} cell(s) already measured" if skipped else ""), file=out)
    progress = not quiet and not os.environ.get("CI")

    def on_cell(cell: dict[str, Any]) -> None:
        db.put_cell(run_id, cell)
        if progress:
            p50 = (cell.get("latency_ms") or {}).get("p50")
            print(f"  [{cell['device']}] {cell['model']}/{cell['variant']}: {cell['status']}"
                  + (f" p50 {p50:.3f} ms" if p50 is not None else ""), file=sys.stderr, flush=True)

    def on_device(record: dict[str, Any]) -> None:
        db.put_device(run_id, record["name"], record)

    try:
        measure_all([(d, v) for d, v in plan if v], settings, on_cell, on_device)
    except KeyboardInterrupt:
        print(f"\ninterrupted: measured cells are stored; continue with --resume {run_id}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    db.finish_run(run_id)
    export = db.export_run(run_id)
    print(summary_table(export["results"]), file=out)
    shipped = sum(d.get("bytes_shipped") or 0 for d in export["devices"])
    print(f"shipped {shipped} bytes to {len(export['devices'])} device(s)", file=out)
    print(f"run id: {run_id}", file=out)
    code = ExitCode.OK if all(c["status"] == "ok" for c in export["results"]) else ExitCode.CELL_FAILURES
    budgets = gate_budgets or suite.budgets
    if budgets is not None and cmd_gate(budgets, run=run_id, store=store, stream=out) == ExitCode.BUDGET_BROKEN:
        return ExitCode.BUDGET_BROKEN
    return code


# -- report, export, gate ---------------------------------------------------------
def cmd_report(*, run: str | None = None, baseline: str | None = None, out: Path | None = None,
               store: Path | None = None, stream: TextIO | None = None) -> int:
    from .report import render_index, render_report

    db = Store(store_path(store))
    run_id = db.resolve(run)
    export = db.export_run(run_id)
    base = db.export_run(db.resolve(baseline)) if baseline else None
    path = render_report(export, out or Path("reports") / f"{run_id}.html", baseline=base)
    render_index([db.export_run(r["id"]) for r in db.runs()], path.parent / "index.html")
    print(f"report: {path}", file=_out(stream))
    return ExitCode.OK


def cmd_export(*, run: str | None = None, fmt: str = "json", store: Path | None = None,
               stream: TextIO | None = None) -> int:
    db = Store(store_path(store))
    export = db.export_run(db.resolve(run))
    if fmt == "json":
        data: Any = export
    elif fmt == "pytest-benchmark":
        from .gate import pytest_benchmark_json

        data = pytest_benchmark_json(export)
    else:
        raise EdgebenchError(f"unknown export format {fmt!r} (json, pytest-benchmark)", where="--format")
    json.dump(data, _out(stream), indent=1, allow_nan=False)
    print(file=_out(stream))
    return ExitCode.OK


def cmd_gate(budgets: Path, *, run: str | None = None, baseline: str | None = None, junit: Path | None = None,
             markdown: Path | None = None, allow_missing: bool = False, store: Path | None = None,
             stream: TextIO | None = None) -> int:
    from .gate import evaluate, load_budgets, markdown_summary, text_summary, write_junit

    rules = load_budgets(budgets)
    db = Store(store_path(store))
    export = db.export_run(db.resolve(run))
    base = db.export_run(db.resolve(baseline)) if baseline else None
    result = evaluate(export, rules, base, allow_missing)
    print(text_summary(result), file=_out(stream))
    if junit:
        write_junit(result, junit)
    if markdown:  # appended: $GITHUB_STEP_SUMMARY is shared by every step of a job
        with open(markdown, "a", encoding="utf-8") as fh:
            fh.write(markdown_summary(result) + "\n")
    return int(result.exit_code)


# -- demo ----------------------------------------------------------------------
def cmd_demo(*, workdir: Path = Path(".edgebench") / "demo", report: Path = Path("reports") / "demo.html",
             store: Path | None = None, runs: int | None = None, stream: TextIO | None = None) -> int:
    """The main job on the embedded default: bundled model -> five variants -> local device -> report."""
    out = _out(stream)
    workdir.mkdir(parents=True, exist_ok=True)
    model = workdir / "mobilenet_v2_demo.keras"
    if not model.exists():
        print("building the bundled demo model (MobileNetV2 alpha 0.35, 96x96, seeded weights)", file=out)
        done = subprocess.run([sys.executable, "-m", "harness.demo_model", str(model)], capture_output=True, text=True)
        if done.returncode != 0:
            raise EdgebenchError(f"could not build the demo model: {done.stderr.strip()[-500:]}",
                                 exit_code=ExitCode.HARNESS_ERROR)
    print("converting into fp32, fp16, dynamic, int8, int16x8 (each in its own process)", file=out)
    converted = workdir / "mobilenet_v2_demo"
    cmd_convert(model, out=converted, stream=out)
    code = cmd_run(models=[converted], inventory=None, devices="local", label="demo", store=store, runs=runs,
                   stream=out)
    cmd_report(out=report, store=store, stream=out)
    # Failed variants are expected results here (the report says why), not a failed demo.
    return ExitCode.OK if code in (ExitCode.OK, ExitCode.CELL_FAILURES) else code

