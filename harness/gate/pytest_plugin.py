"""pytest plugin: budgets as ordinary asserts on the latest stored run.

    def test_mobilenet_fits_on_pis(edgebench_run):
        assert_budget(edgebench_run, model="mobilenet*", variant="int8", device="pi-*", p90_ms=40)

The store is --edgebench-store, else $EDGEBENCH_STORE, else .edgebench/results.sqlite.
"""

from __future__ import annotations

import warnings
import pytest

from ..common.errors import EdgebenchError
from ..results.record import Export
from ..results.store import Store, store_path
from .budgets import Rule
from .checks import Verdict, make_check
from .evaluate import GateResult, evaluate


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("edgebench").addoption(
        "--edgebench-store", default=None, metavar="PATH|URL",
        help="edgebench results store (default: $EDGEBENCH_STORE or .edgebench/results.sqlite)",
    )


@pytest.fixture(scope="session")
def edgebench_run(pytestconfig: pytest.Config) -> Export:
    """The latest stored run, as the export JSON."""
    try:
        store = Store(store_path(pytestconfig.getoption("edgebench_store")), create=False)
        try:
            return store.export_run(store.resolve("latest"))
        finally:
            store.close()
    except EdgebenchError as exc:
        pytest.fail(str(exc), pytrace=False)


def assert_budget(run: Export, *, model: str | None = None, variant: str | None = None,
                  device: str | None = None, baseline: Export | None = None, allow_missing: bool = False,
                  **bounds: float | str) -> GateResult:
    """Gate `run` on one rule built from keyword bounds (p90_ms=40, cosine=0.99, max_regression="5%", ...).

    Raises AssertionError explaining every FAIL; WARNs become Python warnings.
    """
    if not bounds:
        raise TypeError("assert_budget needs at least one bound, e.g. p90_ms=40")
    checks = tuple(make_check(metric, limit, "assert_budget") for metric, limit in bounds.items())
    result = evaluate(run, [Rule(None, model, variant, device, checks, "assert_budget")], baseline, allow_missing)
    for ev in result.evaluations:
        if ev.verdict is Verdict.WARN:
            warnings.warn(f"edgebench budget: {ev.explanation}", stacklevel=2)
    failed = [ev.explanation for ev in result.evaluations if ev.verdict is Verdict.FAIL]
    if failed:
        raise AssertionError("budget broken: " + "; ".join(failed))
    return result
