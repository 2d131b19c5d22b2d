"""Safe YAML loading that remembers where every value came from, for errors naming file:line.

Every YAML file edgebench reads comes through here, and some come from elsewhere: aliases may share a
node, but a document whose expansion (what a consumer walking it sees, e.g. when it becomes JSON) is
larger than MAX_EXPANDED_NODES or deeper than MAX_DEPTH is refused, so a few hundred bytes of nested
aliases cannot become gigabytes. Keys must be hashable scalars; every failure names file:line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..common.errors import EdgebenchError

MAX_YAML_BYTES = 4 * 1024 * 1024
MAX_EXPANDED_NODES = 1_000_000  # a 4 MB file of plain YAML has fewer
MAX_DEPTH = 64


class YDict(dict):  # type: ignore[type-arg]
    """A mapping that knows its own line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]


class YList(list):  # type: ignore[type-arg]
    line: int = 0
    item_lines: list[int]


def _refuse(problem: str, node: yaml.Node) -> None:
    raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)


def _expanded_size(node: yaml.Node, depth: int, sizes: dict[int, int]) -> int:
    """Nodes in ``node`` with every alias expanded; memoised per node, so shared nodes cost once here."""
    if depth > MAX_DEPTH:
        _refuse(f"nested deeper than {MAX_DEPTH} levels (or an alias refers to itself)", node)
    if id(node) not in sizes:
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        total = 1 + sum(_expanded_size(child, depth + 1, sizes) for child in children)
        if total > MAX_EXPANDED_NODES:
            _refuse(f"expands to more than {MAX_EXPANDED_NODES} values (aliases of aliases?)", node)
        sizes[id(node)] = total
    return sizes[id(node)]


class _Loader(yaml.SafeLoader):
    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self.depth += 1  # refused while composing: deep nesting would exhaust the composer's recursion
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)  # type: ignore[no-untyped-call,no-any-return]
        finally:
            self.depth -= 1

    def compose_document(self) -> yaml.Node:
        node: yaml.Node = super().compose_document()  # type: ignore[no-untyped-call]
        _expanded_size(node, 0, {})
        return node


def _mapping(loader: _Loader, node: yaml.MappingNode) -> YDict:
    d = YDict()
    d.line = node.start_mark.line + 1
    d.key_lines = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            _refuse("a key must be a plain value, not a list or mapping", key_node)
        key = loader.construct_object(key_node, deep=True)
        if key in d:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        d[key] = loader.construct_object(value_node, deep=True)
        d.key_lines[str(key)] = key_node.start_mark.line + 1
    return d


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> YList:
    out = YList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)  # type: ignore[arg-type]
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)  # type: ignore[arg-type]


def load_yaml(path: Path) -> Any:
    """Load a YAML file; any problem is an EdgebenchError naming path:line."""
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise EdgebenchError(f"file is larger than {MAX_YAML_BYTES} bytes", where=str(path))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgebenchError("file not found", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgebenchError(f"cannot read: {exc}", where=str(path)) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise EdgebenchError(f"invalid YAML: {exc.problem or exc.context}", where=f"{path}{line}") from None
    except yaml.YAMLError as exc:
        raise EdgebenchError(f"invalid YAML: {exc}", where=str(path)) from None
    except (ValueError, TypeError) as exc:  # a scalar that matches a type but is no value of it: 2026-02-30
        raise EdgebenchError(f"invalid YAML: {exc}", where=str(path)) from None


def where(path: Path, node: Any, key: str | None = None) -> str:
    """'file:line' of a mapping (or of one of its keys) loaded by load_yaml."""
    line = 0
    if isinstance(node, YDict):
        line = node.key_lines.get(key, node.line) if key is not None else node.line
    elif isinstance(node, YList):
        line = node.line
    return f"{path}:{line}" if line else str(path)


def check_keys(path: Path, node: Any, allowed: set[str], what: str, required: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Reject a non-mapping, unknown keys, and missing required keys, naming the line."""
    if not isinstance(node, dict):
        raise EdgebenchError(f"{what} must be a mapping, not {type(node).__name__}", where=where(path, node))
    for key in node:
        if str(key) not in allowed:
            raise EdgebenchError(
                f"unknown key {key!r} in {what} (allowed: {', '.join(sorted(allowed))})", where=where(path, node, str(key))
            )
    for key in sorted(required - set(map(str, node))):
        raise EdgebenchError(f"{what} is missing required key {key!r}", where=where(path, node))
