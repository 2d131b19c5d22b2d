"""Jobs: the model variants a run measures (from `edgebench convert` directories or bare .tflite files),
and what each device is asked to do with them (threads, delegate): one rule each, for every runner."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..common.errors import EdgebenchError
from ..common.files import inside, sha256_file
from ..config.inventory import Device
from ..config.settings import MeasureSettings
from ..conversion.manifest import MANIFEST, read_manifest
from ..conversion.recipes import EDGETPU
from ..results.record import Status

MAX_TFLITE_BYTES = 2 * 1024**3
EDGETPU_LIBRARY = "libedgetpu.so.1"
# Delegates LiteRT's benchmark_model has built in; the agent's Python runtimes load every delegate from a library.
BUILTIN_TOOL_DELEGATES = ("gpu", "nnapi")


@dataclass(eq=False)  # identity: the runner keys pending work by variant object
class ModelVariant:
    model: str
    variant: str
    path: Path | None
    status: Status = Status.OK  # not ok: conversion or host validation failed, the variant is not shipped
    error: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    eval_inputs: Path | None = None
    reference_outputs: Path | None = None
    conversion: dict[str, Any] | None = None
    flags: list[str] = field(default_factory=list)
    baseline_for: str | None = None  # an in-run baseline: the candidate model it is measured beside

    @property
    def key(self) -> str:
        return f"{self.model}/{self.variant}"

    @property
    def for_edgetpu(self) -> bool:
        """Compiled by edgetpu_compiler: `edgetpu`, or a variant whose manifest entry names what it compiles."""
        return self.variant == EDGETPU or "edgetpu_of" in (self.conversion or {})


BASELINE_SUFFIX = "@baseline"


def side_by_side(candidates: list[ModelVariant], baselines: list[ModelVariant]) -> list[ModelVariant]:
    """Candidate and baseline variants in one list, each baseline right after its candidate (so the ledger's
    interleaving measures them back to back), baselines renamed ``MODEL@baseline``.

    A baseline is matched by model and variant name; with exactly one model on each side the names may differ
    (old/detector.tflite against new/detector_v2.tflite).
    """
    models = list(dict.fromkeys(mv.model for mv in candidates))
    base_models = list(dict.fromkeys(mv.model for mv in baselines))
    rename = {m: m for m in base_models}
    if len(models) == 1 and len(base_models) == 1:
        rename = {base_models[0]: models[0]}
    unmatched = sorted(m for m in base_models if rename[m] not in models)
    if unmatched:
        raise EdgebenchError(f"baseline model(s) {', '.join(unmatched)} match no candidate model "
                             f"({', '.join(models)}): name them alike")
    renamed = {(rename[mv.model], mv.variant): replace(mv, model=rename[mv.model] + BASELINE_SUFFIX,
                                                       baseline_for=rename[mv.model]) for mv in baselines}
    ordered: list[ModelVariant] = []
    for mv in candidates:
        ordered.append(mv)
        if (twin := renamed.pop((mv.model, mv.variant), None)) is not None:
            ordered.append(twin)
    return ordered + list(renamed.values())


def from_converted(directory: Path, only: list[str] | None = None) -> list[ModelVariant]:
    """The variants of a converted directory; its model files are checked (regular_file) before anything
    reads them (the manifest itself makes sure they stay in the directory)."""
    variants = from_manifest(read_manifest(directory), directory, only)
    for mv in variants:
        if mv.path is not None and mv.path.exists():
            regular_file(mv.path)
    return variants


def from_manifest(manifest: dict[str, Any], directory: Path, only: list[str] | None = None) -> list[ModelVariant]:
    """The variants a manifest describes, with their files under ``directory``."""
    out = []
    for variant, entry in manifest["variants"].items():
        if only and variant not in only:
            continue
        path = directory / entry["file"] if entry.get("file") else None
        out.append(ModelVariant(
            model=manifest["model"], variant=variant, path=path, status=Status(entry["status"]), error=entry.get("error"),
            sha256=entry.get("sha256"), bytes=entry.get("bytes"),
            eval_inputs=directory / manifest["eval_inputs"] if manifest.get("eval_inputs") else None,
            reference_outputs=directory / manifest["reference_outputs"] if manifest.get("reference_outputs") else None,
            # the doctor's page for this model, when the doctor converted it: the report links to it
            conversion={**entry, "doctor": manifest["doctor"]} if isinstance(manifest.get("doctor"), str) else entry,
            flags=list(entry.get("warnings") or []),
        ))
    return out


def regular_file(path: Path, limit: int = MAX_TFLITE_BYTES) -> int:
    """The size of ``path`` (symlinks followed), checked before anything opens it: only a regular file of at
    most ``limit`` bytes. Opening a FIFO blocks until someone writes to it, and a device (a symlink to
    /dev/zero) never ends: either would hold the run for ever."""
    try:
        st = path.stat()
    except OSError as exc:
        raise EdgebenchError(f"cannot read: {exc.strerror or exc}", where=str(path)) from None
    if not stat.S_ISREG(st.st_mode):
        raise EdgebenchError("not a regular file (a FIFO, device, socket or directory): refused", where=str(path))
    if st.st_size > limit:
        raise EdgebenchError(f"model larger than {limit} bytes", where=str(path))
    return st.st_size


def from_tflite(path: Path) -> ModelVariant:
    size = regular_file(path)
    return ModelVariant(model=path.stem, variant="tflite", path=path, sha256=sha256_file(path, MAX_TFLITE_BYTES),
                        bytes=size)


def discover(path: Path, only: list[str] | None = None) -> list[ModelVariant]:
    """Variants under a converted directory, a directory of them, or a .tflite file.

    What is found in a directory must resolve inside it (a symlink in a vendor's directory would ship any
    host file), and every file is checked to be a regular one before it is opened (regular_file)."""
    if not path.exists():
        raise EdgebenchError("model path not found", where=str(path))
    if not path.is_dir():
        if path.suffix != ".tflite":
            raise EdgebenchError("not a .tflite file (source models are converted by 'edgebench convert' or a suite)",
                                 where=str(path))
        return [from_tflite(path)]
    if (path / MANIFEST).exists():
        return from_converted(path, only)
    found: list[ModelVariant] = []
    for child in sorted(path.iterdir()):
        if child.suffix != ".tflite" and not (child.is_dir() and (child / MANIFEST).exists()):
            continue
        inside(path, child.name, "model file" if child.suffix == ".tflite" else "converted directory", str(child))
        found += [from_tflite(child)] if child.suffix == ".tflite" else from_converted(child, only)
    if not found:
        raise EdgebenchError("no converted models (manifest.json) or .tflite files here", where=str(path))
    return found


# -- what a device runs -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DelegateSpec:
    name: str
    library: str | None
    options: dict[str, Any]


def delegate_for(device: Device, mv: ModelVariant, *, builtin: tuple[str, ...] = ()) -> DelegateSpec | None:
    """The delegate a cell runs with. One rule for every runner:

    - a variant compiled for the Edge TPU runs on its delegate (the device's library, else libedgetpu.so.1);
    - on an Edge TPU board (delegate: edgetpu) the other variants run on the CPU, beside it;
    - otherwise the device's delegate, which must be loadable by the runner: from ``delegate_library``,
      or built into the runner (``builtin``: benchmark_model has gpu and nnapi). A delegate that cannot be
      loaded is an error (UnloadableDelegate), never a cell labelled with it that ran on the CPU.
    """
    if mv.for_edgetpu:
        return DelegateSpec("edgetpu", device.delegate_library or EDGETPU_LIBRARY, device.delegate_options)
    if device.delegate == "edgetpu" or not (device.delegate or device.delegate_library):
        return None
    name = device.delegate or "external"
    if device.delegate_library is None and name not in builtin:
        raise UnloadableDelegate(f"delegate {name!r} needs delegate_library (the path of its shared library) "
                                 f"on this device's runner" + (f"; built in: {', '.join(builtin)}" if builtin else ""))
    return DelegateSpec(name, device.delegate_library, device.delegate_options)


class UnloadableDelegate(Exception):
    """The device asks for a delegate its runner cannot load: its cells fail with this reason."""


def threads_for(device: Device, settings: MeasureSettings) -> int | None:
    """Interpreter threads: the run's setting, else the device's; None leaves the runtime's default."""
    return settings.threads if settings.threads is not None else device.threads
