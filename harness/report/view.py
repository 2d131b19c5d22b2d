"""The report's view model: what each row, device card and plot shows, computed from the export."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from markupsafe import Markup

from ..results.comparison import comparable, compare
from ..results.noise import NoiseFloor
from ..results.record import Cell, Export, Status, Thermal, p50
from ..results.stats import MIN_SAMPLES, THROTTLE_NOW_MASK
from .complete import complete_device
from .format import g4, hexval, num, pct, short, size, sort_key
from .plots import tradeoff_svg
from .recommend import DOCTOR_VARIANTS, Recommendation, acc_min, accuracy_failure, cell_accuracy


@dataclass(frozen=True)
class Delta:
    kind: str  # slower | faster | same | undecided | untested | new | regressed | fixed
    text: str
    detail: str = ""
    pct: float | None = None
    ci95: tuple[float, float] | None = None  # of the ratio new/old

    @property
    def significant(self) -> bool:
        return self.kind in ("slower", "faster")


def baseline_delta(cell: Cell, base: Cell | None, *, paired: bool = False, floor_sigma: float | None = None) -> Delta:
    """The cell against its baseline cell, as results.comparison decides it (the gate's definition too)."""
    if base is None:
        return Delta("new", "new in this run")
    ok, base_ok = cell.get("status") == Status.OK, base.get("status") == Status.OK
    if base_ok and not ok:
        return Delta("regressed", "fails now; ok in baseline")
    if not ok:
        return Delta("untested", f"failed in both ({base.get('status')} in baseline)")
    if not base_ok:
        return Delta("fixed", f"ok now; {base.get('status')} in baseline")
    change = compare(cell, base, paired=paired, floor_sigma=floor_sigma)
    if change is None:
        return Delta("untested", "no latency to compare")
    ratio = f"×{change.ratio:.3f}"
    ci = f" [{change.ci95[0]:.3f}, {change.ci95[1]:.3f}]" if change.ci95 else ""
    how = f"{change.repeats[0]} vs {change.repeats[1]} repeats, {'side by side' if paired else 'stored run'}"
    if change.single and not change.changed:
        return Delta("undecided", f"{ratio}: one repeat cannot tell", f"{pct(change.pct)}{ci}; {how}", change.pct,
                     change.ci95)
    if change.changed:
        slower = change.pct > 0
        return Delta("slower" if slower else "faster", f"{ratio}{ci} {'slower' if slower else 'faster'}",
                     f"{pct(change.pct)}; {how}", change.pct, change.ci95)
    return Delta("same", f"{ratio}{ci}", f"no change beyond the noise; {how}", change.pct, change.ci95)


# flag -> (column it marks, message); the too-few-samples ones are common and mild: dimmed, not highlighted.
FLAG_TEXT = {
    "throttled": ("p50", "device throttled during the run (before {tb}, after {ta}): cool it down or pin the governor"),
    "uncertain_p50": ("p50", "uncertain: the p50's 95% CI is wider than ±5% ({ci}); use more --repeats, close "
                             "other work or pin the governor"),
    "too_few_samples_p90": ("p90", "p90 from {n} samples: needs ≥{p90} to mean anything (--runs)"),
    "too_few_samples_p99": ("p99", "p99 from {n} samples: needs ≥{p99} to mean anything (--runs)"),
    "random_calibration": ("cosine", "int8 calibrated on random data: accuracy here says little; "
                                     "give representative calibration data"),
    "same_as_fp32": ("variant", "quantization left the weights float: effectively the fp32 model"),
    "cpu_fallback": ("delegate", "some ops fell back to the CPU (not delegated): see the cell's delegate coverage"),
    "not_delegated": ("delegate", "nothing was delegated: the whole graph ran on the runtime's reference kernels"),
}


MILD_FLAGS = {"too_few_samples_p90", "too_few_samples_p99"}


class Td(NamedTuple):
    text: str
    v: str | None = None  # sort key when it differs from the text ("" = missing: sorts last)
    warn: str | None = None  # validity warning shown in place
    sub: str | None = None  # second line (CI of the median)
    mild: bool = False  # only mild warnings: dim the value instead of highlighting it


def flag_message(flag: str, cell: Cell) -> str:
    lat: Any = cell.get("latency_ms") or {}
    ci = lat.get("p50_ci95")
    return FLAG_TEXT[flag][1].format(
        tb=hexval((cell.get("thermal_before") or {}).get("throttled")),
        ta=hexval((cell.get("thermal_after") or {}).get("throttled")),
        ci=f"{num(ci[0])}–{num(ci[1])} ms" if ci else "?", n=lat.get("count"), **MIN_SAMPLES)


def predicted_compatibility(cells: list[Cell], variants: list[str]) -> list[dict[str, Any]]:
    """Per runtime a device may have, whether each variant loads there, read from the converted files' ops."""
    by_runtime: dict[str, dict[str, Any]] = {}
    for cell in cells:
        diagnostics = (cell.get("conversion") or {}).get("diagnostics") or {}
        for runtime, verdict in (diagnostics.get("compatibility") or {}).items():
            by_runtime.setdefault(runtime, {})[cell["variant"]] = verdict
    return [{"runtime": rt, "verdicts": [found.get(v) for v in variants]} for rt, found in sorted(by_runtime.items())]


def num_td(v: float | None, unit: str = "") -> Td:
    return Td(num(v, unit), sort_key(v))


def row(cell: Cell, box: Markup | None, delta: Delta | None, rec: Recommendation | None,
        bar: Mapping[str, float]) -> dict[str, Any]:
    """One matrix row: every column's text, sort key, and the trust warnings shown in place."""
    lat: Any = cell.get("latency_ms") or {}
    flags = list(cell.get("flags") or ())
    warns: dict[str, list[str]] = {}
    mild: dict[str, bool] = {}
    for flag in flags:
        if flag in FLAG_TEXT:
            col = FLAG_TEXT[flag][0]
            warns.setdefault(col, []).append(flag_message(flag, cell))
            mild[col] = mild.get(col, True) and flag in MILD_FLAGS
    accuracy, source = cell_accuracy(cell)
    below = accuracy_failure(accuracy, bar) if accuracy else None
    if below:
        warns.setdefault("cosine", []).append(below)
        mild["cosine"] = False
    cos, snr, top1 = (acc_min(accuracy, k) for k in ("cosine", "snr_db", "top1_agreement"))
    ci = lat.get("p50_ci95")
    deleg: Any = cell.get("delegate") or {}
    cov = deleg.get("coverage") or {}
    deleg_text = "—" if not deleg else (f"{deleg.get('name')} {cov.get('partitions')}p/{cov.get('cpu_ops')}cpu"
                                        if cov else str(deleg.get("name")))
    mean = lat.get("mean")
    tds = {
        "device": Td(cell["device"]), "model": Td(cell["model"]), "variant": Td(cell["variant"]),
        "p50": Td(num(lat.get("p50")), sort_key(lat.get("p50")),
                  sub=f"{num(ci[0])}–{num(ci[1])}" if ci else None),
        "p90": num_td(lat.get("p90")), "p99": num_td(lat.get("p99")),
        "mean": Td("—" if mean is None else f"{num(mean)} ± {num(lat.get('std'))}",
                   sort_key(mean)),
        "init": num_td(cell.get("init_ms")), "first": num_td(cell.get("first_inference_ms")),
        "rss": num_td(cell.get("peak_rss_mb")), "size": Td(size(cell.get("model_bytes")),
                                                           str(cell.get("model_bytes") or "")),
        "cosine": Td("—" if cos is None else f"{cos:.4f}" + ("*" if source == "conversion" else ""),
                     sort_key(cos)),
        "snr": num_td(snr, " dB"),
        "top1": Td("—" if top1 is None else f"{top1:.1%}", sort_key(top1)),
        "delegate": Td(deleg_text),
    }
    for col, messages in warns.items():
        tds[col] = tds[col]._replace(warn="\n".join(messages), mild=mild[col])
    if delta is not None:
        tds["delta"] = Td(delta.text, sort_key(delta.pct), sub=delta.detail or None)
    ok = cell.get("status") == Status.OK
    verdict = next((c for c in rec.candidates if c.variant == cell["variant"]), None) if rec else None
    return {
        "cell": cell, "tds": tds, "box": box, "ok": ok, "flags": flags, "delta": delta, "verdict": verdict,
        "flag_titles": {f: flag_message(f, cell) if f in FLAG_TEXT else f for f in flags},
        "error": short(cell.get("error"), 300), "stderr": cell.get("stderr_tail"),
    }


def device_views(export: Export, floors: Mapping[str, NoiseFloor] | None = None) -> list[dict[str, Any]]:
    """A card per device: environment, runtime, delegates, thermal state before and after its cells, and its
    run-to-run noise floor learnt from history."""
    cells_by_device: dict[str, list[Cell]] = {}
    for cell in export.get("results") or ():
        cells_by_device.setdefault(cell["device"], []).append(cell)
    devices: dict[str, Any] = {d["name"]: d for d in export.get("devices") or ()}
    for name in cells_by_device:
        devices.setdefault(name, complete_device({"name": name}))  # cells of a device with no record
    views = []
    for i, (name, dev) in enumerate(devices.items()):
        cells = sorted(cells_by_device.get(name, []), key=lambda c: c.get("measured_at") or "")
        before = next((c["thermal_before"] for c in cells if c.get("thermal_before")), None)
        after = next((c["thermal_after"] for c in reversed(cells) if c.get("thermal_after")), None)
        env = dev.get("env") or {}
        runtime: Any = env.get("runtime") or next((c["runtime"] for c in cells if c.get("runtime")), None) or {}
        delegates = sorted({str(d.get("name")) for c in cells if (d := c.get("delegate"))})
        temps = [t for c in cells for state in (c.get("thermal_before"), c.get("thermal_after"))
                 for t in ((state or {}).get("temperatures_c") or {}).values()]
        throttled = [f"{c['model']} {c['variant']}" for c in cells if "throttled" in (c.get("flags") or ())]
        views.append({
            "id": f"dev-{i}", "name": name, "dev": dev, "env": env,
            "runtime": " ".join(str(v) for v in (runtime.get("name"), runtime.get("version")) if v) or "—",
            "delegates": ", ".join(delegates) or "none (CPU)",
            "thermal": [("before", thermal_view(before)), ("after", thermal_view(after))],
            "peak_temp": f"{max(temps):.1f} °C" if temps else "—",
            "throttled": throttled,
            "floor": (floors or {}).get(name),
        })
    return views


def thermal_view(state: Thermal | None) -> dict[str, Any]:
    state = state or {}
    temps = state.get("temperatures_c") or {}
    throttled = state.get("throttled")
    return {
        "temp": f"{max(temps.values()):.1f} °C" if temps else "—",
        "zones": ", ".join(f"{k} {v:.1f} °C" for k, v in temps.items()),
        "throttled": hexval(throttled),
        "bad": isinstance(throttled, int) and bool(throttled & THROTTLE_NOW_MASK),
    }


def tradeoffs(cells: list[Cell]) -> dict[str, Any]:
    """Speed against size and against accuracy, for one device and model, with the Pareto front."""
    ok = [c for c in cells if comparable(c)]
    sized = [(c["variant"], p50(c) or 0.0, (c.get("model_bytes") or 0) / 1e6) for c in ok if c.get("model_bytes")]
    accurate = [(c["variant"], p50(c) or 0.0, v) for c in ok
                if (v := acc_min(cell_accuracy(c)[0], "cosine")) is not None]
    return {
        "size": tradeoff_svg(sized, "size (MB)", maximize_y=False) if sized else None,
        "accuracy": tradeoff_svg(accurate, "min cosine vs fp32", maximize_y=True, y_fmt=g4) if accurate else None,
        "missing": [f"{c['variant']} ({c.get('status')})" for c in cells if not any(c is o for o in ok)],
        "unmeasured": [c["variant"] for c in ok if acc_min(cell_accuracy(c)[0], "cosine") is None],
    }


def lean_cell(cell: Cell, box: Mapping[str, float] | None, delta: Delta | None) -> dict[str, Any]:
    """The cell as embedded: without raw samples, with the box-plot quantiles and the baseline delta."""
    out: dict[str, Any] = dict(cell)
    latency = cell.get("latency_ms")
    if latency:
        out["latency_ms"] = {k: v for k, v in latency.items() if k != "samples"}
    sustained = cell.get("sustained")
    if sustained:  # per-sample times are as large as the samples: the timeline and telemetry stay
        out["sustained"] = {k: v for k, v in sustained.items() if k != "sample_t_ms"}
    out["box_ms"] = box
    out["baseline"] = asdict(delta) if delta else None
    return out


def _doctor_page(cell: Cell) -> Path | None:
    """The doctor's page for the cell's model, when the doctor converted it (the manifest names the page) and
    the page is on this machine. The manifest is untrusted: only an absolute path to a doctor.html counts."""
    page = (cell.get("conversion") or {}).get("doctor")
    if not isinstance(page, str) or not page.endswith("/doctor.html") or not os.path.isabs(page):
        return None
    return Path(page) if Path(page).is_file() else None


def doctor_hint(cells: list[Cell], bar: Mapping[str, float], report_dir: Path) -> dict[str, Any] | None:
    """For a model whose quantized variants miss the accuracy bar: which, and the link to the doctor's
    diagnosis (relative to the report, quoted so no path can become a URL scheme), or the command to get one."""
    failed = sorted({str(c["variant"]) for c in cells if c["variant"] in DOCTOR_VARIANTS
                     and (acc := cell_accuracy(c)[0]) and accuracy_failure(acc, bar)})
    if not failed:
        return None
    page = next((p for c in cells if (p := _doctor_page(c)) is not None), None)
    href = quote(os.path.relpath(page, report_dir.resolve())) if page else None
    return {"variants": failed, "href": href}
