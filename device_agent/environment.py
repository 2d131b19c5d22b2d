"""What the device is, and its thermal state. A value we cannot read is None, never 0.

Every /sys path is read under $EDGEBENCH_SYSFS_ROOT when it is set (a fabricated tree, for tests).
"""

import glob
import os
import platform
import re
import subprocess
import sys

THROTTLED_SYSFS = "/sys/devices/platform/soc/soc:firmware/get_throttled"


def sysfs(path):
    """A /sys or /proc path, under $EDGEBENCH_SYSFS_ROOT when set."""
    root = os.environ.get("EDGEBENCH_SYSFS_ROOT")
    return os.path.join(root, path.lstrip("/")) if root else path


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _int(text):
    try:
        return int(text, 0) if text is not None else None
    except ValueError:
        return None


def read_int(path):
    return _int(_read(path))


def _cpu_model():
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            if line.startswith(key) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _os_name():
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def throttled():
    """Raspberry Pi firmware throttle flags, or None where there is no such firmware."""
    value = read_int(sysfs(THROTTLED_SYSFS))
    if value is not None:
        return value
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=2).stdout
        return _int(out.strip().split("=", 1)[1]) if "=" in out else None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_number(path):
    digits = re.findall(r"cpu(\d+)", path)
    return int(digits[-1]) if digits else 0


def thermal():
    """State that changes during a run: read before and after each cell."""
    temps = {}
    for zone in sorted(glob.glob(sysfs("/sys/class/thermal/thermal_zone*"))):
        milli = read_int(zone + "/temp")
        if milli is not None:
            temps[_read(zone + "/type") or os.path.basename(zone)] = milli / 1000.0
    freqs = [read_int(p) for p in sorted(glob.glob(sysfs("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq")),
                                         key=_cpu_number)]
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "temperatures_c": temps or None,
        "throttled": throttled(),
        "cpu_freq_khz": [f for f in freqs if f is not None] or None,
        "loadavg": load,
    }


def _numpy_version():
    try:
        import numpy
    except ImportError:
        return None
    return numpy.__version__


def describe(runtime):
    governors = sorted(
        {g for g in (_read(p) for p in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")) if g}
    )
    return {
        "arch": platform.machine() or None,
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "os": _os_name(),
        "kernel": platform.release() or None,
        "hostname": platform.node() or None,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "numpy": _numpy_version(),
        "runtime": runtime.describe() if runtime else None,
        "governor": ",".join(governors) or None,
        "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
