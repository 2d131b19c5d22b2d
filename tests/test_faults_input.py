"""Trust under hostile input (issue #11): every run renders, every path stays in its directory, names stay
names, YAML stays small, parsers stay linear, and a report never overwrites what it did not write."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.report.render import render_index, render_report
from harness.results.history import History
from harness.results.record import Cell, Status
from harness.results.store import Store

from tests.support.browser import Browser, find_chromium
from tests.support.cli import run_cli
from tests.support.synthetic import synthetic_cell, synthetic_device, synthetic_export

ROOT = Path(__file__).resolve().parents[1]


# -- 1. the report renders every run the store can hold ------------------------------------------------
def _unreachable_run(store: Path) -> str:
    """A real store holding a run where one device answered and one did not (no environment record)."""
    db = Store(store)
    run_id = db.create_run("lab", {"settings": {"runs": 50}, "inventory": "inventory.yaml", "suite": None,
                                   "commit": None, "host": {"hostname": "ci", "edgebench": "0.1.0"}})
    db.put_device(run_id, "pi-ok", synthetic_device("pi-ok"))  # type: ignore[arg-type]
    db.put_device(run_id, "pi-down", {"name": "pi-down", "transport": "ssh", "host": "10.9.9.9",
                                      "status": Status.UNREACHABLE, "error": "[Errno 113] No route to host",
                                      "env": None, "agent_version": None})
    db.put_cell(run_id, synthetic_cell("pi-ok", "m", "fp32", [1.0, 1.1, 1.2] * 30))
    for status in (Status.UNREACHABLE, Status.AUTH_FAILED, Status.HOST_KEY_CHANGED):
        db.put_cell(run_id, synthetic_cell(f"pi-{status}", "m", "fp32", None, status=str(status), error="refused"))
    db.put_cell(run_id, synthetic_cell("pi-down", "m", "fp32", None, status="unreachable", error="no route"))
    db.finish_run(run_id)
    db.close()
    return run_id


def test_report_of_a_run_with_an_unreachable_device_renders_and_shows_its_status(tmp_path: Path) -> None:
    store = tmp_path / "results.sqlite"
    run_id = _unreachable_run(store)
    result = run_cli("report", "--store", store, "-o", tmp_path / "reports" / "r.html")
    assert result.code == 0, result.err
    html = (tmp_path / "reports" / "r.html").read_text()
    assert "pi-down" in html and "unreachable" in html and "No route to host" in html
    assert "auth_failed" in html and "host_key_changed" in html
    assert run_id in (tmp_path / "reports" / "index.html").read_text()


OPTIONAL_RUN = ("label", "started_at", "finished_at", "settings", "inventory", "suite", "commit", "host")
OPTIONAL_DEVICE = ("transport", "host", "groups", "tags", "runtime", "delegate", "threads", "status", "error",
                   "env", "agent_version", "bytes_shipped", "files_shipped", "android")


def _thin(rng: random.Random, d: dict[str, Any], keys: Any, *, null: bool = True) -> None:
    """Drop (or null) some of ``keys`` of ``d``, and drop keys at random inside the mappings among them."""
    for key in list(keys):
        roll = rng.random()
        if roll < 0.25:
            d.pop(key, None)
        elif roll < 0.45 and null:
            d[key] = None
        elif isinstance(d.get(key), dict):
            _thin(rng, d[key], list(d[key]), null=False)


def _random_run(rng: random.Random, i: int) -> dict[str, Any]:
    statuses = list(Status)
    cells: list[Cell] = []
    for n in range(rng.randint(1, 8)):
        status = rng.choice(statuses)
        ok = status == Status.OK and rng.random() < 0.8
        samples = [round(rng.uniform(1, 3), 3) for _ in range(rng.choice([1, 3, 70]))] if ok else None
        cell = synthetic_cell(f"dev-{rng.randint(0, 3)}", f"model-{rng.randint(0, 1)}", f"v{n}", samples,
                              status=str(status), error=None if status == Status.OK else f"reason {n}",
                              cosine=rng.choice([None, 0.5, 0.999]), throttled=rng.choice([0, 0x80008]),
                              flags=tuple(rng.sample(["high_cv", "throttled", "random_calibration", "cpu_fallback"],
                                                     rng.randint(0, 2))))
        required = ("device", "model", "variant", "status")
        _thin(rng, cell, [k for k in list(cell) if k not in required])  # type: ignore[arg-type]
        cells.append(cell)
    export: dict[str, Any] = dict(synthetic_export(cells, run_id=f"20261124-07150{i % 10}-{i:04x}"))
    for dev in export["devices"]:
        dev["status"] = str(rng.choice(statuses))
        _thin(rng, dev, OPTIONAL_DEVICE)
    export["devices"] = [d for d in export["devices"] if rng.random() < 0.8]  # cells of devices with no record
    _thin(rng, export["run"], OPTIONAL_RUN)
    return export


def test_report_renders_generated_runs_mixing_every_status_and_missing_field(tmp_path: Path) -> None:
    rng = random.Random(11)
    runs = [_random_run(rng, i) for i in range(150)]
    seen = {c["status"] for run in runs for c in run["results"]}
    assert seen == {str(s) for s in Status}
    for i, export in enumerate(runs):
        baseline = runs[i - 1] if i % 3 == 0 else None
        out = render_report(export, tmp_path / f"r{i}.html", baseline=baseline)  # type: ignore[arg-type]
        html = out.read_text()
        assert "edgebench-schema-version" in html
        for cell in export["results"]:
            assert str(cell["status"]) in html
    render_index(History.of_exports(runs), tmp_path / "index.html")  # type: ignore[arg-type]
    json.loads(json.dumps(runs))  # the generated runs are what a store can hold: plain JSON


def test_a_generated_run_with_missing_fields_works_in_chromium(tmp_path: Path) -> None:
    if find_chromium() is None:
        pytest.fail("chromium is not installed: apt-get install chromium")
    rng = random.Random(5)
    export = _random_run(rng, 1)
    export["devices"] = []
    report = render_report(export, tmp_path / "r.html")  # type: ignore[arg-type]
    with Browser(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.goto(report.as_uri())
        assert page.eval("document.querySelectorAll('#matrix tbody tr').length") == len(export["results"])
        page.click("#matrix thead th:nth-child(5)")  # sorting rows with missing values
        assert page.errors() == []


# -- 2. every path read from a manifest or a suite stays in its directory --------------------------------
def _converted_dir(root: Path, **changes: Any) -> Path:
    """A directory as `edgebench convert` writes it (one tiny variant), with ``changes`` to its manifest."""
    root.mkdir(parents=True)
    (root / "fp32.tflite").write_bytes(b"\0" * 64)
    (root / "eval_inputs.npz").write_bytes(b"")
    entry = {"status": "ok", "error": None, "file": "fp32.tflite", "sha256": "0" * 64, "bytes": 64, "warnings": []}
    manifest: dict[str, Any] = {"schema_version": 1, "model": "m", "eval_inputs": "eval_inputs.npz",
                                "reference_outputs": None, "variants": {"fp32": entry}}
    for key, value in changes.items():
        if key == "file":
            entry["file"] = value
        else:
            manifest[key] = value
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.mark.parametrize("change", [{"file": "/etc/hostname"}, {"file": "../outside.tflite"},
                                    {"file": "sub/../../outside.tflite"}, {"eval_inputs": "/etc/passwd"},
                                    {"reference_outputs": "../../../../etc/shadow"}, {"file": ""},
                                    {"variants": {"../../x": {"status": "ok", "file": "fp32.tflite"}}},
                                    {"variants": {"fp32": {"status": "grand", "file": "fp32.tflite"}}}],
                         ids=lambda c: json.dumps(c)[:40])
def test_a_manifest_cannot_name_files_outside_its_directory(tmp_path: Path, change: dict[str, Any]) -> None:
    (tmp_path / "outside.tflite").write_bytes(b"secret")
    model = _converted_dir(tmp_path / "vendor" / "model", **change)
    result = run_cli("run", "--models", model, "--store", tmp_path / "s.sqlite", "-q")
    assert result.code == 2, result.err
    assert f"{model / 'manifest.json'}:" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "s.sqlite").exists() or "outside" not in (tmp_path / "s.sqlite").read_bytes().decode(
        "latin-1")


def test_a_symlink_out_of_a_converted_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside.tflite").write_bytes(b"secret")
    model = _converted_dir(tmp_path / "model", file="link.tflite")
    (model / "link.tflite").symlink_to(tmp_path / "outside.tflite")
    result = run_cli("run", "--models", model, "--store", tmp_path / "s.sqlite", "-q")
    assert result.code == 2 and "points outside" in result.err and "link.tflite" in result.err


def test_a_manifest_inside_its_directory_is_read(tmp_path: Path) -> None:
    from harness.fleet.jobs import from_converted

    model = _converted_dir(tmp_path / "model", file="./fp32.tflite")
    (variant,) = from_converted(model)
    assert variant.path == model / "./fp32.tflite" and variant.eval_inputs == model / "eval_inputs.npz"


@pytest.mark.parametrize("entry", ["/etc/hostname", "../elsewhere/model.tflite",
                                   "{path: m.tflite, calibration: ../calib.npz}", "{path: m.tflite, name: ../../x}",
                                   "{path: ../x.keras}"])
def test_a_suite_cannot_point_outside_its_directory_or_name_a_path(tmp_path: Path, entry: str) -> None:
    suite = tmp_path / "suite" / "suite.yaml"
    suite.parent.mkdir()
    (suite.parent / "m.tflite").write_bytes(b"")
    suite.write_text(f"schema_version: 1\nmodels:\n  - {entry}\n")
    result = run_cli("run", suite, "--store", tmp_path / "s.sqlite")
    assert result.code == 2, result.err
    assert f"{suite}:3" in result.err and ("outside" in result.err or "not a safe name" in result.err)


def test_a_source_model_whose_file_name_is_not_a_safe_name_needs_a_name(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    (tmp_path / "...keras").write_bytes(b"")  # its stem is "..": converted into .edgebench/converted/..
    suite.write_text("models:\n  - path: ...keras\n")
    result = run_cli("run", suite, "--store", tmp_path / "s.sqlite")
    assert result.code == 2 and "give the entry a name:" in result.err, result.err


# -- 6. names that become paths ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../x", "/abs", ".hidden", "a/b", "sp ace", "x" * 101, "-flag"])
def test_recipe_names_that_are_not_safe_path_components_are_refused(tmp_path: Path, name: str) -> None:
    recipes = tmp_path / "recipes.yaml"
    recipes.write_text(f"recipes:\n  {json.dumps(name)}: {{base: int8}}\n")
    result = run_cli("convert", tmp_path / "model.keras", "--recipes", recipes, "-o", tmp_path / "out")
    assert result.code == 2, result.err
    assert f"{recipes}:2" in result.err and "letters, digits and . _ @ + -" in result.err
    assert not (tmp_path / "out").exists()


def test_the_safe_alphabet_allows_the_names_edgebench_uses() -> None:
    from harness.common.names import is_safe_name

    for name in ("fp32", "int16x8", "int8_uint8", "mobilenet_v2@baseline", "model-1.2+cpu", "M"):
        assert is_safe_name(name)


# -- 9, 11c. YAML: no alias bombs, no unhashable keys, every failure names file:line ------------------------
def _alias_bomb(levels: int = 9) -> str:
    lines = ["    l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines)


def test_an_inventory_alias_bomb_is_refused_naming_the_line(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("all:\n  hosts:\n    pi:\n      ansible_host: 10.0.0.2\n      delegate_options:\n"
                         + _alias_bomb().replace("    ", "        ") + "\n")
    assert inventory.stat().st_size < 1024  # expands to 9**9 (387 million) strings
    started = time.monotonic()
    result = run_cli("devices", "--inventory", inventory)
    assert time.monotonic() - started < 5
    assert result.code == 2 and f"{inventory}:" in result.err and "expands to more than" in result.err, result.err


@pytest.mark.parametrize(("text", "line", "message"), [
    ("recipes:\n  ? [a, b]\n  : {base: int8}\n", 2, "a key must be a plain value"),
    ("recipes:\n  ? {a: 1}\n  : {base: int8}\n", 2, "a key must be a plain value"),
    ("recipes:\n  a: &a [*a]\n", 2, "refers to itself"),
    ("recipes:\n  x: " + "[" * 200 + "]" * 200 + "\n", 2, "nested deeper than"),
    ("recipes:\n  when: 2026-02-30\n", None, "day is out of range"),
])
def test_malformed_yaml_is_bad_input_naming_file_and_line(tmp_path: Path, text: str, line: int | None,
                                                          message: str) -> None:
    recipes = tmp_path / "recipes.yaml"
    recipes.write_text(text)
    result = run_cli("convert", tmp_path / "model.keras", "--recipes", recipes)
    assert result.code == 2 and message in result.err and "Traceback" not in result.err, result.err
    assert f"{recipes}:{line}:" in result.err if line else f"{recipes}:" in result.err


def test_yaml_anchors_that_share_small_values_still_work(tmp_path: Path) -> None:
    from harness.config.yamlfile import load_yaml

    path = tmp_path / "inventory.yaml"
    path.write_text("defaults: &d {runtime: ai_edge_litert, threads: 4}\nhosts:\n  a: *d\n  b: *d\n"
                    + _alias_bomb(5).replace("    ", "") + "\n")  # 9**5 = 59049 values: fine
    data = load_yaml(path)
    assert data["hosts"]["a"] == data["hosts"]["b"] == {"runtime": "ai_edge_litert", "threads": 4}


def test_a_symlinked_tflite_in_a_models_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"private key")
    models = tmp_path / "vendor"
    models.mkdir()
    (models / "good.tflite").write_bytes(b"\0" * 64)
    (models / "evil.tflite").symlink_to(tmp_path / "secret")
    result = run_cli("run", "--models", models, "--store", tmp_path / "s.sqlite", "-q")
    assert result.code == 2 and "evil.tflite" in result.err and "points outside" in result.err, result.err


def _run_with_deadline(*argv: object) -> subprocess.CompletedProcess[str]:
    """`edgebench ARGV` in a child process killed after 60 s: input that used to hang the run fails the test."""
    try:
        return subprocess.run([sys.executable, "-m", "harness", *map(str, argv)], capture_output=True, text=True,
                              timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    except subprocess.TimeoutExpired:
        pytest.fail(f"edgebench {' '.join(map(str, argv))} still running after 60 s (hung)")


@pytest.mark.parametrize("plant", ["fifo", "dev-zero"])
def test_a_fifo_or_a_device_named_tflite_in_a_models_directory_is_refused_without_opening_it(
        tmp_path: Path, plant: str) -> None:
    models = tmp_path / "vendor"
    models.mkdir()
    (models / "good.tflite").write_bytes(b"\0" * 64)
    if plant == "fifo":  # opening it for reading blocks until a writer comes: there is none
        os.mkfifo(models / "x.tflite")
    else:  # a read of /dev/zero never ends
        (models / "x.tflite").symlink_to("/dev/zero")
    done = _run_with_deadline("run", "--models", models, "--store", tmp_path / "s.sqlite", "-q")
    words = "not a regular file" if plant == "fifo" else "points outside"
    assert done.returncode == 2 and "x.tflite" in done.stderr and words in done.stderr, done.stderr
    assert not (tmp_path / "s.sqlite").exists()  # refused before a run was created


def test_a_fifo_given_as_the_model_or_inside_a_converted_directory_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.tflite")
    done = _run_with_deadline("run", "--models", tmp_path / "pipe.tflite", "--store", tmp_path / "s.sqlite", "-q")
    assert done.returncode == 2 and "pipe.tflite: not a regular file" in done.stderr, done.stderr
    converted = tmp_path / "converted"
    converted.mkdir()
    os.mkfifo(converted / "fp32.tflite")
    (converted / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "model": "m", "variants": {"fp32": {"status": "ok", "file": "fp32.tflite"}}}))
    for given in (converted, tmp_path):  # the converted directory itself, and a directory holding it
        (tmp_path / "pipe.tflite").unlink(missing_ok=True)
        done = _run_with_deadline("run", "--models", given, "--store", tmp_path / "s.sqlite", "-q")
        assert done.returncode == 2 and "fp32.tflite: not a regular file" in done.stderr, done.stderr
    (converted / "manifest.json").unlink()
    os.mkfifo(converted / "manifest.json")  # every capped read (manifests, suites, recipes) refuses it unopened
    done = _run_with_deadline("run", "--models", converted, "--store", tmp_path / "s.sqlite", "-q")
    assert done.returncode == 2 and "manifest.json: manifest is not a regular file" in done.stderr, done.stderr


# -- 8. two models with the same name --------------------------------------------------------------------
def test_two_models_with_the_same_file_stem_are_refused_naming_both(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "model.tflite").write_bytes(sub.encode() * 64)
    store = tmp_path / "s.sqlite"
    result = run_cli("run", "--models", tmp_path / "a" / "model.tflite", "--models", tmp_path / "b" / "model.tflite",
                     "--repeats", "2", "--store", store, "-q")
    assert result.code == 2, result.err
    assert str(tmp_path / "a" / "model.tflite") in result.err and str(tmp_path / "b" / "model.tflite") in result.err
    assert not store.exists()  # refused before anything was measured


def test_two_converted_directories_of_the_same_model_are_refused(tmp_path: Path) -> None:
    one, two = _converted_dir(tmp_path / "v1" / "m"), _converted_dir(tmp_path / "v2" / "m")
    result = run_cli("run", "--models", one, "--models", two, "--store", tmp_path / "s.sqlite", "-q")
    assert result.code == 2 and "'m/fp32'" in result.err and str(one.resolve()) in result.err, result.err


def test_the_same_model_given_twice_is_measured_once() -> None:
    from harness.commands.run_input import checked_variants
    from harness.fleet.jobs import ModelVariant

    path = Path("/models/m.tflite")
    a, b = ModelVariant("m", "tflite", path), ModelVariant("m", "tflite", path)
    assert checked_variants([(path, a), (path, b)]) == [a]


# -- resume: the run's own settings ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tflite_models import convert_test_models

    return convert_test_models(tmp_path_factory)["mlp_fp32"]


def test_resume_measures_with_the_runs_settings_and_refuses_others(tmp_path: Path, tiny_model: Path) -> None:
    store = tmp_path / "s.sqlite"
    first = run_cli("run", "--models", tiny_model, "--devices", "local", "--runs", "20", "--min-seconds", "0",
                    "--warmup", "0", "--store", store, "-q")
    assert first.code == 0, first.err
    run_id = Store(store).resolve("latest")
    settings = Store(store).export_run(run_id)["run"]["settings"]
    with sqlite3.connect(store) as db:
        db.execute("DELETE FROM cells")
    refused = run_cli("run", "--models", tiny_model, "--runs", "50", "--store", store, "--resume", run_id, "-q")
    assert refused.code == 2 and "--runs" in refused.err and "runs=20" in refused.err, refused.err
    same = run_cli("run", "--models", tiny_model, "--runs", "20", "--store", store, "--resume", run_id, "-q")
    assert same.code == 0, same.err
    with sqlite3.connect(store) as db:
        db.execute("DELETE FROM cells")
    resumed = run_cli("run", "--models", tiny_model, "--store", store, "--resume", run_id, "-q")
    assert resumed.code == 0, resumed.err
    export = Store(store).export_run(run_id)
    (cell,) = export["results"]
    assert cell["latency_ms"]["count"] == 20  # not the defaults (at least 50 runs and 1 s)
    assert export["run"]["settings"] == settings


# -- 11a. the .tflite reader's work is linear in the file's size ----------------------------------------------
def _shared_tables_tflite(n: int) -> bytes:
    """A valid-looking model: n subgraph offsets to ONE subgraph whose n tensor offsets go to ONE tensor."""
    out = bytearray()

    def put(fmt: str, *values: int) -> int:
        pos = len(out)
        out.extend(struct.pack(fmt, *values))
        return pos

    def table(vtable: int, fmt: str) -> int:  # a table whose int32 head points back to its vtable
        pos = put(fmt, *([0] * len(fmt[1:])))
        struct.pack_into("<i", out, pos, pos - vtable)
        return pos

    def refs(at: list[int], target: int) -> None:
        for pos in at:
            struct.pack_into("<I", out, pos, target - pos)

    put("<I", 0)
    out.extend(b"TFL3")
    model = table(put("<HHHHH", 10, 12, 4, 0, 8), "<iII")  # version, subgraphs
    struct.pack_into("<I", out, 0, model)  # the root offset
    refs([model + 8], put("<I", n))
    subgraph_refs = [put("<I", 0) for _ in range(n)]
    subgraph = table(put("<HHH", 6, 8, 4), "<iI")  # tensors
    refs(subgraph_refs, subgraph)
    refs([subgraph + 4], put("<I", n))
    tensor_refs = [put("<I", 0) for _ in range(n)]
    refs(tensor_refs, table(put("<HH", 4, 4), "<i"))
    return bytes(out)


def test_a_tflite_file_of_shared_tables_is_refused_in_linear_time() -> None:
    from harness.common.errors import EdgebenchError
    from harness.conversion.tflite_file import parse_tflite

    small = parse_tflite(_shared_tables_tflite(20))  # the construction is a model the reader accepts...
    assert small.subgraph_count == 20
    data = _shared_tables_tflite(2000)  # ...and 16 KB of it took 19 s before (4 million tensor visits)
    assert len(data) < 17_000
    started = time.monotonic()
    with pytest.raises(EdgebenchError, match="more than .* reads"):
        parse_tflite(data, where="shared.tflite")
    assert time.monotonic() - started < 1.0


def test_real_models_need_a_small_part_of_the_readers_work_budget(tiny_model: Path) -> None:
    from harness.conversion import tflite_file
    from harness.conversion.flatbuffer import Buf

    for path in tiny_model.parent.glob("*.tflite"):
        buf = Buf(path.read_bytes())
        tflite_file._model(buf, str(path))
        used = buf.budget.total - buf.budget.left
        assert used < 0.5 * buf.size + 2000, (path.name, used, buf.size)  # the budget: 2 per byte + 100 000


# -- 12b. the index is only overwritten when edgebench wrote it -------------------------------------------------
def test_report_never_overwrites_an_index_it_did_not_write(tmp_path: Path) -> None:
    store = tmp_path / "results.sqlite"
    run_id = _unreachable_run(store)
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html><body>the team's own page</body></html>")
    result = run_cli("report", "--store", store, "-o", site / "r.html")
    assert result.code == 0 and "edgebench did not write it" in result.err, result.err
    assert (site / "index.html").read_text() == "<html><body>the team's own page</body></html>"
    assert (site / "r.html").exists()

    reports = tmp_path / "reports"
    assert run_cli("report", "--store", store, "-o", reports / "a.html").code == 0
    first = (reports / "index.html").read_text()
    assert run_id in first
    assert run_cli("report", "--store", store, "-o", reports / f"{run_id}.html").code == 0
    assert (reports / "index.html").read_text() != first  # its own index is updated: now it links the report
    assert run_cli("report", "--store", store, "-o", reports / "index.html").code == 0  # asked for by name
    assert "edgebench report" in (reports / "index.html").read_text()


# -- README truths -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["--debug", "export"], ["export", "--debug"]])
def test_debug_reraises_before_or_after_the_command(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    from harness import commands

    def bug(**_: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(commands, "cmd_export", bug)
    assert run_cli("export").code == 4
    with pytest.raises(RuntimeError, match="a bug"):
        run_cli(*argv)
