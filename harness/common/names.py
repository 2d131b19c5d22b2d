"""The one rule for names that become file or remote path components (models, variants, recipes).

A name from a suite, a recipe file or a manifest ends up in paths (``-o DIR/VARIANT.tflite``,
``.edgebench/converted/NAME``) and in the keys of stored cells. Names that could climb out of a
directory (``../x``), hide (``.x``), or need quoting are refused here, with the rule in the message.
"""

from __future__ import annotations

import re

from .errors import EdgebenchError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")
MAX_NAME_LENGTH = 100
RULE = "letters, digits and . _ @ + -, starting with a letter or digit"


def is_safe_name(name: object) -> bool:
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and SAFE_NAME.fullmatch(name) is not None


def safe_name(name: object, what: str, where: str | None = None) -> str:
    """``name`` when it is safe as a path component; else an EdgebenchError saying what is allowed."""
    if not is_safe_name(name):
        raise EdgebenchError(f"{what} {name!r} is not a safe name: use {RULE} (at most {MAX_NAME_LENGTH} "
                             f"characters)", where=where)
    return str(name)
