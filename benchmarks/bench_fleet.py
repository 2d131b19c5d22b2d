"""Fleet overhead and scale over SSH, against real sshd servers on loopback (one per device).

Overhead: 3 variants x 200 runs on 4 devices. The floor is the largest
per-device sum of on-device work (each cell's time in the agent: model init,
warm-up and measured runs, as the agent reports it as cell_ms). Targets (issue 5):
warm wall <= 1.05 x floor + 1 s; cold (nothing cached on the devices) <= that + 3 s.
Scale: a tiny model on 16 devices vs 1 device; target wall(16) / wall(1) <= 1.5.

    python -m benchmarks.bench_fleet
Needs openssh-server; builds its models with TensorFlow and a device venv
(numpy + ai-edge-litert) the first time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

from tests.support.sshd import keygen, start_sshd
from tests.support.venvs import device_python


def edgebench(*args: str, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode not in (0, 3):
        sys.exit(f"edgebench {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return wall, done.stdout


def inventory(path: Path, servers: list, python: Path) -> Path:
    lines = ["all:", "  children:", "    fleet:", "      hosts:"]
    for i, s in enumerate(servers):
        lines += [f"        dev-{i:02d}:", "          ansible_host: 127.0.0.1", f"          ansible_port: {s.port}",
                  f"          ansible_user: {s.user}", f"          ansible_ssh_private_key_file: {s.client_key_path}",
                  f"          ansible_python_interpreter: {python}", f"          workdir: {s.home}/edgebench"]
    path.write_text("\n".join(lines) + "\n")
    return path


def floor_s(store: Path, env: dict[str, str]) -> float:
    _, out = edgebench("export", "--store", str(store), env=env)
    per_device: dict[str, float] = {}
    for cell in json.loads(out)["results"]:
        per_device[cell["device"]] = per_device.get(cell["device"], 0.0) + (cell.get("cell_ms") or 0.0) / 1000
    return max(per_device.values())


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    home = tmp / "client-home"
    (home / ".ssh").mkdir(parents=True)
    env = dict(os.environ, HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2", CI="1")
    env.pop("SSH_AUTH_SOCK", None)
    python = device_python("litert")
    key = tmp / "client_key"
    public = keygen(key)
    servers = [start_sshd(tmp / f"sshd-{i}", public, key, "INFO") for i in range(16)]
    try:
        (home / ".ssh" / "known_hosts").write_text("".join(s.known_hosts_line + "\n" for s in servers))
        subprocess.run([sys.executable, str(HERE.parent / "tests" / "support" / "build_models.py"), str(tmp)], check=True,
                       env=env, capture_output=True)
        edgebench("convert", str(tmp / "mobilenet.keras"), "--variants", "fp32,fp16,int8", "-o", str(tmp / "mb"),
                  env=env)
        edgebench("convert", str(tmp / "cnn.keras"), "--variants", "fp32", "-o", str(tmp / "tiny"), env=env)

        inv4 = inventory(tmp / "inv4.yaml", servers[:4], python)
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

        walls: dict[int, float] = {}
        floors: dict[int, float] = {}
        for n in (1, 16):
            inv = inventory(tmp / f"inv{n}.yaml", servers[:n], python)
            args = ("run", "--models", str(tmp / "tiny"), "--inventory", str(inv), "--store", str(tmp / f"{n}.sqlite"),
                    "-q")
            edgebench(*args, env=env)  # cold run ships the agent and model
            walls[n], _ = edgebench(*args, env=env)
            _, out = edgebench("export", "--store", str(tmp / f"{n}.sqlite"), env=env)
            cells = json.loads(out)["results"]
            assert all(c["status"] == "ok" for c in cells), [(c["device"], c["status"], c["error"]) for c in cells]
            floors[n] = floor_s(tmp / f"{n}.sqlite", env)
        print(f"scale, tiny model, default 50 runs / 1 s: wall(1) {walls[1]:.2f} s (on-device {floors[1]:.2f} s), "
              f"wall(16) {walls[16]:.2f} s (on-device, slowest {floors[16]:.2f} s), "
              f"ratio {walls[16] / walls[1]:.2f} (target <= 1.5)")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
