"""budgets.yaml: the rules a release is gated on, parsed with the line of every rule kept for messages.

    schema_version: 1
    budgets:
      - name: "mobilenet int8 on pis"   # optional
        model: "mobilenet*"             # glob selectors, all optional; device also matches groups and tags
        variant: int8
        device: "pi-*"
        p90_ms: 40                      # upper bounds: p50_ms p90_ms p99_ms init_ms first_inference_ms
        peak_rss_mb: 120                #               peak_rss_mb model_bytes sustained_p90_ms (run --sustained)
        cosine: 0.99                    # lower bounds on the worst output: cosine top1_agreement snr_db
        max_regression: 5%              # p50 against --baseline; a number means percent too
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import EdgebenchError
from ..config.yamlfile import YDict, YList, check_keys, load_yaml, where
from ..results.record import Cell
from .checks import BOUNDS, REGRESSION, Check, make_check

SCHEMA_VERSION = 1
SELECTORS = ("model", "variant", "device")
RULE_KEYS = {"name", *SELECTORS, *BOUNDS, REGRESSION}


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

    def matches(self, cell: Cell, device_labels: dict[str, set[str]]) -> bool:
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
