"""What the device's own sensors say while a sustained cell runs: read on a side thread about once a second.

Each reading is {"t_ms", "temperatures_c", "cpu_freq_khz", "throttled", "power_w", "thermal_status"}; t_ms is
on the same clock as the samples' timestamps (time.perf_counter_ns, ms since the timed loop started). A value
that cannot be read is null, never 0 and never guessed.

On Android (`dumpsys` on PATH) every STATUS_EVERY-th reading also carries the platform's thermal status
(PowerManager's 0 none .. 6 shutdown, from `dumpsys thermalservice`): that starts a process, so it is read
every ~10 s rather than every second; the other readings have it null.

Power, where the board exposes it (the first source found is used for the whole cell, and named):
- "hwmon": an INA219/INA260-style hwmon sensor's power1_input (microwatts);
- "pmic_read_adc": Raspberry Pi 5 `vcgencmd pmic_read_adc`, the sum of V x I over the rails that report
  both (an estimate: conversion losses and unmeasured rails are not in it);
- "battery": Android/Linux power_supply/battery current_now x voltage_now (microamps, microvolts; the
  sign convention differs between devices, so the magnitude is used).

The sysfs root can be moved with $EDGEBENCH_SYSFS_ROOT (tests use a fabricated tree); `vcgencmd` is
whatever is first on PATH.
"""

import glob
import os
import re
import shutil
import subprocess
import threading
import time

from . import environment

_PMIC_LINE = re.compile(r"^\s*([A-Za-z0-9_]+?)_([AV])\s*(?:current|volt|voltage)?(?:\(\d+\))?\s*=\s*([0-9.eE+-]+)\s*[AV]\s*$")


def parse_pmic_adc(text):
    """Watts from `vcgencmd pmic_read_adc` output (sum of V x I of rails with both), or None."""
    amps, volts = {}, {}
    for line in text.splitlines():
        m = _PMIC_LINE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        (amps if m.group(2) == "A" else volts)[m.group(1)] = value
    rails = [volts[name] * amps[name] for name in amps if name in volts]
    return round(sum(rails), 6) if rails else None


def _hwmon_power():
    for path in sorted(glob.glob(environment.sysfs("/sys/class/hwmon/hwmon*/power1_input"))):
        microwatts = environment.read_int(path)
        if microwatts is not None:
            return microwatts / 1e6
    return None


def _battery_power():
    base = environment.sysfs("/sys/class/power_supply/battery/")
    current, voltage = environment.read_int(base + "current_now"), environment.read_int(base + "voltage_now")
    if current is None or voltage is None:
        return None
    return abs(current) * voltage / 1e12


def _pmic_power():
    try:
        out = subprocess.run(["vcgencmd", "pmic_read_adc"], capture_output=True, text=True, timeout=2).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_pmic_adc(out[:65536])


STATUS_EVERY = 10
_STATUS_LINE = re.compile(r"Thermal Status:\s*(\d+)")


def android_thermal_status():
    """PowerManager's thermal status from `dumpsys thermalservice`, or None (not Android, or unreadable)."""
    try:
        out = subprocess.run(["dumpsys", "thermalservice"], capture_output=True, text=True, timeout=2).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = _STATUS_LINE.search(out[:65536])
    return int(m.group(1)) if m else None


POWER_SOURCES = (("hwmon", _hwmon_power), ("pmic_read_adc", _pmic_power), ("battery", _battery_power))


def power_source():
    """(name, reader) of the first power reading this device gives, or (None, None)."""
    for name, reader in POWER_SOURCES:
        if reader() is not None:
            return name, reader
    return None, None


class Telemetry(object):
    """Readings on a daemon thread every `interval_s` until stop(); `start_ns` is the timeline's zero."""

    def __init__(self, start_ns, interval_s=1.0, max_readings=100000):
        self.start_ns = start_ns
        self.interval_s = interval_s
        self.max_readings = max_readings
        self.readings = []
        self.power_method, self._power = power_source()
        self._android = shutil.which("dumpsys") is not None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)

    def reading(self, with_status=True):
        state = environment.thermal()
        return {
            "t_ms": round((time.perf_counter_ns() - self.start_ns) / 1e6, 3),
            "temperatures_c": state["temperatures_c"],
            "cpu_freq_khz": state["cpu_freq_khz"],
            "throttled": state["throttled"],
            "power_w": self._power() if self._power else None,
            "thermal_status": android_thermal_status() if self._android and with_status else None,
        }

    def _run(self):
        while len(self.readings) < self.max_readings:
            self.readings.append(self.reading(len(self.readings) % STATUS_EVERY == 0))
            if self._stop.wait(self.interval_s):
                return

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.readings.append(self.reading())  # the state at the end of the window
        return self.readings
