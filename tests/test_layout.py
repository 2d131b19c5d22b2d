"""The house keeps its design: one folder per stage, imports pointing one way, small modules and functions.

The data path is configuration -> conversion -> fleet -> gate / report; the record that flows along it
(results: the cell, its statistics, the store) is shared by every stage and depends on none of them.
A stage imports only the stages before it, the record and common helpers; only the commands and the CLI
see everything. The device agent imports nothing of the host.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "harness"
BASE = {"common", "results"}
ALLOWED = {
    "common": {"common"},
    "results": {"common", "results"},
    "config": BASE | {"config"},
    "conversion": BASE | {"config", "conversion"},
    "fleet": BASE | {"config", "conversion", "fleet"},
    "gate": BASE | {"config", "gate"},
    "report": BASE | {"gate", "report"},
    "doctor": BASE | {"config", "conversion", "gate", "report", "doctor"},  # beside the commands: uses the stages
}
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else "top"


def _imports(path: Path, package: str) -> list[str]:
    """Absolute names of every module the file imports (relative imports resolved)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                names.append(node.module)
    return names


def _module_name(path: Path) -> tuple[str, str]:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    package = ".".join(parts[:-1]) if parts[-1] != "__init__" else ".".join(parts)
    return ".".join(p for p in parts if p != "__init__"), package


@pytest.mark.parametrize("path", _modules(HARNESS), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_stage_imports_only_the_stages_before_it(path: Path) -> None:
    module, package = _module_name(path)
    stage = _stage(module)
    if stage not in ALLOWED:
        return  # the commands and the CLI wire every stage together
    wrong = [name for name in _imports(path, package)
             if name.startswith("harness.") and _stage(name) not in ALLOWED[stage]]
    assert not wrong, f"{module} ({stage}) imports {wrong}; {stage} may import {sorted(ALLOWED[stage])}"


def test_the_device_agent_never_imports_the_host() -> None:
    for path in _modules(ROOT / "device_agent"):
        module, package = _module_name(path)
        assert not [n for n in _imports(path, package) if n.split(".")[0] == "harness"], module


def test_the_top_of_harness_holds_only_the_cli_and_the_package() -> None:
    assert sorted(p.name for p in HARNESS.glob("*.py")) == ["__init__.py", "__main__.py", "cli.py"]


@pytest.mark.parametrize("path", _modules(HARNESS), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path: Path) -> None:
    lines = path.read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)}: {lines} lines"
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.relative_to(ROOT)}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_tests_and_benchmarks_import_their_support_as_a_package() -> None:
    for path in [*_modules(ROOT / "tests"), *_modules(ROOT / "benchmarks")]:
        if path == Path(__file__).resolve():
            continue
        text = path.read_text()
        assert "sys.path.insert" not in text and "from conftest import" not in text, path
