"""The runner's logic against a scripted device (tests.support.fake_device): repeats, reconnects, per-cell
timeouts, partial and malformed output. Fast: no interpreter, no network; the real agent, sshd and adb
paths are tested in test_cli, test_ssh_run and test_adb_run."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agent.agent import encode_frame
from harness.config.inventory import Device
from harness.config.settings import MeasureSettings, RunPolicy
from harness.fleet import measurers, runner
from harness.fleet.jobs import ModelVariant
from harness.fleet.runner import measure_device
from harness.results.record import Cell, DeviceRecord, Status
from tests.support.fake_device import Script, failed, fake_factory, ok, raw, silent


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "RECONNECT_BACKOFF_S", (0.0, 0.0, 0.0))
    monkeypatch.setattr(measurers, "AGENT_GRACE_S", 0.0)


def _variants(tmp_path: Path, *names: str) -> list[ModelVariant]:
    out = []
    for name in names:
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(name.encode() * 10)
        out.append(ModelVariant("m", name, path, sha256=None, bytes=path.stat().st_size))
    return out


def _measure(tmp_path: Path, script: Script, variants: list[ModelVariant], device: Device | None = None,
             **settings: object) -> tuple[dict[str, Cell], DeviceRecord]:
    cells: dict[str, Cell] = {}
    records: list[DeviceRecord] = []
    measure_device(device or Device("fake", transport="ssh"), variants, MeasureSettings(**settings),  # type: ignore[arg-type]
                   RunPolicy(), lambda c: cells.__setitem__(c["variant"], c), records.append,
                   transport_factory=fake_factory(script, tmp_path / "device"))
    assert len(records) == 1
    return cells, records[0]


def test_repeats_are_interleaved_and_merged_into_one_cell(tmp_path: Path) -> None:
    script = Script(cells={"m/a#1": ok([2.0] * 6), "m/a#2": ok([3.0] * 6)})
    cells, record = _measure(tmp_path, script, _variants(tmp_path, "a", "b"), repeats=3)
    # A B, B A, A B: neither neighbour always goes first
    assert [c["id"] for c in script.jobs[0]] == ["m/a#0", "m/b#0", "m/b#1", "m/a#1", "m/a#2", "m/b#2"]
    a = cells["a"]
    assert a["status"] == Status.OK and a["repeats"] == 3 and a["repeat_sizes"] == [6, 6, 6]
    assert a["latency_ms"] is not None and a["latency_ms"]["samples"] == [1.0, 1.1, 0.9, 1.05, 1.0, 0.95] \
        + [2.0] * 6 + [3.0] * 6
    assert cells["b"]["status"] == Status.OK and record["status"] == Status.OK
    # Outputs are evaluated once per variant: only the first repeat carries evaluation inputs.
    assert all(c["eval_inputs"] is None for c in script.jobs[0])


def test_a_failed_repeat_fails_its_variant_and_the_others_go_on(tmp_path: Path) -> None:
    script = Script(cells={"m/a#1": failed("failed_to_invoke", "boom")})
    cells, _ = _measure(tmp_path, script, _variants(tmp_path, "a", "b"), repeats=2)
    assert cells["a"]["status"] == Status.FAILED_TO_INVOKE and cells["a"]["error"] == "boom"
    assert cells["b"]["status"] == Status.OK and cells["b"]["repeats"] == 2


def test_a_lost_connection_is_retried_and_nothing_is_measured_twice(tmp_path: Path) -> None:
    script = Script(drop_connection_after=1, connections=1)
    cells, record = _measure(tmp_path, script, _variants(tmp_path, "a", "b", "c"))
    assert {v: c["status"] for v, c in cells.items()} == {"a": Status.OK, "b": Status.OK, "c": Status.OK}
    assert [[c["id"] for c in job] for job in script.jobs] == [["m/a", "m/b", "m/c"], ["m/b", "m/c"]]
    assert record["files_shipped"] == 4  # the agent and three models, once: the second attempt found them cached


def test_a_connection_that_keeps_dying_costs_the_remaining_cells(tmp_path: Path) -> None:
    script = Script(drop_connection_after=0, connections=99)
    cells, record = _measure(tmp_path, script, _variants(tmp_path, "a", "b"))
    assert cells["a"]["status"] == cells["b"]["status"] == Status.CONNECTION_LOST
    assert len(script.started) == 4  # the first connection and the three bounded reconnects
    assert record["status"] == Status.CONNECTION_LOST


def test_a_silent_cell_times_out_and_the_rest_are_measured_by_a_new_agent(tmp_path: Path) -> None:
    script = Script(cells={"m/b": silent})
    cells, _ = _measure(tmp_path, script, _variants(tmp_path, "a", "b", "c"), cell_timeout_s=0.3)
    assert (cells["a"]["status"], cells["b"]["status"], cells["c"]["status"]) == (Status.OK, Status.TIMEOUT, Status.OK)
    assert "silent" in (cells["b"]["error"] or "")
    assert [c["id"] for c in script.jobs[1]] == ["m/c"]


def test_an_agent_that_ends_early_costs_the_current_cell_only(tmp_path: Path) -> None:
    script = Script(end_after=1)
    cells, _ = _measure(tmp_path, script, _variants(tmp_path, "a", "b", "c"))
    assert cells["a"]["status"] == Status.OK
    assert cells["b"]["status"] == Status.CRASHED and cells["b"]["stderr_tail"] == "fake agent stderr"
    assert cells["c"]["status"] == Status.OK  # measured by the next agent
    assert [[c["id"] for c in job] for job in script.jobs] == [["m/a", "m/b", "m/c"], ["m/c"]]


def test_a_malformed_frame_is_invalid_output_for_that_cell(tmp_path: Path) -> None:
    script = Script(cells={"m/b": raw(b"EDGEBENCH1 12\n{not json!!}\n")})
    cells, _ = _measure(tmp_path, script, _variants(tmp_path, "a", "b", "c"))
    assert cells["a"]["status"] == Status.OK
    assert cells["b"]["status"] == Status.INVALID_OUTPUT and "not JSON" in (cells["b"]["error"] or "")
    assert cells["c"]["status"] == Status.OK


def test_a_frame_for_another_cell_is_refused(tmp_path: Path) -> None:
    script = Script(cells={"m/a": raw(encode_frame({"type": "cell", "id": "m/zzz", "status": "ok",
                                                     "samples_ms": [1.0]}))})
    cells, _ = _measure(tmp_path, script, _variants(tmp_path, "a"))
    assert cells["a"]["status"] == Status.INVALID_OUTPUT and "m/zzz" in (cells["a"]["error"] or "")


def test_a_delegate_the_runner_cannot_load_never_becomes_a_cpu_cell_labelled_with_it(tmp_path: Path) -> None:
    device = Device("phone", transport="ssh", delegate="gpu")  # the agent's runtimes load delegates from a library
    cells, record = _measure(tmp_path, Script(), _variants(tmp_path, "a"), device=device)
    assert cells["a"]["status"] == Status.ENVIRONMENT_ERROR
    assert "delegate_library" in (cells["a"]["error"] or "")
    assert record["status"] == Status.ENVIRONMENT_ERROR


def test_threads_come_from_the_run_else_the_device(tmp_path: Path) -> None:
    script = Script()
    _measure(tmp_path, script, _variants(tmp_path, "a"), device=Device("d", transport="ssh", threads=4))
    _measure(tmp_path, script, _variants(tmp_path, "a"), device=Device("d", transport="ssh", threads=4), threads=2)
    assert [job[0]["threads"] for job in script.jobs] == [4, 2]
