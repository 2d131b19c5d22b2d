"""`edgebench run` over SSH against real OpenSSH servers on loopback, one per device, each with its own host key.

The agent runs there from a virtual environment with numpy and ai-edge-litert
only (no TensorFlow). Fault tests: a server killed mid-suite, host keys
unknown/changed, an unreachable port, a crashing agent, a host crash resumed.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import export_run as _export, run_cli
from tests.support.sleep_runtime import sleepy_python, stand_in_model
from tests.support.sshd import SSHServer, free_port, keygen, trust
from tests.support.venvs import device_python


@pytest.fixture(scope="module")
def agent_python() -> Path:
    return device_python("litert")


def _inventory(path: Path, servers: list[SSHServer], python: Path, **host_extra: Any) -> Path:
    lines = ["all:", "  children:", "    lab:", "      hosts:"]
    for i, s in enumerate(servers, 1):
        lines += [f"        dev-{i}:", "          ansible_host: 127.0.0.1", f"          ansible_port: {s.port}",
                  f"          ansible_user: {s.user}", f"          ansible_ssh_private_key_file: {s.client_key_path}",
                  f"          ansible_python_interpreter: {python}"]
        lines += [f"          {k}: {v}" for k, v in host_extra.get(f"dev-{i}", {}).items()]
    path.write_text("\n".join(lines) + "\n")
    return path




def _cells(store: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["device"], c["variant"]): c for c in _export(store)["results"]}


RUN = ("--runs", "5", "--min-seconds", "0", "-q")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def lab(sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path, agent_python: Path,
        tmp_path: Path) -> tuple[list[SSHServer], Path, Path]:
    """Three trusted devices: (servers, inventory, store)."""
    servers = sshd_servers(3)
    trust(ssh_home, servers)
    return servers, _inventory(tmp_path / "inv.yaml", servers, agent_python), tmp_path / "s.sqlite"


def test_three_devices_in_parallel_and_nothing_shipped_twice(lab: tuple[list[SSHServer], Path, Path],
                                                             converted: Path) -> None:
    _, inv, store = lab
    first = run_cli("run", "--models", converted, "--inventory", inv, "--devices", "lab", "--store", store, *RUN)
    assert first.code == 0, first.err
    cells = _cells(store)
    assert {key: c["status"] for key, c in cells.items()} == {
        (d, v): "ok" for d in ("dev-1", "dev-2", "dev-3") for v in ("fp32", "fp16", "dynamic", "int8", "int16x8")}
    assert cells[("dev-1", "fp32")]["runtime"]["name"] == "ai_edge_litert"
    export = _export(store)
    assert all(d["bytes_shipped"] > 0 for d in export["devices"])
    second = run_cli("run", "--models", converted, "--inventory", inv, "--store", store, *RUN)
    assert "shipped 0 bytes" in second.out
    listed = run_cli("devices", "--inventory", inv, "--devices", "dev-2")
    assert listed.code == 0 and "dev-2" in listed.out and "ai_edge_litert" in listed.out


def test_a_server_killed_mid_suite_loses_only_its_remaining_cells(lab: tuple[list[SSHServer], Path, Path],
                                                                  converted: Path) -> None:
    servers, inv, store = lab

    def kill_after_first_cell() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with sqlite3.connect(store) as db:
                    if db.execute("SELECT count(*) FROM cells WHERE device='dev-2'").fetchone()[0]:
                        servers[1].kill()
                        return
            except sqlite3.OperationalError:
                pass
            time.sleep(0.05)

    killer = threading.Thread(target=kill_after_first_cell)
    killer.start()
    result = run_cli("run", "--models", converted, "--inventory", inv, "--runs", "30", "--min-seconds", "0.4",
                     "--store", store, "-q")
    killer.join()
    assert result.code == 3
    cells = _cells(store)
    assert len(cells) == 15  # every cell has a result
    for device in ("dev-1", "dev-3"):
        assert cells[(device, "fp32")]["status"] == "ok"
    dev2 = [c for (d, _), c in cells.items() if d == "dev-2"]
    assert any(c["status"] == "ok" and c["measured_at"] for c in dev2)  # kept
    lost = [c for c in dev2 if c["status"] in ("connection_lost", "unreachable")]
    assert lost and all(c["error"] for c in lost)


def test_host_keys_unknown_changed_and_trusted(sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path,
                                               agent_python: Path, converted: Path, tmp_path: Path) -> None:
    (server,) = sshd_servers(1)
    inv = _inventory(tmp_path / "inv.yaml", [server], agent_python)
    models = ("--models", converted / "fp32.tflite")
    store = tmp_path / "s.sqlite"
    refused = run_cli("run", *models, "--inventory", inv, "--store", store, *RUN)
    assert refused.code == 3 and _cells(store)[("dev-1", "tflite")]["status"] == "host_key_unknown"
    trusted = run_cli("run", *models, "--inventory", inv, "--store", store, "--trust-new-hosts", *RUN)
    assert trusted.code == 0, trusted.err
    assert server.host_public_key.split()[1] in (ssh_home / ".ssh" / "known_hosts").read_text()
    assert run_cli("run", *models, "--inventory", inv, "--store", store, *RUN).code == 0  # recorded: no opt-in now
    impostor = keygen(tmp_path / "other_host_key")
    (ssh_home / ".ssh" / "known_hosts").write_text(f"{server.known_hosts_name} {impostor}\n")
    changed = run_cli("run", *models, "--inventory", inv, "--store", store, "--trust-new-hosts", *RUN)
    assert changed.code == 3
    cell = _cells(store)[("dev-1", "tflite")]
    assert cell["status"] == "host_key_changed" and "changed" in cell["error"]


def test_unreachable_port_and_crashing_agent(sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path,
                                             agent_python: Path, converted: Path, native_lib: Path,
                                             tmp_path: Path) -> None:
    good, crashing = sshd_servers(2)
    trust(ssh_home, [good, crashing])
    dead = SSHServer(**{**good.__dict__, "port": free_port()})
    inv = _inventory(tmp_path / "inv.yaml", [good, crashing, dead], agent_python,
                     **{"dev-2": {"delegate_library": str(native_lib), "delegate_options": "{mode: segv}"}})
    store = tmp_path / "s.sqlite"
    started = time.monotonic()
    result = run_cli("run", "--models", converted / "fp32.tflite", "--inventory", inv, "--store", store, *RUN)
    assert result.code == 3
    assert time.monotonic() - started < 60
    cells = _cells(store)
    assert cells[("dev-1", "tflite")]["status"] == "ok"
    assert cells[("dev-2", "tflite")]["status"] == "crashed" and "SIGSEGV" in cells[("dev-2", "tflite")]["error"]
    assert cells[("dev-3", "tflite")]["status"] == "unreachable"


def test_host_crash_then_resume(sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path, agent_python: Path,
                                converted: Path, tmp_path: Path) -> None:
    (server,) = sshd_servers(1)
    trust(ssh_home, [server])
    inv = _inventory(tmp_path / "inv.yaml", [server], agent_python)
    store = tmp_path / "s.sqlite"
    argv = [sys.executable, "-m", "harness", "run", "--models", str(converted), "--inventory", str(inv),
            "--store", str(store), "--runs", "30", "--min-seconds", "0.5", "-q"]
    host = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ),
                            start_new_session=True)
    deadline = time.monotonic() + 90
    measured = 0
    while time.monotonic() < deadline and not measured:
        time.sleep(0.1)
        try:
            with sqlite3.connect(store) as db:
                measured = db.execute("SELECT count(*) FROM cells").fetchone()[0]
        except sqlite3.OperationalError:
            pass
    os.killpg(host.pid, signal.SIGKILL)  # the host dies: no clean shutdown at all
    host.wait()
    before = {(c["device"], c["variant"]): c for c in _export(store)["results"]}
    assert 1 <= len(before) < 5
    run_id = _export(store)["run"]["id"]
    # resumed with the run's own settings (30 runs, 0.5 s): a different one given here would be refused
    resumed = run_cli("run", "--models", converted, "--inventory", inv, "--store", store, "--resume", run_id, "-q")
    assert resumed.code == 0, resumed.err
    after = _cells(store)
    assert {v: c["status"] for (_, v), c in after.items()} == dict.fromkeys(
        ("fp32", "fp16", "dynamic", "int8", "int16x8"), "ok")
    for key, cell in before.items():
        if cell["status"] == "ok":
            assert after[key]["latency_ms"]["samples"] == cell["latency_ms"]["samples"]  # not re-measured


def _agents_under(root: Path) -> set[int]:
    """Live agent processes (`PYTHON AGENT.zip serve RUNTIME`) whose agent lives under ``root``: the local
    device's work directory and the sshd devices' homes are all in the test's tmp dir."""
    found = set()
    for entry in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"serve" in argv and state not in ("Z", "X") and any(a.startswith(str(root).encode()) for a in argv):
            found.add(int(entry))
    return found


def _stored(store: Path) -> list[tuple[str, str]]:
    try:
        with sqlite3.connect(store) as db:
            return db.execute("SELECT device, status FROM cells").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def test_ctrl_c_kills_every_agent_at_once_and_keeps_the_cells_measured_before(
        sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path, tmp_path: Path) -> None:
    (server,) = sshd_servers(1)
    trust(ssh_home, [server])
    python = sleepy_python(tmp_path / "rt", 100)  # each cell: 20 invokes of 100 ms
    models = tmp_path / "models"
    models.mkdir()
    for i in range(12):  # ~2.5 s a cell, ~30 s for each device's twelve
        stand_in_model(models / f"m{i:02}.tflite")
    inv = _inventory(tmp_path / "inv.yaml", [server], python,
                     **{"dev-1": {"runtime": "tensorflow"}})
    with open(inv, "a") as f:
        f.write(f"    here:\n      hosts:\n        here: {{transport: local, ansible_python_interpreter: {python}, "
                f"runtime: tensorflow, workdir: {tmp_path / 'here-work'}}}\n")
    store = tmp_path / "s.sqlite"
    run = subprocess.Popen([sys.executable, "-m", "harness", "run", "--models", str(models), "--inventory", str(inv),
                            "--store", str(store), "--runs", "20", "--min-seconds", "0", "--warmup", "0", "-q"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    deadline = time.monotonic() + 120
    while {d for d, _ in _stored(store)} != {"dev-1", "here"} or len(_agents_under(tmp_path)) < 2:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "the two devices never measured a cell each"
        time.sleep(0.1)
    run.send_signal(signal.SIGINT)  # to edgebench alone: its agents run in sessions of their own
    signalled, before = time.monotonic(), len(_stored(store))
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130 and "--resume" in err and "Traceback" not in err, err
    assert time.monotonic() - signalled < 10  # not the ~20 s of cells left on each device
    assert not _agents_under(tmp_path)  # the agents and their measuring children: killed, not left measuring
    stored = _stored(store)
    assert {status for _, status in stored} == {"ok"}  # the interruption is no cell's failure
    assert before <= len(stored) <= before + 2 < 24  # at most the cells in flight at the signal were added
    assert {device for device, _ in stored} == {"dev-1", "here"}


def test_devices_check_setup_and_purge(sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path,
                                       tmp_path: Path) -> None:
    (server,) = sshd_servers(1)
    trust(ssh_home, [server])
    # A device with a bare Python: no numpy, no runtime. `check` says so; `setup` fixes it.
    inv = _inventory(tmp_path / "inv.yaml", [server], device_python("bare"))
    check = run_cli("devices", "check", "--inventory", inv)
    assert check.code == 3 and "environment_error" in check.out and "no TFLite runtime" in check.out
    setup = run_cli("devices", "setup", "--inventory", inv, "--runtime", "ai_edge_litert")
    assert setup.code == 0, setup.out + setup.err
    venv_python = Path(setup.out.splitlines()[1].split()[3])
    assert venv_python.is_file() and str(venv_python).startswith(str(server.home))
    inv = _inventory(tmp_path / "inv2.yaml", [server], venv_python)
    check = run_cli("devices", "check", "--inventory", inv, "--json")
    (info,) = json.loads(check.out)["devices"]
    assert check.code == 0 and info["runtime"]["name"] == "ai_edge_litert" and info["host_key"] == "verified"
    assert info["free_disk_mb"] > 0 and info["env"]["numpy"]
    cache = server.home / ".cache" / "edgebench" / "cache"
    assert any(cache.iterdir())
    assert run_cli("devices", "purge", "--inventory", inv).code == 0
    assert not cache.exists()
