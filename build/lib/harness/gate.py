"""The release gate: budgets.yaml parsed into small checks, evaluated on every matching cell of a run.

budgets.yaml (schema_version 1)::

    schema_version: 1
    budgets:
      - name: "mobilenet int8 on pis"   # optional
        model: "mobilenet*"             # glob selectors, all optional; device also matches groups and tags
        variant: int8
        device: "pi-*"
        p90_ms: 40                      # upper bounds: p50_ms p90_ms p99_ms init_ms first_inference_ms
        peak_rss_mb: 120                #               peak_rss_mb model_bytes
        cosine: 0.99                    # lower bounds on the worst output: cosine top1_agreement snr_db
        max_regression: 5%              # p50 against --baseline; a number means percent too

Every rule x matching cell gets a verdict: PASS; WARN when the value passes but cannot be trusted (its
95% CI straddles the bound, the cell is flagged throttled/high_cv/too_few_samples, a regression is
not significant, or data is missing under allow_missing); FAIL otherwise. Missing data FAILs by
default: a release cannot pass on numbers nobody measured.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from html import escape as html_escape
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgebenchError, ExitCode
from .stats import mann_whitney_p
from .yamlfile import YDict, YList, check_keys, load_yaml, where

SCHEMA_VERSION = 1
SIGNIFICANCE = 0.01
SELECTORS = ("model", "variant", "device")
LATENCY_FLAGS = ("throttled", "high_cv")


class Verdict(IntEnum):
    """Ordered so that max() of several verdicts is the worst one."""

    PASS = 0
    WARN = 1
    FAIL = 2


@dataclass(frozen=True)
class Metric:
    label: str  # as printed in explanations ("p90")
    unit: str
    upper: bool  # True: the value must stay <= the limit; False: >= the limit
    quantile: float | None = None  # latency percentile, for its confidence interval
    distrust: tuple[str, ...] = ()  # cell flags that make this number untrustworthy


BOUNDS: dict[str, Metric] = {
    "p50_ms": Metric("p50", "ms", True, 0.5, LATENCY_FLAGS),
    "p90_ms": Metric("p90", "ms", True, 0.9, (*LATENCY_FLAGS, "too_few_samples_p90")),
    "p99_ms": Metric("p99", "ms", True, 0.99, (*LATENCY_FLAGS, "too_few_samples_p99")),
    "init_ms": Metric("init", "ms", True, distrust=("throttled",)),
    "first_inference_ms": Metric("first inference", "ms", True, distrust=("throttled",)),
    "peak_rss_mb": Metric("peak RSS", "MB", True),
    "model_bytes": Metric("model size", "B", True),
    "cosine": Metric("cosine", "", False),
    "top1_agreement": Metric("top-1 agreement", "", False),
    "snr_db": Metric("SNR", "dB", False),
}
REGRESSION = "max_regression"
RULE_KEYS = {"name", *SELECTORS, *BOUNDS, REGRESSION}


def quantile_ci95(samples: Sequence[float], q: float) -> tuple[float, float] | None:
    """Distribution-free 95% CI of the q-quantile from order statistics (binomial, normal approx.).

    The same construction as stats.median_ci95, but None (rather than clamped) when the interval runs
    past the data: 50 samples cannot bound a p99 from above. That needs about MLPerf's 662 samples.
    """
    n = len(samples)
    half = 1.96 * math.sqrt(n * q * (1 - q))
    lo, hi = int(math.floor(n * q - half)), int(math.ceil(n * q + half))
    if lo < 0 or hi > n - 1:
        return None
    s = sorted(samples)
    return (s[lo], s[hi])


def _num(value: float) -> str:
    return f"{value:.6g}" if abs(value) < 1e5 else f"{value:.0f}"


def _with_unit(value: float, unit: str) -> str:
    return f"{_num(value)} {unit}".rstrip()


def cell_label(cell: dict[str, Any]) -> str:
    return f"{cell['device']} {cell['model']} {cell['variant']}"


@dataclass(frozen=True)
class CheckResult:
    """One bound judged on one cell. `text` says what was measured, `note` why it is not a clean PASS."""

    metric: str
    verdict: Verdict
    value: float | None
    limit: float | None
    baseline: float | None
    text: str
    where: str  # the cell ("pi-4b-01 mobilenet int8") or the rule's selectors when no cell matched
    note: str | None = None
    missing: bool = False  # no data: FAIL, or WARN under allow_missing

    @property
    def explanation(self) -> str:
        return f"{self.text} on {self.where}" + (f" ({self.note})" if self.note else "")


class Check(ABC):
    """One parsed bound, like pytest-benchmark's `min:5%`: evaluates a cell and explains itself."""

    metric: str
    limit: float

    def evaluate(self, cell: dict[str, Any], baseline_cell: dict[str, Any] | None = None) -> CheckResult:
        if cell.get("status") != "ok":
            reason = str(cell.get("status")) + (f": {cell['error']}" if cell.get("error") else "")
            return self.missing(cell_label(cell), f"not measured ({reason})")
        result = self._judge(cell, baseline_cell)
        if result.verdict is Verdict.PASS:
            distrusted = sorted(set(self._distrust()) & set(self._flags(cell, baseline_cell)))
            if distrusted:
                return replace(result, verdict=Verdict.WARN, note=f"untrustworthy: {', '.join(distrusted)}")
        return result

    def missing(self, where_: str, why: str) -> CheckResult:
        return CheckResult(self.metric, Verdict.FAIL, None, self.limit, None, f"{self.metric}: {why}", where_,
                           missing=True)

    @abstractmethod
    def describe(self) -> str:
        """The bound as a reader would write it: 'p90 <= 40 ms'."""

    @abstractmethod
    def _judge(self, cell: dict[str, Any], baseline_cell: dict[str, Any] | None) -> CheckResult: ...

    @abstractmethod
    def _distrust(self) -> tuple[str, ...]: ...

    def _flags(self, cell: dict[str, Any], baseline_cell: dict[str, Any] | None) -> list[str]:
        return list(cell.get("flags") or [])


class Bound(Check):
    def __init__(self, metric: str, limit: float):
        self.metric, self.limit, self.spec = metric, limit, BOUNDS[metric]

    def describe(self) -> str:
        return f"{self.spec.label} {'<=' if self.spec.upper else '>='} {_with_unit(self.limit, self.spec.unit)}"

    def _distrust(self) -> tuple[str, ...]:
        return self.spec.distrust

    def _read(self, cell: dict[str, Any]) -> tuple[float | None, str | None]:
        """The cell's value for this metric, and which output it came from (accuracy: the worst one)."""
        if self.spec.quantile is not None:
            return (cell.get("latency_ms") or {}).get(self.spec.label), None
        if self.metric in ("cosine", "top1_agreement", "snr_db"):
            per_output = [(m.get(self.metric), name) for name, m in (cell.get("accuracy") or {}).items()
                          if isinstance(m, dict) and m.get(self.metric) is not None]
            return min(per_output) if per_output else (None, None)
        return cell.get(self.metric), None

    def _ci(self, cell: dict[str, Any]) -> tuple[float, float] | None:
        latency = cell.get("latency_ms") or {}
        if self.spec.quantile == 0.5:
            ci = latency.get("p50_ci95")
            return (ci[0], ci[1]) if ci else None
        if self.spec.quantile is not None:
            return quantile_ci95(latency.get("samples") or [], self.spec.quantile)
        return None

    def _judge(self, cell: dict[str, Any], baseline_cell: dict[str, Any] | None) -> CheckResult:
        value, output = self._read(cell)
        label = cell_label(cell)
        if value is None:
            return self.missing(label, "not measured")
        spec = self.spec
        ok = value <= self.limit if spec.upper else value >= self.limit
        op = ("<=" if ok else ">") if spec.upper else (">=" if ok else "<")
        text = f"{spec.label} {_with_unit(value, spec.unit)} {op} {_with_unit(self.limit, spec.unit)}"
        if output is not None:
            text += f" (output {output!r})"
        if not ok:
            return CheckResult(self.metric, Verdict.FAIL, value, self.limit, None, text, label)
        ci = self._ci(cell)
        if ci is not None and ci[0] <= self.limit < ci[1]:
            note = f"its 95% CI [{_num(ci[0])}, {_num(ci[1])}] {spec.unit} straddles the bound"
            return CheckResult(self.metric, Verdict.WARN, value, self.limit, None, text, label, note)
        return CheckResult(self.metric, Verdict.PASS, value, self.limit, None, text, label)


class Regression(Check):
    """p50 slower than the baseline cell by more than `limit` percent, significant and beyond the noise."""

    metric = REGRESSION

    def __init__(self, percent: float):
        self.limit = percent

    def describe(self) -> str:
        return f"p50 regression <= {_num(self.limit)}%"

    def missing(self, where_: str, why: str) -> CheckResult:
        # Results carry the allowed p50 in ms, which needs a baseline; a bare percentage would mix units.
        return replace(super().missing(where_, why), limit=None)

    def _distrust(self) -> tuple[str, ...]:
        return LATENCY_FLAGS

    def _flags(self, cell: dict[str, Any], baseline_cell: dict[str, Any] | None) -> list[str]:
        # A throttled baseline makes the comparison as doubtful as a throttled run.
        return [*(cell.get("flags") or []), *((baseline_cell or {}).get("flags") or [])]

    def _judge(self, cell: dict[str, Any], baseline_cell: dict[str, Any] | None) -> CheckResult:
        label = cell_label(cell)
        new = cell.get("latency_ms") or {}
        if not new.get("samples"):
            return self.missing(label, "no latency samples")
        old = (baseline_cell or {}).get("latency_ms") or {}
        if baseline_cell is None or baseline_cell.get("status") != "ok" or not old.get("samples"):
            # Nothing to regress from (a new cell, or one the baseline failed to measure): not this run's gap.
            why = "no baseline cell" if baseline_cell is None else f"baseline cell is {baseline_cell.get('status')}"
            return CheckResult(self.metric, Verdict.WARN, new["p50"], None, None, f"p50 {_num(new['p50'])} ms",
                               label, f"{why}: regression not checked")
        change = (new["p50"] / old["p50"] - 1) * 100 if old["p50"] else math.inf
        limit_ms = old["p50"] * (1 + self.limit / 100)
        text = (f"p50 {_num(new['p50'])} ms vs baseline {_num(old['p50'])} ms: {change:+.1f}% "
                f"{'<=' if change <= self.limit else '>'} {_num(self.limit)}%")
        result = CheckResult(self.metric, Verdict.PASS, new["p50"], limit_ms, old["p50"], text, label)
        if change <= self.limit:
            return result
        p = mann_whitney_p(old["samples"], new["samples"])
        noise = max(_relative_halfwidth(new), _relative_halfwidth(old))
        if p is None or p >= SIGNIFICANCE:
            note = "not significant, " + ("too few samples" if p is None else f"Mann-Whitney p={p:.2g}")
            return replace(result, verdict=Verdict.WARN, note=note)
        if change <= noise:
            return replace(result, verdict=Verdict.WARN, note=f"within the runs' own noise of {noise:.1f}%")
        return replace(result, verdict=Verdict.FAIL, note=f"Mann-Whitney p={p:.2g}")


def _relative_halfwidth(latency: dict[str, Any]) -> float:
    """Half the width of the p50's 95% CI, in percent of the p50: the measurement's own noise."""
    ci = latency.get("p50_ci95")
    return (ci[1] - ci[0]) / 2 / latency["p50"] * 100 if ci and latency.get("p50") else 0.0


def make_check(metric: str, value: Any, where_: str) -> Check:
    """Parse one bound from budgets.yaml (or assert_budget); errors name `where_`."""
    if metric == REGRESSION:
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                value = float(value.strip()[:-1])
            except ValueError:
                raise EdgebenchError(f"{metric} must be a percentage like '5%', not {value!r}", where=where_) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise EdgebenchError(f"{metric} must be a non-negative percentage like '5%', not {value!r}", where=where_)
        return Regression(float(value))
    if metric not in BOUNDS:
        raise EdgebenchError(f"unknown metric {metric!r} (known: {', '.join([*BOUNDS, REGRESSION])})", where=where_)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EdgebenchError(f"{metric} must be a number, not {value!r}", where=where_)
    if BOUNDS[metric].upper and value < 0:
        raise EdgebenchError(f"{metric} must not be negative", where=where_)
    return Bound(metric, float(value))


@dataclass(frozen=True)
class Rule:
    name: str | None
    model: str | None
    variant: str | None
    device: str | None
    checks: tuple[Check, ...]
    where: str  # file:line of the rule, for messages

    @property
    def selectors(self) -> str:
        parts = [f"{key}={getattr(self, key)}" for key in SELECTORS if getattr(self, key) is not None]
        return " ".join(parts) or "all cells"

    @property
    def label(self) -> str:
        return self.name or self.selectors

    def matches(self, cell: dict[str, Any], device_labels: dict[str, set[str]]) -> bool:
        """Globs on model and variant; device matches the device's name, or any of its groups or tags."""
        if self.model is not None and not fnmatch.fnmatchcase(cell["model"], self.model):
            return False
        if self.variant is not None and not fnmatch.fnmatchcase(cell["variant"], self.variant):
            return False
        if self.device is None:
            return True
        names = {cell["device"], *device_labels.get(cell["device"], set())}
        return any(fnmatch.fnmatchcase(name, self.device) for name in names)


def load_budgets(path: Path) -> list[Rule]:
    doc = load_yaml(path)
    check_keys(path, doc, {"schema_version", "budgets"}, "budgets file", required={"budgets"})
    version = doc.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise EdgebenchError(
            f"budgets schema_version {version!r} is not supported (this edgebench reads {SCHEMA_VERSION}): "
            "upgrade edgebench or rewrite the file for version 1",
            where=where(path, doc, "schema_version"),
        )
    budgets = doc["budgets"]
    if not isinstance(budgets, YList) or not budgets:
        raise EdgebenchError("budgets must be a non-empty list of rules", where=where(path, doc, "budgets"))
    rules = []
    for i, entry in enumerate(budgets):
        what = f"budget rule #{i + 1}"
        if not isinstance(entry, YDict):
            raise EdgebenchError(f"{what} must be a mapping, not {type(entry).__name__}",
                                 where=f"{path}:{budgets.item_lines[i]}")
        check_keys(path, entry, RULE_KEYS, what)
        strings: dict[str, str | None] = {}
        for key in ("name", *SELECTORS):
            value = entry.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise EdgebenchError(f"{key} must be a non-empty string (quote it), not {value!r}",
                                     where=where(path, entry, key))
            strings[key] = value
        checks = tuple(make_check(str(key), entry[key], where(path, entry, str(key)))
                       for key in entry if key not in ("name", *SELECTORS))
        if not checks:
            raise EdgebenchError(f"{what} has no bound (one of: {', '.join([*BOUNDS, REGRESSION])})",
                                 where=where(path, entry))
        rules.append(Rule(strings["name"], strings["model"], strings["variant"], strings["device"], checks,
                          where(path, entry)))
    return rules


@dataclass(frozen=True)
class Evaluation:
    """One rule on one cell (cell None: the rule matched no cell)."""

    rule: Rule
    cell: tuple[str, str, str] | None  # (device, model, variant)
    results: tuple[CheckResult, ...]

    @property
    def verdict(self) -> Verdict:
        return max(r.verdict for r in self.results)

    @property
    def name(self) -> str:
        return "/".join(self.cell) if self.cell else "no cell matched"

    @property
    def explanation(self) -> str:
        """The reasons behind the verdict (all of them when it is a PASS)."""
        return "; ".join(r.explanation for r in self.results if r.verdict == self.verdict)


@dataclass(frozen=True)
class GateResult:
    run_id: str | None
    baseline_id: str | None
    evaluations: tuple[Evaluation, ...]

    @property
    def counts(self) -> dict[Verdict, int]:
        return {v: sum(e.verdict == v for e in self.evaluations) for v in Verdict}

    @property
    def verdict(self) -> Verdict:
        return max((e.verdict for e in self.evaluations), default=Verdict.PASS)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.BUDGET_BROKEN if self.verdict is Verdict.FAIL else ExitCode.OK

    def worst_first(self) -> list[Evaluation]:
        return sorted(self.evaluations, key=lambda e: -e.verdict)


def evaluate(export: dict[str, Any], rules: Sequence[Rule], baseline: dict[str, Any] | None = None,
             allow_missing: bool = False) -> GateResult:
    """Judge every rule on every cell it selects; `baseline` is another run's export (for max_regression)."""
    labels = {d["name"]: {*(d.get("groups") or []), *(d.get("tags") or [])} for d in export.get("devices") or []}
    base_cells = {(c["device"], c["model"], c["variant"]): c for c in (baseline or {}).get("results") or []}
    evaluations = []
    for rule in rules:
        if baseline is None and any(isinstance(c, Regression) for c in rule.checks):
            raise EdgebenchError("max_regression needs a baseline run: pass --baseline ID or LABEL", where=rule.where)
        cells = [c for c in export.get("results") or [] if rule.matches(c, labels)]
        if not cells:
            results = tuple(c.missing(rule.selectors, "no cell matched") for c in rule.checks)
            evaluations.append(Evaluation(rule, None, _allow(results, allow_missing)))
        for cell in cells:
            key = (cell["device"], cell["model"], cell["variant"])
            results = tuple(c.evaluate(cell, base_cells.get(key)) for c in rule.checks)
            evaluations.append(Evaluation(rule, key, _allow(results, allow_missing)))
    return GateResult((export.get("run") or {}).get("id"), ((baseline or {}).get("run") or {}).get("id"),
                      tuple(evaluations))


def _allow(results: tuple[CheckResult, ...], allow_missing: bool) -> tuple[CheckResult, ...]:
    if not allow_missing:
        return results
    return tuple(replace(r, verdict=Verdict.WARN, note="allowed missing") if r.missing else r for r in results)


# -- outputs -------------------------------------------------------------------
_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: Any) -> str:
    """User text made safe for XML 1.0 (ElementTree escapes <&> but not control characters)."""
    return _XML_ILLEGAL.sub("\ufffd", str(text))


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_junit(result: GateResult, path: Path) -> None:
    """JUnit XML: one testcase per rule x cell; FAIL is a failure, WARN a passing case with a note."""
    counts = result.counts
    totals = {"tests": str(len(result.evaluations)), "failures": str(counts[Verdict.FAIL]), "errors": "0",
              "skipped": "0", "time": "0"}
    root = ET.Element("testsuites", {"name": "edgebench gate", **totals})
    suite = ET.SubElement(root, "testsuite", {"name": _xml(f"edgebench gate {result.run_id or ''}".strip()), **totals})
    for ev in result.evaluations:
        case = ET.SubElement(suite, "testcase", {"classname": _xml(ev.rule.label), "name": _xml(ev.name), "time": "0"})
        props = [(f"{r.metric}.{field}", getattr(r, field))
                 for r in ev.results for field in ("value", "limit", "baseline") if getattr(r, field) is not None]
        if props:  # the JUnit schema wants at least one property inside <properties>
            parent = ET.SubElement(case, "properties")
            for name, value in props:
                ET.SubElement(parent, "property", {"name": name, "value": _num(value)})
        if ev.verdict is Verdict.FAIL:
            failure = ET.SubElement(case, "failure", {"message": _xml(ev.explanation), "type": "budget"})
            failure.text = _xml("\n".join(r.explanation for r in ev.results if r.verdict is Verdict.FAIL))
        elif ev.verdict is Verdict.WARN:
            ET.SubElement(case, "system-out").text = _xml(f"WARN: {ev.explanation}")
    ET.indent(root)
    _write_atomic(path, ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")
ICONS = {Verdict.PASS: "✅ PASS", Verdict.WARN: "⚠️ WARN", Verdict.FAIL: "❌ FAIL"}


def _md(text: Any) -> str:
    """User text inert in a GitHub markdown table cell: no HTML, no markup, no column breaks."""
    return _MD_SPECIAL.sub(r"\\\1", html_escape(" ".join(str(text).split()), quote=False))


def markdown_summary(result: GateResult) -> str:
    """For $GITHUB_STEP_SUMMARY: verdict counts, then FAIL and WARN rows; PASS rows folded away."""
    counts = result.counts
    against = f" against baseline `{_md(result.baseline_id)}`" if result.baseline_id else ""
    lines = [
        f"## edgebench gate: {ICONS[result.verdict]}",
        "",
        f"**{counts[Verdict.FAIL]} failed, {counts[Verdict.WARN]} warned, {counts[Verdict.PASS]} passed** "
        f"— run `{_md(result.run_id or '?')}`{against}",
        "",
    ]
    header = ["| Verdict | Rule | Device | Model | Variant | Details |", "|---|---|---|---|---|---|"]

    def row(ev: Evaluation) -> str:
        device, model, variant = ev.cell or ("—", "—", "—")
        details = "; ".join(r.text + (f" ({r.note})" if r.note else "") for r in ev.results if r.verdict == ev.verdict)
        cells = [ICONS[ev.verdict], _md(ev.rule.label), _md(device), _md(model), _md(variant), _md(details)]
        return "| " + " | ".join(cells) + " |"

    flagged = [ev for ev in result.worst_first() if ev.verdict is not Verdict.PASS]
    passed = [ev for ev in result.evaluations if ev.verdict is Verdict.PASS]
    if flagged:
        lines += [*header, *map(row, flagged), ""]
    if passed:
        lines += [f"<details><summary>{len(passed)} passed</summary>", "", *header, *map(row, passed), "",
                  "</details>", ""]
    return "\n".join(lines)


def text_summary(result: GateResult) -> str:
    """For the terminal: one line per FAIL and WARN, then the counts."""
    lines = [f"{ev.verdict.name}  {ev.rule.label}: {ev.explanation}"
             for ev in result.worst_first() if ev.verdict is not Verdict.PASS]
    counts = result.counts
    lines.append(f"gate {result.verdict.name}: {counts[Verdict.FAIL]} failed, {counts[Verdict.WARN]} warned, "
                 f"{counts[Verdict.PASS]} passed")
    return "\n".join(lines)


def _pb_stats(samples_ms: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's Stats.as_dict() (plus data), in its unit: seconds."""
    data = np.asarray(samples_ms, dtype=np.float64) / 1000.0
    mean, std = float(data.mean()), float(data.std(ddof=1)) if data.size > 1 else 0.0
    q1, median, q3 = (float(x) for x in np.percentile(data, [25, 50, 75]))
    iqr = q3 - q1
    inside = data[(data >= q1 - 1.5 * iqr) & (data <= q3 + 1.5 * iqr)]
    iqr_outliers = int(data.size - inside.size)
    stddev_outliers = int(((data < mean - std) | (data > mean + std)).sum())
    total = float(data.sum())
    return {
        "min": float(data.min()), "max": float(data.max()), "mean": mean, "stddev": std, "rounds": int(data.size),
        "median": median, "iqr": iqr, "q1": q1, "q3": q3, "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers, "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": float(inside.min()), "hd15iqr": float(inside.max()), "ops": data.size / total if total else 0.0,
        "total": total, "data": data.tolist(), "iterations": 1,
    }


def pytest_benchmark_json(export: dict[str, Any]) -> dict[str, Any]:
    """The run in pytest-benchmark's JSON format (`pytest-benchmark compare` reads it); measured cells only.

    One benchmark per cell: group = model, fullname = device::model::variant (stable across runs, so
    compare can match them). Device environments and edgebench's own numbers go into extra_info.
    """
    run = export.get("run") or {}
    host = run.get("host") or {}
    settings = run.get("settings") or {}
    envs = {d["name"]: d.get("env") for d in export.get("devices") or []}
    benchmarks = []
    for cell in export.get("results") or []:
        latency = cell.get("latency_ms") or {}
        if cell.get("status") != "ok" or not latency.get("samples"):
            continue
        device, model, variant = cell["device"], cell["model"], cell["variant"]
        benchmarks.append({
            "group": model,
            "name": f"{model}[{device}-{variant}]",
            "fullname": f"{device}::{model}::{variant}",
            "params": {"device": device, "variant": variant},
            "param": f"{device}-{variant}",
            "extra_info": {
                "device": device, "model": model, "variant": variant, "runtime": cell.get("runtime"),
                "threads": cell.get("threads"), "p90_ms": latency.get("p90"), "p99_ms": latency.get("p99"),
                "init_ms": cell.get("init_ms"), "peak_rss_mb": cell.get("peak_rss_mb"),
                "model_bytes": cell.get("model_bytes"), "flags": cell.get("flags") or [], "env": envs.get(device),
            },
            "options": {"min_rounds": settings.get("runs"), "min_time": settings.get("min_seconds"),
                        "max_time": None, "warmup": settings.get("warmup"), "timer": "perf_counter_ns",
                        "disable_gc": False},
            "stats": _pb_stats(latency["samples"]),
        })
    return {
        "machine_info": {"node": host.get("hostname"), "edgebench": host.get("edgebench"),
                         "devices": envs},
        "commit_info": {"id": run.get("commit") or "unknown", "time": None, "author_time": None, "dirty": None,
                        "project": None, "branch": None},
        "benchmarks": benchmarks,
        "datetime": run.get("finished_at") or run.get("started_at"),
        "version": f"edgebench-{host.get('edgebench') or 'unknown'}",
    }
