"""Which variants to convert: the standard ones, Edge TPU, and recipes (YAML) that add variants or options.

    recipes:
      int8_uint8: {base: int8, io_type: uint8}       # a new variant built on a standard one
      fp32_flex: {base: fp32, select_tf_ops: true}    # TF ops via Flex
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..common.errors import EdgebenchError
from ..common.names import safe_name
from ..config.yamlfile import YDict, check_keys, load_yaml, where

VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
EDGETPU = "edgetpu"  # the int8 variant compiled by edgetpu_compiler; asked for by name, not in the default set
CALIBRATED = ("int8", "int16x8")
RECIPE_KEYS = {"base", "io_type", "select_tf_ops", "allow_custom_ops"}
IO_TYPES = ("int8", "uint8", "float32")


def parse_variants(text: str | list[str] | None, recipes: dict[str, Any] | None = None) -> list[str]:
    names = VARIANTS if not text else [v.strip() for v in (text.split(",") if isinstance(text, str) else text) if v.strip()]
    known = VARIANTS + (EDGETPU,) + tuple(r for r in (recipes or {}) if r not in VARIANTS)
    for name in names:
        safe_name(name, "variant name", "--variants")  # it names the variant's file
        if name not in known:
            raise EdgebenchError(f"unknown variant {name!r} (known: {', '.join(known)})", where="--variants")
    return list(dict.fromkeys(names))


def load_recipes(path: Path) -> dict[str, dict[str, Any]]:
    """Conversion recipes: new variants built on a standard one, or options for a standard one.

        recipes:
          int8_uint8: {base: int8, io_type: uint8}
          fp32_flex: {base: fp32, select_tf_ops: true}
    """
    data = load_yaml(path)
    check_keys(path, data, {"schema_version", "recipes"}, "recipes file", required={"recipes"})
    out: dict[str, dict[str, Any]] = {}
    recipes = data["recipes"] or YDict()
    if not isinstance(recipes, YDict):
        raise EdgebenchError("recipes must be a mapping of names to recipes", where=where(path, data, "recipes"))
    for name, recipe in recipes.items():
        safe_name(name, "recipe name", where(path, recipes, str(name)))  # it names the variant's file
        check_keys(path, recipe, RECIPE_KEYS, f"recipe {name!r}")
        base = recipe.get("base", name)
        if base not in VARIANTS:
            raise EdgebenchError(f"recipe {name!r} needs a base variant ({', '.join(VARIANTS)})",
                                 where=where(path, recipe, "base" if "base" in recipe else None))
        if recipe.get("io_type", "int8") not in IO_TYPES:
            raise EdgebenchError(f"io_type must be one of {', '.join(IO_TYPES)}", where=where(path, recipe, "io_type"))
        for flag in ("select_tf_ops", "allow_custom_ops"):
            if not isinstance(recipe.get(flag, False), bool):
                raise EdgebenchError(f"{flag} must be true or false", where=where(path, recipe, flag))
        out[str(name)] = {**recipe, "base": base}
    return out
