"""Fault suite for the fleet: stalled SSH servers, hostile agent output, floods, planted cache files, loose keys.

Real parts throughout: OpenSSH servers on loopback (stopped with SIGSTOP after they authenticated), the real
agent with a real runtime, and a stand-in agent (tests/support/hostile_agent.py) that speaks the protocol
badly. Runs that could hang before the fixes run as subprocesses with a hard timeout.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.common.files import sha256_file
from harness.config.inventory import Device
from harness.fleet.protocol import ProtocolError, read_frame
from harness.fleet.shipping import agent_zip
from harness.fleet.transport import TransportError
from harness.fleet.transport.ssh import SSHTransport
from tests.support import hostile_agent
from tests.support.adb_device import AdbTestDevice
from tests.support.cli import run_cli
from tests.support.sshd import SSHServer, group_members, keygen, process_tree, trust

ROOT = Path(__file__).resolve().parent.parent
RUN = ("--runs", "5", "--min-seconds", "0", "--warmup", "0", "-q")
HARD_TIMEOUT_S = 240  # the subprocess is killed here: a hang fails the test instead of hanging it

MODEL_SCRIPT = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import keras, tensorflow as tf
x = keras.Input((8,), name="features")
model = keras.Model(x, keras.layers.Dense(4)(keras.layers.Dense(16, activation="relu")(x)))
open(sys.argv[1], "wb").write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny .tflite made by real TensorFlow in a child process."""
    path = tmp_path_factory.mktemp("model") / "mlp.tflite"
    subprocess.run([sys.executable, "-c", MODEL_SCRIPT, str(path)], check=True, capture_output=True, timeout=300)
    return path


def inventory(path: Path, devices: dict[str, tuple[SSHServer, Path | str]], **extra: dict[str, Any]) -> Path:
    """An Ansible-style inventory: name -> (server, device python); ``extra`` adds or replaces host variables."""
    lines = ["all:", "  hosts:"]
    for name, (s, python) in devices.items():
        host = {"ansible_host": "127.0.0.1", "ansible_port": s.port, "ansible_user": s.user,
                "ansible_ssh_private_key_file": s.client_key_path, "ansible_python_interpreter": python,
                **extra.get(name, {})}
        lines += [f"    {name}:"] + [f"      {k}: {v}" for k, v in host.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def edgebench(home: Path, *argv: object, timeout: float = HARD_TIMEOUT_S) -> tuple[int, str, str, float]:
    """`edgebench ARGV` as a separate process (exit code, stdout, stderr, seconds); killed at ``timeout``."""
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "harness", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"edgebench {' '.join(map(str, argv[:1]))} still running after {timeout} s (hung)\n"
                    f"{err.decode(errors='replace')[-2000:]}")
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), time.monotonic() - started


def cells(home: Path, store: Path) -> dict[tuple[str, str], dict[str, Any]]:
    code, out, err, _ = edgebench(home, "export", "--store", store)
    assert code == 0, err
    return {(c["device"], c["model"]): c for c in json.loads(out)["results"]}


@pytest.fixture()
def stall_after_auth() -> Iterator[Callable[[SSHServer], None]]:
    """Freeze a server (listener, connections, sessions) with SIGSTOP once it has authenticated a client."""
    threads: list[threading.Thread] = []
    stop = threading.Event()

    def watch(server: SSHServer) -> None:
        while not stop.is_set():
            if "Accepted publickey" in server.log():
                for pid in process_tree(server.proc.pid):
                    os.kill(pid, signal.SIGSTOP)
                return
            time.sleep(0.01)

    def arm(server: SSHServer) -> None:
        threads.append(threading.Thread(target=watch, args=(server,), daemon=True))
        threads[-1].start()

    yield arm
    stop.set()
    for t in threads:
        t.join(5)


# -- the whole fleet: one device stalls, one sends garbage, the rest is measured and gated -------------------


def test_a_stalled_and_a_hostile_device_cost_only_their_own_cells(
        sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path, model: Path, tmp_path: Path,
        stall_after_auth: Callable[[SSHServer], None]) -> None:
    good, stalled, hostile = sshd_servers(3)
    trust(ssh_home, [good, stalled, hostile])
    inv = inventory(tmp_path / "inv.yaml", {
        "good": (good, sys.executable), "stalled": (stalled, sys.executable),
        "hostile": (hostile, hostile_agent.install(tmp_path, "delegate-string"))})
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("budgets:\n  - device: good\n    p50_ms: 100000\n")
    store = tmp_path / "s.sqlite"
    stall_after_auth(stalled)
    code, out, err, seconds = edgebench(ssh_home, "run", "--models", model, "--inventory", inv, "--store", store,
                                        "--budgets", budgets, *RUN)
    assert code == 3, out + err  # some cells failed, the budget held
    assert seconds < 120
    got = cells(ssh_home, store)
    assert got[("good", "mlp")]["status"] == "ok"
    assert got[("stalled", "mlp")]["status"] == "timeout", got[("stalled", "mlp")]["error"]
    # Where the stall catches the client varies: authentication, a request unanswered, or the started command.
    assert any(why in got[("stalled", "mlp")]["error"]
               for why in ("no answer", "did not start within", "stopped answering during authentication"))
    assert got[("hostile", "mlp")]["status"] == "invalid_output"
    assert "delegate must be a mapping" in got[("hostile", "mlp")]["error"]
    gate = re.search(r"gate (PASS|WARN): 0 failed, (\d+) warned, (\d+) passed", out)  # on the stored run
    assert gate and int(gate[2]) + int(gate[3]) == 1, out  # the good device's cell held its budget


def test_devices_returns_when_a_server_stalls_after_authenticating(
        sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path, tmp_path: Path,
        stall_after_auth: Callable[[SSHServer], None]) -> None:
    good, stalled = sshd_servers(2)
    trust(ssh_home, [good, stalled])
    # the stalled device's probe takes 2 s, so the freeze surely lands while the host waits on it (a fast probe
    # could finish between the server's "Accepted" line and the watcher's SIGSTOP)
    slow = tmp_path / "slow-python"
    slow.write_text(f"#!/bin/sh\nsleep 2\nexec {sys.executable} \"$@\"\n")
    slow.chmod(0o755)
    inv = inventory(tmp_path / "inv.yaml", {"good": (good, sys.executable), "stalled": (stalled, slow)})
    stall_after_auth(stalled)
    code, out, err, seconds = edgebench(ssh_home, "devices", "--inventory", inv, "--json")
    assert code == 3, err
    assert seconds < 60
    status = {d["name"]: d for d in json.loads(out)["devices"]}
    assert status["good"]["status"] == "ok"
    assert status["stalled"]["status"] == "timeout"
    code, out, err, seconds = edgebench(ssh_home, "devices", "purge", "--inventory", inv)
    assert code == 3 and "stalled: unreachable" in out and seconds < 60, out + err  # a row, not a traceback
    assert not (good.home / ".cache" / "edgebench" / "cache").exists()


def within(seconds: float, step: Callable[[], object]) -> BaseException | None:
    """Run ``step`` on a thread; fail the test if it has not returned after ``seconds`` (it hangs)."""
    raised: list[BaseException] = []

    def call() -> None:
        try:
            step()
        except BaseException as exc:  # handed to the test
            raised.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    return raised[0] if raised else None


def test_every_ssh_step_to_a_server_that_stopped_answering_has_a_deadline(
        sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path, tmp_path: Path) -> None:
    (server,) = sshd_servers(1)
    trust(ssh_home, [server])
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(4 << 20))
    device = Device(name="dev", host=server.host, port=server.port, user=server.user,
                    key_file=str(server.client_key_path), workdir=str(server.home / "w"))
    runs, uploads, kills = (SSHTransport(device, connect_timeout=2, command_timeout=3) for _ in range(3))
    for t in (runs, uploads, kills):
        t.connect()
    uploads.put(payload, str(server.home / "first"))  # the SFTP session is open and has worked
    proc = kills.start(["sleep", "60"])
    for pid in process_tree(server.proc.pid):  # authenticated sessions, then not a word more
        os.kill(pid, signal.SIGSTOP)
    for step in (lambda: runs.run(["true"], 60), lambda: uploads.put(payload, str(server.home / "second"))):
        err = within(15, step)
        assert isinstance(err, TransportError) and err.status == "timeout", err
        assert "no answer from the device" in err.message
    assert within(15, proc.kill) is None
    for t in (runs, uploads, kills):
        assert within(5, t.close) is None


@pytest.mark.parametrize("preamble, status, words", [
    ("while :; do echo motd; sleep 0.2; done", "timeout", "did not start within 2 s"),  # a line at a time
    ("while :; do printf m; sleep 0.05; done", "timeout", "did not start within 2 s"),  # a byte at a time
    ("head -c 1000000 /dev/zero; sleep 60", "invalid_output", "more than 65536 bytes before starting true"),
])
def test_a_shell_that_chatters_before_the_command_starts_has_one_deadline_and_a_size_cap(
        sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path, preamble: str, status: str, words: str) -> None:
    (server,) = sshd_servers(1)
    trust(ssh_home, [server])
    server.stop()  # every session runs the preamble instead of the command (as a login script could, first)
    with open(server.dir / "sshd_config", "a") as f:
        f.write(f"ForceCommand {preamble}\n")
    server.restart()
    t = SSHTransport(Device(name="dev", host=server.host, port=server.port, user=server.user,
                            key_file=str(server.client_key_path)), command_timeout=2)
    t.connect()
    started = time.monotonic()
    err = within(15, lambda: t.run(["true"], 60))
    assert isinstance(err, TransportError) and err.status == status and words in err.message, err
    assert time.monotonic() - started < 8
    assert within(5, t.close) is None


# -- agent output is untrusted ------------------------------------------------------------------------------

HOSTILE = ["delegate-string", "thermal-string", "huge-int", "deep", "nan", "inf", "negative", "flood"]
MEASURED = ("init_ms", "first_inference_ms", "peak_rss_mb", "rss_growth_mb", "cell_ms")  # from the agent


def test_every_kind_of_malformed_frame_fails_its_own_cell_and_the_run_goes_on(
        sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path, model: Path, tmp_path: Path) -> None:
    servers = sshd_servers(len(HOSTILE) + 1)
    trust(ssh_home, servers)
    devices: dict[str, tuple[SSHServer, Path | str]] = {"good": (servers[0], sys.executable)}
    devices.update({mode: (s, hostile_agent.install(tmp_path, mode)) for mode, s in zip(HOSTILE, servers[1:])})
    store = tmp_path / "s.sqlite"
    code, out, err, _ = edgebench(ssh_home, "run", "--models", model, "--inventory",
                                  inventory(tmp_path / "inv.yaml", devices), "--store", store, *RUN)
    assert code == 3, out + err
    got = cells(ssh_home, store)
    assert got[("good", "mlp")]["status"] == "ok"
    for mode in HOSTILE:
        cell = got[(mode, "mlp")]
        assert cell["status"] == "invalid_output", (mode, cell["status"], cell["error"])
        assert cell["error"] and len(cell["error"]) < 2000
        assert all(cell[k] is None for k in MEASURED if k in cell), mode  # nothing of a rejected frame is kept
        assert cell["latency_ms"] is None or not cell["latency_ms"].get("samples"), mode
    assert "out of range" in got[("negative", "mlp")]["error"]
    assert "digits" in got[("huge-int", "mlp")]["error"]
    assert "NaN" in got[("nan", "mlp")]["error"] and "out of range" in got[("inf", "mlp")]["error"]


def test_a_frame_that_would_parse_into_gigabytes_is_refused_before_parsing() -> None:
    wide = hostile_agent.frame(b'{"schema_version": 1, "type": "hello", "env": ' + b"[" + b"[]," * (6 << 20) + b"[]]}")
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="more than"):
            read_frame(io.BytesIO(wide))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(wide), peak  # the frame's bytes and its text, not 6 million lists


def test_an_agent_that_only_chatters_is_timed_out_from_the_cell_start(
        sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path, model: Path, tmp_path: Path) -> None:
    (server,) = sshd_servers(1)
    trust(ssh_home, [server])
    inv = inventory(tmp_path / "inv.yaml", {"chatty": (server, hostile_agent.install(tmp_path, "chatter"))})
    store = tmp_path / "s.sqlite"
    code, out, err, seconds = edgebench(ssh_home, "run", "--models", model, "--inventory", inv, "--store", store,
                                        "--cell-timeout", "1", *RUN, timeout=120)
    assert code == 3, out + err
    cell = cells(ssh_home, store)[("chatty", "mlp")]
    assert cell["status"] == "timeout" and "no result for this cell within 11 s" in cell["error"]
    assert seconds < 60  # 1 s cell timeout + 10 s grace, not forever


# -- output is capped on every transport --------------------------------------------------------------------

FLOOD_SCRIPT = r"""
import json, resource, sys
from harness.config.inventory import Device
from harness.fleet.transport import TransportError, make_transport
kb = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with make_transport(Device(**json.loads(sys.argv[1]))) as t:
    t.run(["true"], 30)
    before = kb()
    try:
        t.run(["head", "-c", str(200 << 20), "/dev/zero"], 120)
        status, error = "ok", None
    except TransportError as exc:
        status, error = exc.status.value, exc.message
print(json.dumps({"status": status, "error": error, "growth_mb": (kb() - before) / 1024}))
"""


def flood(home: Path, **device: Any) -> dict[str, Any]:
    """A device printing 200 MB on stdout, run through a transport in a fresh process: its status and RSS growth."""
    done = subprocess.run([sys.executable, "-c", FLOOD_SCRIPT, json.dumps(device)], capture_output=True, text=True,
                          timeout=HARD_TIMEOUT_S, env=dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_device_flooding_stdout_is_cut_at_the_cap_and_host_memory_stays_bounded(
        sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path) -> None:
    (server,) = sshd_servers(1)
    trust(ssh_home, [server])
    ssh = flood(ssh_home, name="flood", host=server.host, port=server.port, user=server.user,
                key_file=str(server.client_key_path))
    local = flood(ssh_home, name="local", transport="local")
    for result in (ssh, local):
        assert result["status"] == "invalid_output" and "wrote more than 16 MB on stdout" in result["error"]
        assert result["growth_mb"] < 64, result  # 200 MB kept in memory before the cap



def test_adb_output_is_capped_too(adb_server: str, ssh_home: Path, tmp_path: Path) -> None:
    phone = AdbTestDevice(tmp_path / "phone")
    phone.start()
    try:
        result = flood(ssh_home, name="phone", transport="adb", serial=phone.serial,
                       workdir=str(phone.root / "data" / "local" / "tmp" / "edgebench"))
    finally:
        phone.stop()
    assert result["status"] == "invalid_output" and "wrote more than 16 MB on stdout" in result["error"]
    assert result["growth_mb"] < 64, result


# -- the device's work directory is not trusted ---------------------------------------------------------------


def test_a_planted_cache_file_is_replaced_and_shared_or_foreign_workdirs_are_refused(
        sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path, model: Path, tmp_path: Path) -> None:
    planted, shared, foreign = sshd_servers(3)
    trust(ssh_home, [planted, shared, foreign])
    workdirs = {name: s.home / "edgebench" for name, s in (("planted", planted), ("shared", shared),
                                                          ("foreign", foreign))}
    for path in workdirs.values():
        (path / "cache").mkdir(parents=True, mode=0o700)
    # Under the agent's expected name, in a private directory: what an earlier tenant could have left.
    marker = tmp_path / "planted-code-ran"
    trap = workdirs["planted"] / "cache" / f"{sha256_file(agent_zip())}.pyz"
    trap.write_text(f"open({str(marker)!r}, 'w').write('yes')\n")
    # The right model bytes, but through a symlink to a file someone else can change after the check.
    elsewhere = tmp_path / "elsewhere.tflite"
    elsewhere.write_bytes(model.read_bytes())
    link = workdirs["planted"] / "cache" / f"{sha256_file(model)}.tflite"
    link.symlink_to(elsewhere)
    workdirs["shared"].chmod(0o777)
    os.chown(workdirs["foreign"], 65534, 65534)
    inv = inventory(tmp_path / "inv.yaml", {name: (s, sys.executable) for name, s in (
        ("planted", planted), ("shared", shared), ("foreign", foreign))},
        **{name: {"workdir": str(path)} for name, path in workdirs.items()})
    store = tmp_path / "s.sqlite"
    code, out, err, _ = edgebench(ssh_home, "run", "--models", model, "--inventory", inv, "--store", store, *RUN)
    assert code == 3, out + err
    got = cells(ssh_home, store)
    assert got[("planted", "mlp")]["status"] == "ok", got[("planted", "mlp")]["error"]
    assert not marker.exists() and sha256_file(trap) == sha256_file(agent_zip())
    assert not link.is_symlink() and sha256_file(link) == sha256_file(model)
    for name, why in (("shared", "writable by other users (mode drwxrwxrwx"), ("foreign", "owned by user 65534")):
        cell = got[(name, "mlp")]
        assert cell["status"] == "environment_error", cell
        assert f"{name}: work directory {workdirs[name]} refused" in cell["error"] and why in cell["error"]
    assert not [f for name in ("shared", "foreign") for f in (workdirs[name] / "cache").iterdir()]  # nothing shipped


def test_new_work_directories_are_private(sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path,
                                          model: Path, tmp_path: Path) -> None:
    (server,) = sshd_servers(1)
    trust(ssh_home, [server])
    inv = inventory(tmp_path / "inv.yaml", {"dev": (server, sys.executable)})
    code, out, err, _ = edgebench(ssh_home, "run", "--models", model, "--inventory", inv, "--store",
                                  tmp_path / "s.sqlite", *RUN)
    assert code == 0, out + err
    workdir = server.home / ".cache" / "edgebench"
    assert (workdir.stat().st_mode & 0o777, (workdir / "cache").stat().st_mode & 0o777) == (0o700, 0o700)


# -- private keys ---------------------------------------------------------------------------------------------


def test_loose_private_keys_are_refused_and_errors_name_keys_by_file_name_only(
        sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path, model: Path, tmp_path: Path) -> None:
    loose_server, wrong_server = sshd_servers(2)
    trust(ssh_home, [loose_server, wrong_server])
    keys = tmp_path / "secret-key-dir"
    keys.mkdir()
    loose = keys / "lab_key"
    loose.write_bytes(loose_server.client_key_path.read_bytes())
    loose.chmod(0o644)  # the right key, but anyone on this machine can read it
    wrong = keys / "stranger_key"
    keygen(wrong)  # private, but not authorised on the device
    (ssh_home / ".ssh" / "id_ed25519").write_bytes(loose_server.client_key_path.read_bytes())
    (ssh_home / ".ssh" / "id_ed25519").chmod(0o640)  # a default key others can read is skipped, not used
    inv = inventory(tmp_path / "inv.yaml", {"loose": (loose_server, sys.executable),
                                            "wrong": (wrong_server, sys.executable)},
                    loose={"ansible_ssh_private_key_file": str(loose)},
                    wrong={"ansible_ssh_private_key_file": str(wrong)})
    store = tmp_path / "s.sqlite"
    code, out, err, _ = edgebench(ssh_home, "run", "--models", model, "--inventory", inv, "--store", store, *RUN)
    assert code == 3, out + err
    got = cells(ssh_home, store)
    refused, failed = got[("loose", "mlp")], got[("wrong", "mlp")]
    assert refused["status"] == "auth_failed" and "key file lab_key is readable by others (mode 0644)" in \
        refused["error"]
    assert failed["status"] == "auth_failed" and "stranger_key" in failed["error"]
    assert "skipped ~/.ssh/id_ed25519: readable by others" in failed["error"]
    for cell in (refused, failed):
        assert str(keys) not in cell["error"] and str(ssh_home) not in cell["error"]  # no local paths leave


# -- LiteRT's benchmark_model output is untrusted too ----------------------------------------------------------

TOOL_OUTPUT = """INFO: Num threads: [4]
INFO: Replacing 5 out of 9 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 1 partitions for subgraph 0.
INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=1875 curr=1409 min=1400 max=1951 avg=1455 std=135 p5=1405 median=1412 p95=1875
INFO: Inference timings in us: Init: 9231, First inference: 2351, Warmup (avg): 2116, Inference (avg): 1455
INFO: Overall peak memory footprint (MB) via periodic monitoring: 80.3125
"""
TOOL_GARBAGE = {"init-dash": ("Init: 9231", "Init: -"), "overflow": ("avg=1455", "avg=1e999"),
                "huge-count": ("Replacing 5 out of 9", "Replacing " + "9" * 500 + " out of 9"),
                "more-delegated-than-nodes": ("Replacing 5 out of 9", "Replacing 12 out of 9")}


def test_unparsable_benchmark_model_output_is_an_invalid_output_cell(model: Path, tmp_path: Path) -> None:
    lines = ["all:", "  hosts:"]
    for name, (good, bad) in {"fine": ("", ""), **TOOL_GARBAGE}.items():
        tool = tmp_path / f"benchmark_model-{name}"
        tool.write_text("#!/bin/sh\ncat <<'EOF'\n" + TOOL_OUTPUT.replace(good, bad) + "EOF\n")
        lines += [f"    {name}:", "      ansible_connection: local", "      runner: benchmark_model",
                  f"      benchmark_binary: {tool}", f"      workdir: {tmp_path / name}"]
    (tmp_path / "inv.yaml").write_text("\n".join(lines) + "\n")
    store = tmp_path / "s.sqlite"
    result = run_cli("run", "--models", model, "--inventory", tmp_path / "inv.yaml", "--store", store, *RUN)
    assert result.code == 3, result.out + result.err
    exported = json.loads(run_cli("export", "--store", store).out)["results"]
    got = {c["device"]: c for c in exported}
    assert got["fine"]["status"] == "ok" and got["fine"]["latency_ms"]["mean"] == pytest.approx(1.455)
    for name in TOOL_GARBAGE:
        assert got[name]["status"] == "invalid_output", (name, got[name]["error"])
        assert got[name]["error"].startswith("benchmark_model output:") and got[name]["delegate"] is None


def test_ctrl_c_kills_a_benchmark_model_run_on_every_transport(
        sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path, model: Path, tmp_path: Path) -> None:
    (server,) = sshd_servers(1)
    trust(ssh_home, [server])
    pids = tmp_path / "pids"
    tool = tmp_path / "benchmark_model-slow"  # a measurement that takes ten minutes
    tool.write_text(f"#!/bin/sh\necho $$ >> {pids}\nsleep 600\necho done\n")
    tool.chmod(0o755)
    tools = {"runner": "benchmark_model", "benchmark_binary": str(tool)}
    inv = inventory(tmp_path / "inv.yaml", {"pi": (server, sys.executable), "here": (server, sys.executable)},
                    pi=tools, here={**tools, "ansible_connection": "local", "workdir": str(tmp_path / "here")})
    run = subprocess.Popen([sys.executable, "-m", "harness", "run", "--models", str(model), "--inventory", str(inv),
                            "--store", str(tmp_path / "s.sqlite"), "--cell-timeout", "900", "-q"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                           env=dict(os.environ, HOME=str(ssh_home), PYTHONPATH=str(ROOT)))
    deadline = time.monotonic() + 120
    while not pids.exists() or len(pids.read_text().split()) < 2:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "the tool never started on both devices"
        time.sleep(0.1)
    run.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    try:
        _, err = run.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        pytest.fail("edgebench kept waiting for benchmark_model after Ctrl-C")
    assert run.returncode == 130 and "--resume" in err, err
    assert time.monotonic() - signalled < 15
    assert all(not group_members(int(pid)) for pid in pids.read_text().split())  # the tool and its sleep
