"""The release gate: budgets parsed into checks (checks.py, budgets.py), judged on a run (evaluate.py),
reported for CI (writers.py), and usable from pytest (pytest_plugin.py)."""
