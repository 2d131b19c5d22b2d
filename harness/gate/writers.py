"""The gate's verdicts for people and for CI: JUnit XML, a GitHub step summary in markdown, terminal lines."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html import escape as html_escape
from pathlib import Path
from typing import Any

from ..common.files import atomic_write
from .checks import Verdict, fmt_number
from .evaluate import Evaluation, GateResult

_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: Any) -> str:
    """User text made safe for XML 1.0 (ElementTree escapes <&> but not control characters)."""
    return _XML_ILLEGAL.sub("\ufffd", str(text))


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
                ET.SubElement(parent, "property", {"name": name, "value": fmt_number(value)})
        if ev.verdict is Verdict.FAIL:
            failure = ET.SubElement(case, "failure", {"message": _xml(ev.explanation), "type": "budget"})
            failure.text = _xml("\n".join(r.explanation for r in ev.results if r.verdict is Verdict.FAIL))
        elif ev.verdict is Verdict.WARN:
            ET.SubElement(case, "system-out").text = _xml(f"WARN: {ev.explanation}")
    ET.indent(root)
    atomic_write(path, ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")


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
