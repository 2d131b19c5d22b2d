"""Sustained mode: latency over time, the device's telemetry beside it, change points, energy, the gate.

Telemetry is read from a fabricated sysfs tree ($EDGEBENCH_SYSFS_ROOT) and a stand-in `vcgencmd` printing the
firmware's output format; the end-to-end runs use the real agent and interpreter on the `local` device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from device_agent import telemetry
from harness.results.sustained import analyse, energy_mj_per_inference, ranking_flips
from tests.support.cli import run_cli

# `vcgencmd pmic_read_adc` on a Raspberry Pi 5 (firmware 2024+): one line per rail, currents then voltages.
PMIC_OUTPUT = """\
 3V7_WL_SW_A current(0)=0.00000000A
   3V3_SYS_A current(1)=0.05758200A
   1V8_SYS_A current(2)=0.17373200A
  DDR_VDD2_A current(3)=0.02244600A
  DDR_VDDQ_A current(4)=0.00000000A
   1V1_SYS_A current(5)=0.17568000A
   0V8_SYS_A current(6)=0.34744000A
  VDD_CORE_A current(7)=1.20000000A
 3V7_WL_SW_V volt(8)=3.71191400V
   3V3_SYS_V volt(9)=3.31536400V
   1V8_SYS_V volt(10)=1.79998600V
  DDR_VDD2_V volt(11)=1.11069900V
  DDR_VDDQ_V volt(12)=0.60390880V
   1V1_SYS_V volt(13)=1.10579400V
   0V8_SYS_V volt(14)=0.80073230V
  VDD_CORE_V volt(15)=0.85000000V
     EXT5V_V volt(24)=5.15096000V
"""
PMIC_WATTS = (0.057582 * 3.315364 + 0.173732 * 1.799986 + 0.022446 * 1.110699 + 0.17568 * 1.105794
              + 0.34744 * 0.8007323 + 1.2 * 0.85)


def _write(path: Path, text: str) -> None:
    """Atomically, as sysfs reads are: a reader never sees a half-written value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fake_sysfs(root: Path, *, hwmon: bool = True, throttled_file: bool = True) -> Path:
    _write(root / "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    _write(root / "sys/class/thermal/thermal_zone0/temp", "45000\n")
    for cpu in range(4):
        _write(root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", "1800000\n")
    if throttled_file:
        _write(root / "sys/devices/platform/soc/soc:firmware/get_throttled", "0x0\n")
    if hwmon:
        _write(root / "sys/class/hwmon/hwmon0/power1_input", "2500000\n")  # microwatts
    return root


def _heat_up(root: Path, stop: threading.Event) -> None:
    """The board warms up, the governor steps the frequency down, then the firmware throttles."""
    temp, freq = 45.0, 1800000
    while not stop.wait(0.03):
        temp += 1.5
        if temp > 60:
            freq = 1500000
        _write(root / "sys/class/thermal/thermal_zone0/temp", f"{int(temp * 1000)}\n")
        for cpu in range(4):
            _write(root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", f"{freq}\n")
        if temp > 70:
            _write(root / "sys/devices/platform/soc/soc:firmware/get_throttled", "0x50005\n")


def test_telemetry_follows_a_board_that_heats_up_and_throttles(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fake_sysfs(tmp_path / "root")
    monkeypatch.setenv("EDGEBENCH_SYSFS_ROOT", str(root))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no vcgencmd
    stop = threading.Event()
    heater = threading.Thread(target=_heat_up, args=(root, stop))
    sensors = telemetry.Telemetry(time.perf_counter_ns(), interval_s=0.05).start()
    heater.start()
    time.sleep(1.0)
    stop.set()
    heater.join()
    readings = sensors.stop()
    assert sensors.power_method == "hwmon"
    assert len(readings) >= 10
    temps = [r["temperatures_c"]["cpu-thermal"] for r in readings]
    assert temps[0] == 45.0 and temps[-1] > 70 and temps == sorted(temps)
    assert readings[0]["cpu_freq_khz"] == [1800000] * 4 and readings[-1]["cpu_freq_khz"] == [1500000] * 4
    assert readings[0]["throttled"] == 0 and readings[-1]["throttled"] == 0x50005
    assert {r["power_w"] for r in readings} == {2.5}
    assert [r["t_ms"] for r in readings] == sorted(r["t_ms"] for r in readings)


def test_a_stand_in_vcgencmd_gives_throttle_flags_and_pmic_power(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fake_sysfs(tmp_path / "root", hwmon=False, throttled_file=False)
    bin_dir = tmp_path / "bin"
    _write(bin_dir / "pmic.txt", PMIC_OUTPUT)
    _write(bin_dir / "vcgencmd", f'#!/bin/sh\ncase "$1" in\n  get_throttled) echo throttled=0x50005 ;;\n'
                                 f'  pmic_read_adc) cat "{bin_dir / "pmic.txt"}" ;;\n  *) exit 1 ;;\nesac\n')
    (bin_dir / "vcgencmd").chmod(0o755)
    monkeypatch.setenv("EDGEBENCH_SYSFS_ROOT", str(root))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert telemetry.parse_pmic_adc(PMIC_OUTPUT) == pytest.approx(PMIC_WATTS, rel=1e-6)
    method, _ = telemetry.power_source()
    assert method == "pmic_read_adc"
    reading = telemetry.Telemetry(time.perf_counter_ns()).reading()
    assert reading["throttled"] == 0x50005
    assert reading["power_w"] == pytest.approx(PMIC_WATTS, rel=1e-6)


def test_no_power_reading_means_no_energy_never_a_guess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEBENCH_SYSFS_ROOT", str(_fake_sysfs(tmp_path / "root", hwmon=False)))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert telemetry.power_source() == (None, None)
    readings = [{"t_ms": 0.0, "temperatures_c": None, "cpu_freq_khz": None, "throttled": None, "power_w": None}] * 3
    s = analyse([1.0] * 100, [i * 10.0 for i in range(100)], readings, None)  # type: ignore[arg-type]
    assert s["energy_mj_per_inference"] is None and s["energy_method"] is None


def _series(rng: np.random.Generator, seconds: float, level_at: "callable", step_ms: float = 10.0) -> tuple:
    t = np.arange(0, seconds * 1000, step_ms)
    samples = np.array([level_at(x / 1000) for x in t]) * rng.lognormal(0, 0.04, t.size)
    return samples.tolist(), t.tolist()


def test_a_slowdown_is_found_near_its_onset_with_burst_and_sustained_p90() -> None:
    rng = np.random.default_rng(0)
    samples, t = _series(rng, 60, lambda s: 5.0 if s < 30 else 7.0)
    readings = [{"t_ms": k * 1000.0, "temperatures_c": {"cpu": 50.0 + k}, "cpu_freq_khz": [1800000 if k < 30 else
                 1200000], "throttled": 0 if k < 30 else 0x2, "power_w": 3.0} for k in range(61)]
    s = analyse(samples, t, readings, "hwmon")  # type: ignore[arg-type]
    assert [round(p["t_s"]) for p in s["change_points"]] in ([30], [29], [31])
    assert s["first_slowdown_s"] == s["change_points"][0]["t_s"]
    assert s["burst_p90_ms"] < 5.6 < 7.0 < s["sustained_p90_ms"]
    assert s["at_slowdown"]["before"]["cpu_freq_khz"] == [1800000]
    assert s["at_slowdown"]["after"]["cpu_freq_khz"] == [1200000]
    # 3 W for 60 s over 6000 invokes
    assert s["energy_mj_per_inference"] == pytest.approx(3.0 * 60 * 1000 / 6000, rel=0.02)


def test_a_steady_run_claims_no_change_point() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        samples, t = _series(rng, 60, lambda s: 5.0)
        s = analyse(samples, t, [], None)
        assert s["change_points"] == [] and s["first_slowdown_s"] is None


def test_energy_integrates_power_over_the_window() -> None:
    readings = [{"t_ms": k * 500.0, "power_w": 2.0 + (k % 2)} for k in range(5)]  # 2,3,2,3,2 W over 2 s
    assert energy_mj_per_inference(readings, 100) == pytest.approx(5.0 * 1000 / 100)  # type: ignore[arg-type]


def test_a_ranking_that_flips_under_sustained_load_is_reported() -> None:
    def cell(variant: str, burst: float, sustained: float) -> dict:
        return {"device": "pi", "model": "m", "variant": variant,
                "sustained": {"burst_p90_ms": burst, "sustained_p90_ms": sustained}}
    flips = ranking_flips([cell("int8", 4.0, 9.0), cell("fp16", 5.0, 6.0)])
    assert flips == [{"device": "pi", "model": "m", "burst_order": ["int8", "fp16"],
                      "sustained_order": ["fp16", "int8"]}]
    assert ranking_flips([cell("int8", 4.0, 5.0), cell("fp16", 5.0, 6.0)]) == []


# -- end to end on the local device ------------------------------------------------------------------
CONV_SCRIPT = r'''
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import keras, tensorflow as tf
keras.utils.set_random_seed(0)
x = keras.Input((128, 128, 32), name="image")
h = keras.layers.Conv2D(32, 3, padding="same")(x)
h = keras.layers.Conv2D(32, 3, padding="same")(h)
m = keras.Model(x, keras.layers.GlobalAveragePooling2D()(h))
open(sys.argv[1], "wb").write(tf.lite.TFLiteConverter.from_keras_model(m).convert())
'''


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 3x3 convolutions on 128x128x32: invokes of ~6 ms, longer than a scheduler time slice (a load can only
    lengthen an invoke that it interrupts)."""
    path = tmp_path_factory.mktemp("sustained") / "conv.tflite"
    subprocess.run([sys.executable, "-c", CONV_SCRIPT, str(path)], check=True, capture_output=True, timeout=300)
    return path


def _load_cpus(stop: threading.Event, procs: list[subprocess.Popen[bytes]], seconds: float) -> None:
    """Two busy processes per CPU, CPU 0 (where the agent is pinned) included: bounded, they stop by themselves.
    Each in its own session: the agent runs in one (the local transport starts it so), and with the scheduler's
    autogroups a load in this test's session would only compete with the test, not with the agent."""
    code = f"import os,time; os.sched_setaffinity(0, range(os.cpu_count())); end = time.time() + {seconds}\n" \
           "while time.time() < end: pass"
    procs += [subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
              for _ in range(2 * (os.cpu_count() or 1))]


def _sustained_run(tmp_path: Path, model: Path, seconds: int, budgets: Path | None = None) -> tuple[int, dict]:
    inv = tmp_path / "inventory.yaml"
    inv.write_text('all:\n  hosts:\n    pinned:\n      transport: local\n      taskset: "1"\n      threads: 1\n')
    store = tmp_path / "results.sqlite"
    args = ["run", "--models", model, "--inventory", inv, "--devices", "pinned", "--sustained", f"{seconds}s",
            "--store", store, "-q"]
    result = run_cli(*args, *(["--budgets", budgets] if budgets else []))
    export = json.loads(run_cli("export", "--store", store).out)
    return result.code, export


def test_a_load_that_starts_half_way_is_found_as_a_slowdown(tmp_path: Path, conv_model: Path) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    start = time.monotonic()
    timer = threading.Timer(9.0, _load_cpus, args=(threading.Event(), procs, 14.0))
    timer.start()
    try:
        code, export = _sustained_run(tmp_path, conv_model, 18)
    finally:
        timer.cancel()
        running = [p.poll() is None for p in procs]
        for p in procs:
            p.kill()
            p.wait()
    assert running and all(running), "the load processes did not run to the end of the measurement"
    onset = 9.0  # seconds after the command started; the timed loop starts a few seconds after it
    cell = export["results"][0]
    assert code == 0, cell.get("error")
    s = cell["sustained"]
    assert 15 <= s["duration_s"] <= 19 and len(s["sample_t_ms"]) == cell["latency_ms"]["count"]
    assert s["telemetry"] and s["telemetry"][-1]["t_ms"] >= 15000
    assert s["first_slowdown_s"] is not None, str(s["series_p50_ms"])
    assert onset - 6 <= s["first_slowdown_s"] <= onset + 1, (s["first_slowdown_s"], time.monotonic() - start)
    assert s["sustained_p90_ms"] > 1.3 * s["burst_p90_ms"]
    assert export["run"]["settings"]["sustained"] == 18.0


def test_without_load_no_slowdown_is_claimed_and_the_gate_bounds_sustained_p90(tmp_path: Path,
                                                                                conv_model: Path) -> None:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("schema_version: 1\nbudgets:\n  - sustained_p90_ms: 0.001\n")
    # This machine is shared: a neighbour can really slow CPU 0 for a while, and then a change point is right.
    # So up to three runs, each on its own store: on an unloaded device the detector must not claim a slowdown
    # in all of them.
    found = []
    for attempt in range(3):
        work = tmp_path / f"try{attempt}"
        work.mkdir()
        code, export = _sustained_run(work, conv_model, 8, budgets)
        s = export["results"][0]["sustained"]
        if not s["change_points"]:
            break
        found.append(s["series_p50_ms"])
    assert s["change_points"] == [], found
    assert code == 1  # no invoke of this model takes a microsecond: the budget fails
    html = tmp_path / "r.html"
    assert run_cli("report", "--store", work / "results.sqlite", "-o", html).code == 0
    text = html.read_text()
    assert "Sustained" in text and "sustained p90" in text and "no slowdown found" in text


def test_a_sustained_duration_that_is_not_one_is_refused_naming_the_flag(tmp_path: Path, conv_model: Path) -> None:
    result = run_cli("run", "--models", conv_model, "--sustained", "5 minutes", "--store", tmp_path / "s.sqlite")
    assert result.code == 2 and "--sustained" in result.err and "duration" in result.err


# `dumpsys thermalservice` on Android 10+ (its first lines; the HAL temperatures follow).
THERMALSERVICE = """\
IsStatusOverride: false
ThermalEventListeners:
\tcallbacks: 1
ThermalStatusListeners:
\tcallbacks: 2
Thermal Status: 3
Cached temperatures:
\tTemperature{mValue=47.25, mType=0, mName=CPU0, mStatus=3}
"""


def test_android_thermal_status_is_read_every_tenth_reading_and_reported(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    _write(bin_dir / "out.txt", THERMALSERVICE)
    _write(bin_dir / "dumpsys", f'#!/bin/sh\n[ "$1" = thermalservice ] && cat "{bin_dir / "out.txt"}"\n'
                                f'echo x >> "{bin_dir / "calls"}"\n')
    (bin_dir / "dumpsys").chmod(0o755)
    monkeypatch.setenv("EDGEBENCH_SYSFS_ROOT", str(_fake_sysfs(tmp_path / "root", hwmon=False)))
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    probe = telemetry.Telemetry(time.perf_counter_ns(), interval_s=0.01)
    probe.start()
    time.sleep(0.5)
    readings = probe.stop()
    statuses = [r["thermal_status"] for r in readings[:-1]]
    assert statuses[0] == 3 and statuses[1:10] == [None] * 9  # one process every STATUS_EVERY readings
    assert len((bin_dir / "calls").read_text().split()) == sum(s is not None for s in statuses) + 1
    samples = [5.0] * 100
    view = analyse(samples, [i * 10.0 for i in range(100)], readings, None)
    assert view["thermal_status_max"] == 3
    from harness.report.sustained_view import sustained_views
    cell = {"device": "phone", "model": "m", "variant": "fp32", "sustained": view}
    assert sustained_views([cell])["cells"][0]["android_thermal"] == "Android thermal status reached 3 (severe)"
    # not Android: no dumpsys, no status, no process
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert telemetry.Telemetry(time.perf_counter_ns()).reading()["thermal_status"] is None
