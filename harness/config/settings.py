"""Run settings, defined once: how cells are *measured* (MeasureSettings) and what a run may *do* (RunPolicy).

Each measurement setting is one dataclass field; its metadata gives the command-line flag and the help,
and its name is the suite key, the job field the agent reads, and the key recorded in the run's
``settings`` (the export). Defaults come from ``device_agent.DEFAULTS``, which the agent uses too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from device_agent import DEFAULTS

from ..common.errors import EdgebenchError


def _setting(default: Any, help: str, *, kind: type, minimum: float | None = None, flag: str | None = None,
             recorded: bool = True, exclusive_minimum: bool = False, duration: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "kind": kind, "minimum": minimum, "flag": flag,
                                            "recorded": recorded, "exclusive": exclusive_minimum,
                                            "duration": duration})


@dataclass(frozen=True)
class MeasureSettings:
    runs: int = _setting(DEFAULTS["runs"], "timed runs per cell, at least", kind=int, minimum=1)
    warmup: int = _setting(DEFAULTS["warmup"], "warm-up runs, at least", kind=int, minimum=0)
    min_seconds: float = _setting(DEFAULTS["min_seconds"], "time the runs for at least this long", kind=float,
                                  minimum=0)
    warmup_seconds: float = _setting(DEFAULTS["warmup_seconds"], "warm up for at least this long", kind=float,
                                     minimum=0)
    max_runs: int = _setting(DEFAULTS["max_runs"], "timed runs per cell, at most", kind=int, minimum=1)
    threads: int | None = _setting(None, "interpreter threads (default: the device's, else the runtime's)",
                                   kind=int, minimum=1)
    cell_timeout_s: float = _setting(DEFAULTS["cell_timeout_s"], "seconds before a silent cell is killed",
                                     kind=float, minimum=0, exclusive_minimum=True, flag="--cell-timeout")
    sustained: float | None = _setting(None, "keep invoking each cell for DURATION (60s, 5m or seconds), with the "
                                             "device's telemetry read every second", kind=float, minimum=0,
                                       exclusive_minimum=True, duration=True)
    repeats: int = _setting(1, "measure each variant N times, each in a fresh process, interleaved across "
                               "variants", kind=int, minimum=1)
    op_profile: bool = _setting(False, "benchmark_model devices: record per-op timings", kind=bool, recorded=False)
    evaluate: bool = _setting(True, "compare outputs with the reference model", kind=bool, recorded=False,
                              flag="")

    @property
    def cell_deadline_s(self) -> float:
        """How long one cell may take on the device: a sustained cell runs for its duration on top."""
        return self.cell_timeout_s + (self.sustained or 0.0)

    def describe(self) -> dict[str, Any]:
        """The settings as the run records them (run.settings in the export)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["recorded"]}

    def merged(self, values: Mapping[str, Any], where: Callable[[str], str]) -> MeasureSettings:
        """These settings with ``values`` (suite keys or command-line values) checked and applied.

        ``where(name)`` says where a value came from, for the error message (file:line or --flag).
        """
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for name, value in values.items():
            if value is None:
                continue
            f = known.get(name)
            if f is None:
                raise EdgebenchError(f"unknown measurement setting {name!r}", where=where(name))
            changes[name] = _checked(name, value, f.metadata, where(name))
        return replace(self, **changes)


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float) -> float:
    """Seconds from '90', '90s', '5m' or '1h' (ValueError otherwise)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    value = str(text).strip().lower()
    scale = _UNITS.get(value[-1:], None) if value else None
    number = float(value[:-1] if scale else value)  # ValueError for anything else
    if not math.isfinite(number):
        raise ValueError(f"not a duration: {text!r}")
    return number * (scale or 1.0)


def _checked(name: str, value: Any, meta: Mapping[str, Any], where: str) -> Any:
    if meta.get("duration") and isinstance(value, str):
        try:
            value = parse_duration(value)
        except ValueError:
            raise EdgebenchError(f"{name} must be a duration such as 90s, 5m or 1h, not {value!r}",
                                 where=where) from None
    kind = meta["kind"]
    numeric = (int, float) if kind is float else (kind,)
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, numeric):
        raise EdgebenchError(f"{name} must be {'a number' if kind is float else kind.__name__}, not {value!r}",
                             where=where)
    if kind is bool:
        return value
    if not math.isfinite(value):
        raise EdgebenchError(f"{name} must be a finite number", where=where)
    minimum = meta["minimum"]
    if minimum is not None and (value <= minimum if meta["exclusive"] else value < minimum):
        bound = f"greater than {minimum:g}" if meta["exclusive"] else f"at least {minimum:g}"
        hint = "; omit it for the runtime's default" if name == "threads" else ""
        raise EdgebenchError(f"{name} must be {bound}, not {value!r}{hint}", where=where)
    return kind(value)


def cli_flag(name: str) -> str | None:
    """The command-line flag of a measurement setting; None for settings with no flag."""
    f = next(f for f in fields(MeasureSettings) if f.name == name)
    flag = f.metadata["flag"]
    return None if flag == "" else flag or "--" + name.replace("_", "-")


@dataclass(frozen=True)
class RunPolicy:
    """What a run may do besides measuring: not recorded as measurement settings."""

    trust_new_hosts: bool = False  # accept and record unknown SSH host keys
    ship_failed: bool = False  # also measure variants that failed host validation
    lock_timeout_s: float = 300.0  # wait this long for a labgrid place someone else holds; then device_busy
