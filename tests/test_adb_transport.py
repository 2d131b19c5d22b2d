"""AdbTransport with Debian's real `adb` client and server against test phones that speak the adb wire protocol.

Two phones run at once: one with the ``shell_v2`` feature (Android 7+) and one
without (older Android, where `adb shell` reports neither exit status nor
separate stderr), so every behaviour is checked through both code paths. The
adb server runs on a private port (ANDROID_ADB_SERVER_PORT) and is killed at
the end, so a developer's own adb server and phones are never touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.adb_device import AdbTestDevice
from tests.support.sshd import free_port
from harness.common.errors import EdgebenchError
from harness.config.inventory import Device
from harness.fleet.protocol import check_cell, encode_job, read_frame
from harness.fleet.shipping import agent_zip, ship
from harness.fleet.transport import TransportError, make_transport
from harness.fleet.transport.adb import AdbTransport

ADB = shutil.which("adb")


@pytest.fixture(scope="module")
def phones(adb_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AdbTestDevice]]:
    root = tmp_path_factory.mktemp("phones")
    devices = {
        "v2": AdbTestDevice(root / "v2", props={"ro.product.model": "Pixel 8 Pro", "ro.board.platform": "zuma"},
                            thermal_status=2, temperatures={"CPU0": 47.25, "skin": 33.0}),
        "legacy": AdbTestDevice(root / "legacy", shell_v2=False, props={"ro.build.version.sdk": "23"}),
    }
    for d in devices.values():
        d.start()
    yield devices
    for d in devices.values():
        d.stop()


def _device(phone: AdbTestDevice, name: str = "phone") -> Device:
    return Device(name=name, transport="adb", serial=phone.serial,
                  workdir=str(phone.root / "data" / "local" / "tmp" / "edgebench"))


def _connected(phone: AdbTestDevice) -> AdbTransport:
    transport = make_transport(_device(phone))
    assert isinstance(transport, AdbTransport)
    transport.connect()
    return transport


def _alive(pid: int) -> bool:
    """Whether a process runs (the test phone's processes are processes of this machine)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("kind", ["v2", "legacy"])
def test_exit_status_and_separate_stderr(phones: dict[str, AdbTestDevice], kind: str) -> None:
    t = _connected(phones[kind])
    result = t.run(["sh", "-c", "echo out; echo err >&2; exit 7"], 20)
    assert (result.code, result.stdout, result.stderr) == (7, b"out\n", b"err\n")
    ok = t.run(["true"], 20)
    assert (ok.code, ok.stdout, ok.stderr) == (0, b"", b"")
    missing = t.run(["no-such-command-eb"], 20)
    assert missing.code == 127 and b"not found" in missing.stderr
    no_newline = t.run(["printf", "x"], 20)  # output without a final newline keeps its exact bytes
    assert no_newline.stdout == b"x"


def test_two_phones_in_parallel(phones: dict[str, AdbTestDevice]) -> None:
    """Each phone's command notes when it started and ended (the test phones share this machine's clock):
    the two intervals overlap. How much faster than one after the other: benchmarks/bench_adb.py."""
    transports = [_connected(p) for p in phones.values()]
    script = "date +%s.%N; sleep 1; getprop ro.product.model; date +%s.%N"
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda t: t.run(["sh", "-c", script], 20), transports))
    lines = [r.stdout.decode().split("\n") for r in results]
    assert [out[1] for out in lines] == ["Pixel 8 Pro", "EdgebenchTest"]
    (start_a, end_a), (start_b, end_b) = ((float(out[0]), float(out[2])) for out in lines)
    assert max(start_a, start_b) < min(end_a, end_b), "the two phones did not run at once"


@pytest.mark.parametrize("kind", ["v2", "legacy"])
def test_argv_reaches_the_device_literally(phones: dict[str, AdbTestDevice], kind: str, tmp_path: Path) -> None:
    t = _connected(phones[kind])
    pwned = phones[kind].root / "pwned"
    args = ["two words", "it's", 'say "hi"', f"; touch {pwned}", "$(touch " + str(pwned) + ")", "`id`",
            "*", "a\nb", "", "back\\slash", "pi-4b-01 & model's \"v2\" | tee"]
    result = t.run(["printf", "%s\\n", *args], 20)
    assert result.code == 0, result.stderr
    assert result.stdout.decode() == "".join(a + "\n" for a in args)
    assert not pwned.exists()


@pytest.mark.parametrize("kind", ["v2", "legacy"])
def test_stdin_and_scripts_longer_than_old_devices_accept(phones: dict[str, AdbTestDevice], kind: str) -> None:
    t = _connected(phones[kind])
    data = bytes(range(256)) * 40 + b"no newline at the end"
    assert t.run(["cat"], 20, stdin=data).stdout == data
    long_arg = "x" * 6000  # a service string over 4 KiB: sent as a pushed script instead
    result = t.run(["sh", "-c", 'printf "%s" "${#1}"; exit 3', "sh", long_arg], 20)
    assert (result.code, result.stdout) == (3, b"6000")
    leftovers = [p.name for p in Path(t.home(), "tmp").iterdir()]
    assert leftovers == [], "scratch files must be removed after each command"


@pytest.mark.parametrize("kind", ["v2", "legacy"])
def test_push_a_file_and_read_it_back(phones: dict[str, AdbTestDevice], kind: str, tmp_path: Path) -> None:
    t = _connected(phones[kind])
    local = tmp_path / "model with space.tflite"
    local.write_bytes(os.urandom(300_000))
    remote = f"{t.home()}/cache/model with space.tflite"
    t.put(local, remote)
    result = t.run(["sha256sum", remote], 20)
    assert result.stdout.split()[0].decode() == hashlib.sha256(local.read_bytes()).hexdigest()
    with pytest.raises(TransportError) as refused:
        t.put(local, "/system/framework/not-allowed.tflite")
    assert refused.value.status == "unreachable" and "Permission denied" in refused.value.message


@pytest.mark.parametrize("kind", ["v2", "legacy"])
def test_start_streams_stdout_takes_stdin_and_kill_ends_the_remote_process(
        phones: dict[str, AdbTestDevice], kind: str) -> None:
    t = _connected(phones[kind])
    proc = t.start(["sh", "-c", 'read job; echo "pid $$ got $job"; echo progress >&2; '
                                'while true; do echo tick; sleep 0.05; done'])
    proc.stdin.write(b"the job frame\n")
    proc.stdin.flush()
    first = proc.stdout.readline().decode().split()
    assert first[0] == "pid" and first[2:] == ["got", "the", "job", "frame"]
    pid = int(first[1])
    assert proc.stdout.readline() == b"tick\n"
    assert proc.wait(0.1) is None
    assert "progress" in proc.stderr_tail()
    assert _alive(pid)
    proc.kill()
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "kill() must end the process on the device, not just the local adb client"
    assert "progress" in proc.stderr_tail()  # still known after the device's files are cleaned up


@pytest.mark.parametrize("kind", ["v2", "legacy"])
def test_started_process_exit_status(phones: dict[str, AdbTestDevice], kind: str) -> None:
    t = _connected(phones[kind])
    proc = t.start(["sh", "-c", "echo bye; echo 'fatal: no runtime' >&2; exit 5"])
    assert proc.stdout.read() == b"bye\n"
    assert proc.wait(20) == 5
    assert "fatal: no runtime" in proc.stderr_tail()
    proc.kill()


@pytest.mark.parametrize("kind", ["v2", "legacy"])
def test_the_agent_ships_and_serves_over_adb(phones: dict[str, AdbTestDevice], kind: str, tmp_path: Path) -> None:
    """The host's real path: content-addressed shipping, then the agent protocol through `adb shell`."""
    t = _connected(phones[kind])
    bogus = tmp_path / "not a model's name.tflite"
    bogus.write_bytes(b"this is not a flatbuffer")
    shipped = ship(t, [agent_zip(), bogus])
    assert shipped.files_sent == 2
    assert ship(t, [agent_zip(), bogus]).files_sent == 0  # already in the phone's cache
    # The test phone is this machine, so its "python3" is the interpreter running the tests.
    proc = t.start([sys.executable, shipped.remote[agent_zip()], "serve", "auto"])
    cell = {"id": "m/fp32", "model_path": shipped.remote[bogus], "runs": 3, "min_seconds": 0, "warmup": 1,
            "warmup_seconds": 0, "max_runs": 10, "threads": 1}
    proc.stdin.write(encode_job([cell], "auto"))
    proc.stdin.close()
    frames = []
    while (frame := read_frame(proc.stdout)) is not None:
        frames.append(frame)
    assert [f["type"] for f in frames] == ["hello", "cell", "done"]
    result = check_cell(frames[1], "m/fp32")
    assert result["status"] == "failed_to_load" and result["error"]
    assert proc.wait(30) == 0
    proc.kill()


def test_device_facts(phones: dict[str, AdbTestDevice]) -> None:
    facts = _connected(phones["v2"]).device_facts()
    assert facts == {
        "serial": phones["v2"].serial, "model": "Pixel 8 Pro", "manufacturer": "Edgebench", "soc": "TestSoC 9000",
        "board": "zuma", "sdk": 34, "release": "14", "abi": "arm64-v8a",
        "thermal_status": 2, "temperatures_c": {"CPU0": 47.25, "skin": 33.0},
    }
    assert _connected(phones["legacy"]).device_facts()["sdk"] == 23


def test_unreachable_devices(adb_server: str, tmp_path: Path) -> None:
    dead = Device(name="gone", transport="adb", serial=f"127.0.0.1:{free_port()}")
    with pytest.raises(TransportError) as refused:
        AdbTransport(dead).connect()
    assert refused.value.status == "unreachable" and "failed to connect" in refused.value.message

    usb = Device(name="usb-phone", transport="adb", serial="EB0000NOTPLUGGED")
    start = time.monotonic()
    with pytest.raises(TransportError) as missing:
        AdbTransport(usb).connect()
    assert missing.value.status == "unreachable" and "not found" in missing.value.message
    assert time.monotonic() - start < 2, "a phone that is not plugged in is reported at once"

    with AdbTestDevice(tmp_path / "flaky") as phone:
        t = _connected(phone)
        assert t.run(["true"], 20).code == 0
    # The phone went away (stop() closed its connection): adb now calls it offline.
    with pytest.raises(TransportError) as offline:
        t.run(["true"], 20)
    assert offline.value.status == "unreachable" and "offline" in offline.value.message
    t.connect_timeout_s = 0.5
    with pytest.raises(TransportError) as reconnect:
        t.connect()
    assert reconnect.value.status == "unreachable"


def test_connection_lost_and_timeout(adb_server: str, tmp_path: Path) -> None:
    with AdbTestDevice(tmp_path / "dropping") as phone:
        t = _connected(phone)
        pid_file = phone.root / "slow.pid"
        with pytest.raises(TransportError) as slow:
            t.run(["sh", "-c", 'echo $$ >"$1"; exec sleep 5', "sh", str(pid_file)], 0.5)
        assert slow.value.status == "timeout"
        assert not _alive(int(pid_file.read_text())), "a timed-out command must not keep running on the phone"
        failure: list[TransportError] = []

        def long_command() -> None:
            try:
                t.run(["sleep", "5"], 20)
            except TransportError as exc:
                failure.append(exc)

        worker = threading.Thread(target=long_command)
        worker.start()
        time.sleep(0.5)
        phone.stop()  # the phone drops off the network mid-command
        worker.join(10)
    assert failure and failure[0].status in ("connection_lost", "unreachable")


def test_missing_adb_client_is_a_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EdgebenchError) as err:
        AdbTransport(Device(name="p", transport="adb", serial="X")).connect()
    assert "apt-get install adb" in str(err.value)
    with pytest.raises(EdgebenchError):
        AdbTransport(Device(name="no-serial", transport="adb"))


def test_home_defaults_to_data_local_tmp() -> None:
    assert AdbTransport(Device(name="p", transport="adb", serial="S")).home() == "/data/local/tmp/edgebench"
    network = AdbTransport(Device(name="p", transport="adb", host="phone-7.lab"))
    assert network.serial == "phone-7.lab:5555" and network.network
