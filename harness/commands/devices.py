"""`edgebench devices`: list, check, set up and purge devices."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from ..common.errors import EdgebenchError, ExitCode
from ..config.inventory import Device
from ..fleet.lab import hold_place, pool_places
from ..fleet.protocol import ProtocolError, read_frame
from ..fleet.shipping import agent_zip, purge, ship
from ..fleet.transport import Transport, TransportError, make_transport
from ..results.record import Status
from .output import default_inventory, fmt, out, table

PROBE_LOCK_TIMEOUT_S = 5.0  # a labgrid device is probed only while its place is free for us to hold


def probe_device(device: Device, trust_new_hosts: bool = False) -> dict[str, Any]:
    """Ship the agent and ask it what the device is; failures are a status, never an exception."""
    info: dict[str, Any] = {"name": device.name, "transport": device.transport, "reachable": False, "error": None}
    try:
        with hold_place(device, PROBE_LOCK_TIMEOUT_S) as target, \
                make_transport(target, trust_new_hosts=trust_new_hosts) as t:
            shipped = ship(t, [agent_zip()])
            result = t.run([device.python, shipped.remote[agent_zip()], "probe", device.runtime], 120)
            info["reachable"] = True
            frame = read_frame(io.BytesIO(result.stdout))
            if frame is None:
                raise ProtocolError(f"no answer (exit {result.code}): {result.stderr.decode(errors='replace')[-300:]}")
            info.update(env=frame.get("env"), thermal=frame.get("thermal"), runtime=frame.get("runtime"),
                        error=frame.get("error"), host_key="verified" if device.transport == "ssh" else None,
                        free_disk_mb=_free_disk_mb(t), edgetpu=edgetpu_info(t), android=t.device_facts())
    except TransportError as exc:
        info.update(status=exc.status, error=exc.message)
    except ProtocolError as exc:
        info.update(status=Status.INVALID_OUTPUT, error=str(exc))
    info.setdefault("status", Status.OK if info["reachable"] and not info["error"] else Status.ENVIRONMENT_ERROR)
    return info


# Coral Edge TPU: a PCIe/M.2 module appears as /dev/apex_N, a USB Accelerator by its USB ids (before and after
# its firmware loads). $1 is a root prefix, for tests on a fabricated sysfs tree.
_EDGETPU_PROBE = r"""root=$1; found=""
for dev in "$root"/dev/apex_*; do [ -e "$dev" ] && found="pcie"; done
for d in "$root"/sys/bus/usb/devices/*; do
  case "$(cat "$d/idVendor" 2>/dev/null):$(cat "$d/idProduct" 2>/dev/null)" in
    1a6e:089a|18d1:9302) found="${found:+$found,}usb";;
  esac
done
echo "edgetpu=$found"
echo "libedgetpu=$(dpkg-query -W -f='${Version}' libedgetpu1-std libedgetpu1-max 2>/dev/null | head -c 80)"
"""


def edgetpu_info(t: Transport, root: str = "") -> dict[str, Any]:
    """Whether an Edge TPU is attached (usb, pcie) and which libedgetpu package is installed."""
    try:
        done = t.run(["sh", "-c", _EDGETPU_PROBE, "sh", root], 30)
    except TransportError:
        return {"attached": None, "libedgetpu": None}
    values = dict(line.split("=", 1) for line in done.stdout.decode(errors="replace").splitlines() if "=" in line)
    return {"attached": values.get("edgetpu") or None, "libedgetpu": values.get("libedgetpu") or None}


def _free_disk_mb(t: Transport) -> int | None:
    """Free space where edgebench keeps its cache (POSIX df: works on Linux and Android's toybox)."""
    try:
        done = t.run(["df", "-Pk", t.home()], 30)
        return int(done.stdout.decode().splitlines()[-1].split()[3]) // 1024 if done.code == 0 else None
    except (TransportError, IndexError, ValueError):
        return None


def cmd_devices(*, inventory: Path | None = None, devices: str | None = None, trust_new_hosts: bool = False,
                as_json: bool = False, detailed: bool = False, stream: TextIO | None = None) -> int:
    """List (or, detailed, check) every selected device: reachable, host key, Python, runtime, disk, heat."""
    inv = default_inventory(inventory)
    selected = inv.select(devices)
    with ThreadPoolExecutor(max(1, len(selected))) as pool:
        infos = list(pool.map(lambda d: probe_device(d, trust_new_hosts), selected))
    places = pool_places(selected)  # who holds which board, for the devices that are in a labgrid pool
    if as_json:
        print(json.dumps({"schema_version": 1, "devices": infos, "labgrid_places": [
            {"coordinator": c, "name": p.name, "tags": p.tags, "acquired": p.acquired, "reservation": p.reservation,
             "state": p.state} for c, p in places]}, indent=1), file=out(stream))
    else:
        print(_devices_table(infos, detailed), file=out(stream))
        if places:
            print("\nlabgrid places\n" + table([[p.name, " ".join(f"{k}={v}" for k, v in p.tags.items()) or "-",
                                                  p.state, c or "labgrid default"] for c, p in places],
                                                ["place", "tags", "state", "coordinator"]), file=out(stream))
    return ExitCode.OK if all(i["status"] == Status.OK for i in infos) else ExitCode.CELL_FAILURES


def _devices_table(infos: list[dict[str, Any]], detailed: bool) -> str:
    rows = []
    for i in infos:
        env = i.get("env") or {}
        rt = i.get("runtime") or {}
        row = [i["name"], i["transport"], str(i["status"]), fmt(env.get("arch")), fmt(env.get("python")),
               f"{rt.get('name')} {rt.get('version')}" if rt else "-"]
        if detailed:
            thermal = i.get("thermal") or {}
            temps = (thermal.get("temperatures_c") or {}).values()
            throttled = thermal.get("throttled")
            tpu = i.get("edgetpu") or {}
            row += [fmt(i.get("host_key")), fmt(env.get("numpy")), fmt(i.get("free_disk_mb")),
                    fmt(max(temps) if temps else None, 1), hex(throttled) if throttled is not None else "-",
                    f"{tpu.get('attached') or 'none'} (libedgetpu {tpu.get('libedgetpu') or 'missing'})"]
        rows.append(row + [(i.get("error") or "")[:100]])
    header = ["device", "transport", "status", "arch", "python", "runtime"]
    if detailed:
        header += ["host key", "numpy", "free MB", "max temp C", "throttled", "edge tpu"]
    return table(rows, header + ["error"])


# Creates a virtual environment on the device and installs numpy + one runtime (from the device's own index).
_SETUP = """set -e
python=$1; venv=$2; shift 2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
"$venv/bin/python" -c 'import numpy; print(numpy.__version__)'
"""
RUNTIME_PACKAGES = {"ai_edge_litert": ["numpy", "ai-edge-litert"], "tflite_runtime": ["numpy<2", "tflite-runtime"]}


def setup_device(device: Device, runtime: str, trust_new_hosts: bool = False) -> dict[str, Any]:
    """Prepare a device: a venv with numpy and the runtime that fits its Python and architecture."""
    probe = probe_device(device, trust_new_hosts)
    env = probe.get("env") or {}
    if not probe["reachable"]:
        return {**probe, "venv": None}
    if runtime == "auto":
        major_minor = tuple(int(x) for x in (env.get("python") or "0.0").split(".")[:2])
        runtime = "ai_edge_litert" if major_minor >= (3, 10) and env.get("arch") in ("x86_64", "aarch64") \
            else "tflite_runtime"
    try:
        with make_transport(device, trust_new_hosts=trust_new_hosts) as t:
            venv = t.home().rstrip("/") + "/venv"
            done = t.run(["sh", "-c", _SETUP, "sh", device.python, venv, *RUNTIME_PACKAGES[runtime]], 1800)
    except TransportError as exc:  # e.g. the device stopped answering: its row says so, the others go on
        return {"name": device.name, "status": exc.status, "runtime": runtime, "venv": None, "error": exc.message}
    ok = done.code == 0
    return {"name": device.name, "status": Status.OK if ok else Status.SETUP_FAILED, "runtime": runtime,
            "venv": f"{venv}/bin/python" if ok else None,
            "error": None if ok else done.stderr.decode(errors="replace").strip()[-400:]}


def cmd_setup(*, inventory: Path | None = None, devices: str | None = None, runtime: str = "auto",
              trust_new_hosts: bool = False, stream: TextIO | None = None) -> int:
    if runtime not in ("auto", *RUNTIME_PACKAGES):
        raise EdgebenchError(f"unknown runtime {runtime!r} (auto, {', '.join(RUNTIME_PACKAGES)})", where="--runtime")
    selected = default_inventory(inventory).select(devices)
    with ThreadPoolExecutor(max(1, len(selected))) as pool:
        results = list(pool.map(lambda d: setup_device(d, runtime, trust_new_hosts), selected))
    rows = [[r["name"], str(r["status"]), fmt(r.get("runtime") if r.get("venv") else None), fmt(r.get("venv")),
             (r.get("error") or "")[:100]] for r in results]
    print(table(rows, ["device", "status", "runtime", "python to use (ansible_python_interpreter)", "error"]),
          file=out(stream))
    return ExitCode.OK if all(r["status"] == Status.OK for r in results) else ExitCode.CELL_FAILURES


def cmd_purge(*, inventory: Path | None = None, devices: str | None = None, trust_new_hosts: bool = False,
              stream: TextIO | None = None) -> int:
    failed = False
    for device in default_inventory(inventory).select(devices):
        try:
            with make_transport(device, trust_new_hosts=trust_new_hosts) as t:
                purge(t)
        except TransportError as exc:
            print(f"{device.name}: {exc.status.value}: {exc.message}", file=out(stream))
            failed = True
    return ExitCode.CELL_FAILURES if failed else ExitCode.OK

