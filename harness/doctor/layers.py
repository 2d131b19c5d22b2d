"""From per-tensor errors to Keras layers, and from the worst layers to the ops a candidate keeps in float.

TFLite names an op's output tensor after the TensorFlow ops fused into it, ';'-separated, each a path
like ``functional_1/hostile_1/BiasAdd`` (Keras 3 export adds ``_1`` to the scope) or ``model/hostile/BiasAdd``
(Keras 2): the deepest scope naming a Keras layer (nested models included) is the layer, so inside a wrapped
backbone (``model/backbone/hostile/BiasAdd``) it is ``hostile``, not ``backbone``. Outputs the converter renamed
(``StatefulPartitionedCall_1:0``) keep their tensor name and are marked ``keras: false``, except the output
of a single-output model, which is its output layer.

Quantization error lives on tensors: a crushed tensor (one outlier channel stretching its scale) hurts
through the op that consumes it. So a candidate keeps the worst layers *and the layers consuming their
outputs* in float: the ops on both sides of the bad tensors, whole Keras layers where the converter split one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

# How each localisation method ranks: (metric, True when higher is worse).
RANKED_BY: dict[str, tuple[str, bool]] = {"debugger": ("channel_snr_db", False), "compare": ("snr_drop_db", True)}
KEEP_FLOAT_COUNTS = (1, 2, 4)


def keras_layer(tensor: str, known: Iterable[str]) -> tuple[str, bool]:
    """(Keras layer name, whether it is one) of a TFLite tensor name: the deepest scope that is a known layer, so
    a layer inside a nested model (``outer_1/backbone_1/hostile_1/BiasAdd``) is named, not the model around it."""
    names = set(known)
    for piece in tensor.split(";"):
        parts = piece.split("/")
        if len(parts) < 3:
            continue
        if not names:
            return parts[1], True  # a SavedModel: no layer list to check the scopes against
        for scope in reversed(parts[1:-1]):
            for name in (scope, re.sub(r"_\d+$", "", scope)):
                if name in names:
                    return name, True
    return tensor, False


Namer = Callable[[str], tuple[str, bool]]


def namer(localised: dict[str, Any]) -> Namer:
    """keras_layer for this model; a renamed model output (``StatefulPartitionedCall_1:0``) of a single-output
    model is its output layer."""
    known = localised.get("layer_names") or []
    outputs = localised.get("output_layers") or []
    read = {t for op in localised["graph"] for t in op["inputs"]}

    def name(tensor: str) -> tuple[str, bool]:
        found = keras_layer(tensor, known)
        if not found[1] and len(outputs) == 1 and tensor not in read:
            return outputs[0], True
        return found
    return name


def _sort_key(method: str) -> Any:
    metric, higher_is_worse = RANKED_BY[method]

    def key(entry: dict[str, Any]) -> float:
        value = entry["metrics"].get(metric)
        if value is None:
            return float("inf")
        return -value if higher_is_worse else value
    return key


def rank_layers(localised: dict[str, Any]) -> list[dict[str, Any]]:
    """Keras layers, worst first; each with its worst tensor, that tensor's op and metrics, and all its op types."""
    layer_of = namer(localised)
    key = _sort_key(localised["method"])
    ops_of: dict[str, set[str]] = {}
    for op in localised["graph"]:
        for tensor in op["outputs"]:
            ops_of.setdefault(layer_of(tensor)[0], set()).add(op["op"])
    worst: dict[str, dict[str, Any]] = {}
    for entry in localised["tensors"]:
        name, is_keras = layer_of(entry["tensor"])
        if name not in worst or key(entry) < key(worst[name]):
            worst[name] = {"name": name, "keras": is_keras, "op": entry["op"], "tensor": entry["tensor"],
                           "metrics": entry["metrics"]}
    ranked = sorted(worst.values(), key=key)
    for entry in ranked:
        entry["ops"] = sorted(ops_of.get(entry["name"], {entry["op"]}))
    return ranked


def _consumers(graph: list[dict[str, Any]], layers: set[str], layer_of: Namer) -> set[str]:
    """The layers whose ops read a tensor that an op of ``layers`` writes."""
    written = {t for op in graph for t in op["outputs"] if layer_of(t)[0] in layers}
    return {layer_of(op["outputs"][0])[0] for op in graph if op["outputs"] and written.intersection(op["inputs"])}


def keep_float_recipes(localised: dict[str, Any], ranked: list[dict[str, Any]], base: str = "int8",
                       counts: tuple[int, ...] = KEEP_FLOAT_COUNTS) -> dict[str, dict[str, Any]]:
    """Conversion recipes keeping the worst k layers (and their consumers) in float, one per distinct set."""
    layer_of = namer(localised)
    graph = localised["graph"]
    read = {t for op in graph for t in op["inputs"]}
    outputs = {t for op in graph for t in op["outputs"] if t not in read}
    recipes: dict[str, dict[str, Any]] = {}
    seen: set[frozenset[str]] = set()
    for k in counts:
        if k > len(ranked):
            break
        worst = {entry["name"] for entry in ranked[:k]}
        keep = worst | _consumers(graph, worst, layer_of)
        nodes = [t for op in graph for t in op["outputs"] if layer_of(t)[0] in keep]
        if not nodes or frozenset(keep) in seen:
            continue
        seen.add(frozenset(keep))
        order = [e["name"] for e in ranked]
        recipes[f"{base}_float{k}"] = {
            "base": base, "float_nodes": nodes, "worst": k,
            "keeps_float": sorted(keep, key=lambda n: order.index(n) if n in order else 10**6),
            # a model output kept float must leave the model float: an int8 output would round it again
            **({"io_type": "float32"} if outputs.intersection(nodes) else {})}
    return recipes


def float_tail_recipes(localised: dict[str, Any], ranked: list[dict[str, Any]],
                       counts: tuple[int, ...] = KEEP_FLOAT_COUNTS) -> dict[str, dict[str, Any]]:
    """Recipes quantizing to int8 up to the first op of the worst k layers and keeping every later op float
    (``int8_tailK``), each with its Edge TPU compilation (``edgetpu_tailK``); one pair per distinct cut."""
    layer_of = namer(localised)
    graph = localised["graph"]
    recipes: dict[str, dict[str, Any]] = {}
    cuts: set[int] = set()
    for k in counts:
        if k > len(ranked):
            break
        worst = {entry["name"] for entry in ranked[:k]}
        cut = next((i for i, op in enumerate(graph) if any(layer_of(t)[0] in worst for t in op["outputs"])), None)
        if cut is None or cut in cuts:
            continue
        cuts.add(cut)
        tail = graph[cut:]
        keep = list(dict.fromkeys(layer_of(t)[0] for op in tail for t in op["outputs"]))
        recipes[f"int8_tail{k}"] = {"base": "int8", "float_nodes": [t for op in tail for t in op["outputs"]],
                                    "worst": k, "keeps_float": keep, "tail_from": layer_of(graph[cut]["outputs"][0])[0],
                                    "io_type": "float32"}  # the outputs are in the float tail
        recipes[f"edgetpu_tail{k}"] = {"base": "int8", "edgetpu_of": f"int8_tail{k}", "worst": k, "keeps_float": keep,
                                       "tail_from": recipes[f"int8_tail{k}"]["tail_from"]}
    return recipes
