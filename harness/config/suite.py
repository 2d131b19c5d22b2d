"""suite.yaml: what a team checks into its repository to benchmark a release.

    schema_version: 1
    label: nightly                 # optional
    inventory: inventory.yaml      # optional; default: the built-in local device
    devices: [local, pis]          # names, groups or tags; default: every device
    models:
      - path: models/classifier.keras      # a source model: converted (and cached) first
        variants: [fp32, int8]
        calibration: data/calib.npz
      - path: build/detector               # a directory written by `edgebench convert`
      - path: vendor/model.tflite          # an already converted model
    baseline_models:               # optional: measured side by side with `models` (same entry format);
      - path: release-1.4/detector  #   max_regression budgets compare against them
    runs: 100
    warmup: 5
    min_seconds: 1.0
    threads: 2
    repeats: 3                     # measure each variant 3 times, interleaved across variants
    budgets: budgets.yaml          # gated after the run when given

Paths are relative to the suite file. Command-line flags override the suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..common.errors import EdgebenchError
from .settings import MeasureSettings
from .yamlfile import YDict, YList, check_keys, load_yaml, where

SETTING_KEYS = {f.name for f in fields(MeasureSettings)} - {"evaluate"}
SUITE_KEYS = {"schema_version", "label", "inventory", "devices", "models", "baseline_models", "budgets", *SETTING_KEYS}
MODEL_KEYS = {"path", "name", "variants", "calibration", "eval_data", "custom_objects"}
SOURCE_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass
class ModelEntry:
    path: Path
    name: str | None = None
    variants: list[str] | None = None
    calibration: Path | None = None
    eval_data: Path | None = None
    custom_objects: Path | None = None

    @property
    def is_source(self) -> bool:
        return self.path.suffix in SOURCE_SUFFIXES or (self.path / "saved_model.pb").exists()


@dataclass
class Suite:
    path: Path | None
    label: str | None = None
    inventory: Path | None = None
    devices: list[str] | None = None
    models: list[ModelEntry] = field(default_factory=list)
    baseline_models: list[ModelEntry] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # measurement settings given (checked), by name
    settings_where: dict[str, str] = field(default_factory=dict)
    budgets: Path | None = None


def _typed(path: Path, node: YDict, key: str, types: tuple[type, ...]) -> Any:
    value = node.get(key)
    if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
        names = " or ".join(t.__name__ for t in types)
        raise EdgebenchError(f"{key} must be {names}, not {type(value).__name__}", where=where(path, node, key))
    return value


def load_suite(path: Path) -> Suite:
    data = load_yaml(path)
    check_keys(path, data, SUITE_KEYS, "suite", required={"models"})
    assert isinstance(data, YDict)
    version = data.get("schema_version", 1)
    if version != 1:
        raise EdgebenchError(f"suite schema_version {version!r} is not supported (expected 1)",
                             where=where(path, data, "schema_version"))
    base = path.parent

    def rel(value: Any) -> Path | None:
        return (base / value) if isinstance(value, str) else None

    devices = _typed(path, data, "devices", (list, str))
    settings = {key: data[key] for key in SETTING_KEYS if key in data}
    MeasureSettings().merged(settings, lambda key: where(path, data, key))  # refuse bad values here, naming the line
    return Suite(
        path=path,
        label=_typed(path, data, "label", (str,)),
        inventory=rel(_typed(path, data, "inventory", (str,))),
        devices=[devices] if isinstance(devices, str) else devices,
        models=_model_entries(path, data, "models"),
        baseline_models=_model_entries(path, data, "baseline_models") if "baseline_models" in data else [],
        settings=settings,
        settings_where={key: where(path, data, key) for key in settings},
        budgets=rel(_typed(path, data, "budgets", (str,))),
    )


def _model_entries(path: Path, data: YDict, key: str) -> list[ModelEntry]:
    base = path.parent

    def rel(value: Any) -> Path | None:
        return (base / value) if isinstance(value, str) else None

    node = data[key]
    if not isinstance(node, YList) or not node:
        raise EdgebenchError(f"{key} must be a non-empty list", where=where(path, data, key))
    models = []
    for item in node:
        if isinstance(item, str):
            models.append(ModelEntry(base / item))
            continue
        check_keys(path, item, MODEL_KEYS, "model entry", required={"path"})
        variants = _typed(path, item, "variants", (list, str))
        models.append(ModelEntry(
            path=base / str(_typed(path, item, "path", (str,))),
            name=_typed(path, item, "name", (str,)),
            variants=[variants] if isinstance(variants, str) else variants,
            calibration=rel(_typed(path, item, "calibration", (str,))),
            eval_data=rel(_typed(path, item, "eval_data", (str,))),
            custom_objects=rel(_typed(path, item, "custom_objects", (str,))),
        ))
    return models
