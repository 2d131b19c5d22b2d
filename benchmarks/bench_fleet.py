"""Fleet overhead and scale over SSH, against real sshd servers on loopback.

Overhead: 3 variants x 200 runs on 4 devices (one sshd each). The floor is the
largest per-device sum of on-device work (each cell's time in the agent: model
init, warm-up and measured runs, as the agent reports it as cell_ms). Targets
(issue 5): warm wall <= 1.05 x floor + 1 s; cold (nothing cached) <= that + 3 s.

Scale (issue 14): 32 devices vs 1, one sshd serving every inventory host (each
its own name and cache directory), running the sleep stand-in runtime
(tests.support.sleep_runtime) so the devices' inferences cost this machine no
CPU; what does still run here for each device is its sshd session and the
agent's Python processes. Target wall(32) / wall(1) <= 1.5; also printed: the
controller's own CPU (the edgebench process: connections, framing, storing) per
measured cell, which must not grow with the fleet.

    python -m benchmarks.bench_fleet          # both
    python -m benchmarks.bench_fleet scale    # the scale part only (no TensorFlow needed)
Needs openssh-server; the overhead part builds its models with TensorFlow and a
device venv (numpy + ai-edge-litert) the first time.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

from tests.support.sleep_runtime import sleepy_python, stand_in_model
from tests.support.sshd import SSHServer, keygen, start_sshd
from tests.support.venvs import device_python

SCALE_DEVICES = 32
SCALE_MODELS = 2  # cells per device
SCALE_INVOKE_MS = 50
SCALE_RUNS = ("--runs", "100", "--warmup", "2", "--min-seconds", "0", "--warmup-seconds", "0")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def edgebench(*args: str, env: dict[str, str]) -> tuple[float, str]:
    wall, _, out = edgebench_timed(*args, env=env)
    return wall, out


def edgebench_timed(*args: str, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the edgebench process, stdout). Its children count too, but over SSH it has none:
    paramiko runs in the process, and the agents run under sshd."""
    cpu0, t0 = _children_cpu_s(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env)
    wall, cpu = time.perf_counter() - t0, _children_cpu_s() - cpu0
    if done.returncode not in (0, 3):
        sys.exit(f"edgebench {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return wall, cpu, done.stdout


def inventory(path: Path, servers: list[SSHServer], python: Path, runtime: str = "auto") -> Path:
    """One host per entry of ``servers`` (the same server may serve several), each with its own cache."""
    lines = ["all:", "  children:", "    fleet:", "      hosts:"]
    for i, s in enumerate(servers):
        lines += [f"        dev-{i:02d}:", "          ansible_host: 127.0.0.1", f"          ansible_port: {s.port}",
                  f"          ansible_user: {s.user}", f"          ansible_ssh_private_key_file: {s.client_key_path}",
                  f"          ansible_python_interpreter: {python}", f"          workdir: {s.home}/edgebench-{i:02d}",
                  f"          runtime: {runtime}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def floor_s(store: Path, env: dict[str, str]) -> float:
    _, out = edgebench("export", "--store", str(store), env=env)
    per_device: dict[str, float] = {}
    for cell in json.loads(out)["results"]:
        per_device[cell["device"]] = per_device.get(cell["device"], 0.0) + (cell.get("cell_ms") or 0.0) / 1000
    return max(per_device.values())


def overhead(tmp: Path, env: dict[str, str], servers: list[SSHServer]) -> None:
    python = device_python("litert")
    subprocess.run([sys.executable, str(HERE.parent / "tests" / "support" / "build_models.py"), str(tmp)], check=True,
                   env=env, capture_output=True)
    edgebench("convert", str(tmp / "mobilenet.keras"), "--variants", "fp32,fp16,int8", "-o", str(tmp / "mb"), env=env)
    inv4 = inventory(tmp / "inv4.yaml", servers, python)
    store = tmp / "s.sqlite"
    run = ("run", "--models", str(tmp / "mb"), "--inventory", str(inv4), "--runs", "200", "--min-seconds", "0",
           "--store", str(store), "-q")
    cold, _ = edgebench(*run, env=env)
    cold_floor = floor_s(store, env)
    warm, out = edgebench(*run, env=env)
    warm_floor = floor_s(store, env)
    assert "shipped 0 bytes" in out, out
    print(f"overhead, 4 devices x 3 variants x 200 runs (load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores):")
    print(f"  warm: wall {warm:.2f} s, on-device floor {warm_floor:.2f} s, "
          f"wall / (1.05 x floor + 1 s) = {warm / (1.05 * warm_floor + 1):.2f} (target <= 1.00)")
    print(f"  cold: wall {cold:.2f} s, on-device floor {cold_floor:.2f} s, "
          f"wall / (1.05 x floor + 4 s) = {cold / (1.05 * cold_floor + 4):.2f} (target <= 1.00)")


def scale(tmp: Path, env: dict[str, str], server: SSHServer) -> None:
    python = sleepy_python(tmp / "sleep-runtime", SCALE_INVOKE_MS)
    models = tmp / "stand-in-models"
    models.mkdir()
    for i in range(SCALE_MODELS):
        stand_in_model(models / f"m{i}.tflite")
    walls: dict[int, float] = {}
    cpus: dict[int, float] = {}
    for n in (1, SCALE_DEVICES):
        inv = inventory(tmp / f"scale{n}.yaml", [server] * n, python, runtime="tensorflow")
        store = tmp / f"scale{n}.sqlite"
        args = ("run", "--models", str(models), "--inventory", str(inv), "--store", str(store), *SCALE_RUNS, "-q")
        edgebench(*args, env=env)  # cold: ships the agent and the models
        walls[n], cpus[n], _ = edgebench_timed(*args, env=env)
        _, out = edgebench("export", "--store", str(store), env=env)
        cells = json.loads(out)["results"]
        assert len(cells) == n * SCALE_MODELS and all(c["status"] == "ok" for c in cells), \
            [(c["device"], c["status"], c["error"]) for c in cells if c["status"] != "ok"]
        print(f"scale, {n:2d} device(s) x {SCALE_MODELS} cells (invoke sleeps {SCALE_INVOKE_MS} ms, "
              f"{SCALE_RUNS[1]} runs): wall {walls[n]:.2f} s (on-device, slowest {floor_s(store, env):.2f} s), "
              f"controller CPU {cpus[n]:.2f} s = {1000 * cpus[n] / len(cells):.0f} ms per measured cell")
    print(f"scale ratio wall({SCALE_DEVICES}) / wall(1) = {walls[SCALE_DEVICES] / walls[1]:.2f} (target <= 1.5; "
          f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores)")
    added = (cpus[SCALE_DEVICES] - cpus[1]) / ((SCALE_DEVICES - 1) * SCALE_MODELS)
    print(f"controller CPU per cell beyond the first device: {1000 * added:.0f} ms (its start-up, "
          f"{1000 * cpus[1]:.0f} ms, is paid once per run)")


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    home = tmp / "client-home"
    (home / ".ssh").mkdir(parents=True)
    env = dict(os.environ, HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2", CI="1")
    env.pop("SSH_AUTH_SOCK", None)
    key = tmp / "client_key"
    public = keygen(key)
    only_scale = sys.argv[1:] == ["scale"]
    servers = [start_sshd(tmp / f"sshd-{i}", public, key, "INFO") for i in range(1 if only_scale else 4)]
    try:
        (home / ".ssh" / "known_hosts").write_text("".join(s.known_hosts_line + "\n" for s in servers))
        if not only_scale:
            overhead(tmp, env, servers)
        scale(tmp, env, servers[0])
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
