"""Device pools on a real labgrid lab (tests.support.labgrid_lab): a real coordinator and exporter on
loopback whose NetworkService resources are real sshd servers; `edgebench run` holds a place while it
measures through labgrid-client. The devices run the sleep stand-in runtime (tests.support.sleep_runtime),
so the device side costs this machine almost nothing and every invoke's time is logged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.config.inventory import Device
from harness.fleet.lab import (LET_GO_TIMEOUT_S, Place, controller_identity, hold_place, is_stale, network_service,
                               parse_places)
from harness.fleet.transport import TransportError
from tests.support.cli import export_run as _export, run_cli
from tests.support.labgrid_lab import LabgridLab, labgrid_lab  # noqa: F401  (fixture)
from tests.support.sleep_runtime import sleepy_python, stand_in_model
from tests.support.sshd import SSHServer, trust

ROOT = Path(__file__).resolve().parent.parent
RUN = ("--runs", "10", "--min-seconds", "0", "--warmup", "1", "-q")


def _inventory(path: Path, server: SSHServer, python: Path, hosts: dict[str, str]) -> Path:
    """Hosts (name -> the labgrid line that places it) sharing one client key and one stand-in python."""
    lines = ["all:", "  vars:", f"    ansible_ssh_private_key_file: {server.client_key_path}",
             f"    ansible_python_interpreter: {python}", "    runtime: tensorflow", "  hosts:"]
    lines += [f"    {name}: {{{spec}}}" for name, spec in hosts.items()]
    path.write_text("\n".join(lines) + "\n")
    return path




def _edgebench(*args: object) -> subprocess.Popen[str]:
    """`edgebench` as its own process (and process group): a controller of its own, as on another CI job."""
    return subprocess.Popen([sys.executable, "-m", "harness", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            start_new_session=True)


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.1)


@pytest.fixture()
def pool(labgrid_lab: LabgridLab, sshd_servers: Callable[..., list[SSHServer]], ssh_home: Path,
         tmp_path: Path) -> tuple[LabgridLab, list[SSHServer], Path, Path]:
    """Two boards (sshd servers) exported as rpi-1 and rpi-2, tagged board=rpi4: (lab, servers, model, invoke log)."""
    servers = sshd_servers(2, log_level="INFO")
    trust(ssh_home, servers)
    labgrid_lab.export({"board-1": servers[0], "board-2": servers[1]})
    labgrid_lab.place("rpi-1", "board-1", board="rpi4")
    labgrid_lab.place("rpi-2", "board-2", board="rpi4")
    return labgrid_lab, servers, stand_in_model(tmp_path / "m.tflite"), tmp_path / "invokes.log"


def _intervals(log: Path) -> list[tuple[float, float]]:
    """[first invoke start, last invoke end] of every measuring process, in time order."""
    spans: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        pid, start, end = line.split()
        span = spans.setdefault(pid, [float(start), float(end)])
        span[0], span[1] = min(span[0], float(start)), max(span[1], float(end))
    return sorted((a, b) for a, b in spans.values())


def test_two_controllers_on_one_place_are_serialised(pool: tuple[LabgridLab, list[SSHServer], Path, Path],
                                                      tmp_path: Path) -> None:
    lab, servers, model, log = pool
    inv = _inventory(tmp_path / "inv.yaml", servers[0], sleepy_python(tmp_path / "rt", 100, log),
                     {"board": "labgrid_place: rpi-1"})
    # each measures for ~10 s: longer than the few labgrid-client calls (1-2 s each on a loaded machine) between
    # one controller's release and the other's start, so a lock released too early would show as an overlap
    runs = [_edgebench("run", "--models", model, "--inventory", inv, "--store", tmp_path / f"{n}.sqlite", *RUN,
                       "--runs", "100") for n in ("a", "b")]
    for proc in runs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
    for n in ("a", "b"):
        export = _export(tmp_path / f"{n}.sqlite")
        assert [c["status"] for c in export["results"]] == ["ok"]
        assert export["devices"][0]["labgrid_place"] == "rpi-1"
        assert export["devices"][0]["host"] == "127.0.0.1"  # from the place's NetworkService
    spans = _intervals(log)
    assert len(spans) == 2, spans  # one measuring process per controller
    (_, first_end), (second_start, _) = spans
    assert first_end <= second_start, f"the two controllers measured the board at the same time: {spans}"
    assert lab.holder("rpi-1") is None  # both released


def test_a_busy_place_times_out_as_device_busy_naming_its_holder_and_keeps_its_lock(
        pool: tuple[LabgridLab, list[SSHServer], Path, Path], tmp_path: Path) -> None:
    lab, servers, model, log = pool
    lab.client("-p", "rpi-1", "acquire", user="alice")
    inv = _inventory(tmp_path / "inv.yaml", servers[0], sleepy_python(tmp_path / "rt", 1, log),
                     {"board": "labgrid_place: rpi-1"})
    t0 = time.monotonic()
    result = run_cli("run", "--models", model, "--inventory", inv, "--store", tmp_path / "s.sqlite",
                     "--lock-timeout", "3s", *RUN)
    waited = time.monotonic() - t0
    assert result.code == 3, result.err
    cell, = _export(tmp_path / "s.sqlite")["results"]
    assert cell["status"] == "device_busy"
    assert "rpi-1 acquired by testhost/alice" in cell["error"] and "--lock-timeout" in cell["error"]
    assert 3 <= waited < 30
    assert not log.exists()  # nothing ran on the board
    assert lab.holder("rpi-1") == "testhost/alice"  # edgebench released only its own lock, not alice's


def test_tag_selection_picks_the_free_place(pool: tuple[LabgridLab, list[SSHServer], Path, Path],
                                             tmp_path: Path) -> None:
    lab, servers, model, log = pool
    lab.client("-p", "rpi-1", "acquire", user="alice")
    inv = _inventory(tmp_path / "inv.yaml", servers[0], sleepy_python(tmp_path / "rt", 1, log),
                     {"any-pi": "labgrid_tags: {board: rpi4}"})
    result = run_cli("run", "--models", model, "--inventory", inv, "--store", tmp_path / "s.sqlite",
                     "--lock-timeout", "20s", *RUN)
    assert result.code == 0, result.err
    export = _export(tmp_path / "s.sqlite")
    assert [c["status"] for c in export["results"]] == ["ok"]
    device, = export["devices"]
    assert device["name"] == "any-pi" and device["labgrid_place"] == "rpi-2"
    assert lab.holder("rpi-1") == "testhost/alice" and lab.holder("rpi-2") is None


def test_a_killed_controller_does_not_leave_the_place_locked_for_ever(
        pool: tuple[LabgridLab, list[SSHServer], Path, Path], tmp_path: Path) -> None:
    lab, servers, model, log = pool
    inv = _inventory(tmp_path / "inv.yaml", servers[0], sleepy_python(tmp_path / "rt", 200, log),
                     {"board": "labgrid_place: rpi-1"})
    doomed = _edgebench("run", "--models", model, "--inventory", inv, "--store", tmp_path / "a.sqlite",
                        "--runs", "1000", "--min-seconds", "0", "-q")
    _wait_for(lambda: log.exists() and bool(log.read_text()), doomed, "started measuring")
    holder = lab.holder("rpi-1")
    assert holder is not None and ".eb-" in holder  # the controller's own identity
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate()
    assert lab.holder("rpi-1") == holder  # labgrid keeps a dead client's lock...

    result = run_cli("run", "--models", model, "--inventory", inv, "--store", tmp_path / "b.sqlite",
                     "--lock-timeout", "20s", *RUN)  # ...until the next controller on this host clears it
    assert result.code == 0, result.err
    assert [c["status"] for c in _export(tmp_path / "b.sqlite")["results"]] == ["ok"]
    assert lab.holder("rpi-1") is None


def test_ctrl_c_releases_the_place_while_measuring_and_stops_waiting_for_a_busy_one(
        pool: tuple[LabgridLab, list[SSHServer], Path, Path], tmp_path: Path) -> None:
    lab, servers, model, log = pool
    inv = _inventory(tmp_path / "inv.yaml", servers[0], sleepy_python(tmp_path / "rt", 100, log),
                     {"board": "labgrid_place: rpi-1"})
    measuring = _edgebench("run", "--models", model, "--inventory", inv, "--store", tmp_path / "a.sqlite",
                           "--runs", "30", "--min-seconds", "0")
    _wait_for(lambda: log.exists() and bool(log.read_text()), measuring, "started measuring")
    os.killpg(measuring.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground process group
    _, err = measuring.communicate(timeout=120)
    assert measuring.returncode == 130 and "--resume" in err, err
    assert lab.holder("rpi-1") is None

    lab.client("-p", "rpi-1", "acquire", user="alice")
    waiting = _edgebench("run", "--models", model, "--inventory", inv, "--store", tmp_path / "b.sqlite",
                         "--lock-timeout", "10m")
    _wait_for(lambda: ".eb-" in lab.client("reservations").stdout, waiting, "reserved the place")
    t0 = time.monotonic()
    os.killpg(waiting.pid, signal.SIGINT)
    _, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 130, err
    assert time.monotonic() - t0 < 30  # not the 10 minutes of --lock-timeout
    assert ".eb-" not in lab.client("reservations").stdout  # its reservation is cancelled
    assert lab.holder("rpi-1") == "testhost/alice"


def test_devices_lists_labgrid_places_with_who_holds_them(pool: tuple[LabgridLab, list[SSHServer], Path, Path],
                                                          tmp_path: Path) -> None:
    lab, servers, _, log = pool
    lab.client("-p", "rpi-1", "acquire", user="alice")
    inv = _inventory(tmp_path / "inv.yaml", servers[0], sleepy_python(tmp_path / "rt", 1, log),
                     {"board": "labgrid_place: rpi-1", "spare": "labgrid_place: rpi-2"})
    result = run_cli("devices", "--inventory", inv, "--json")
    listing = json.loads(result.out)
    places = {p["name"]: p for p in listing["labgrid_places"]}
    assert places["rpi-1"]["acquired"] == "testhost/alice" and places["rpi-2"]["acquired"] is None
    assert places["rpi-2"]["tags"] == {"board": "rpi4"}
    devices = {d["name"]: d for d in listing["devices"]}
    assert devices["board"]["status"] == "device_busy" and "testhost/alice" in devices["board"]["error"]
    assert devices["spare"]["status"] == "ok"  # probed while edgebench held rpi-2
    text = run_cli("devices", "--inventory", inv).out
    assert "rpi-1" in text and "acquired by testhost/alice" in text and "free" in text
    assert lab.holder("rpi-2") is None


def test_only_dead_controllers_of_this_host_and_pid_namespace_count_as_stale() -> None:
    host, user = controller_identity()
    assert is_stale(f"{host}/{user}", (host, user)) is False  # this very process
    dead = user.rsplit("-", 2)[0] + "-999999999-1"
    assert is_stale(f"{host}/{dead}", (host, user)) is True
    assert is_stale(f"other-host/{dead}", (host, user)) is False  # another machine's controller: never
    assert is_stale(f"{host}/alice", (host, user)) is False  # a person, not an edgebench controller
    places = parse_places("Place 'p':\n  tags: board=rpi4, lab=b2\n  matches:\n    e/g/NetworkService\n"
                          "  acquired: h/u\n  acquired resources:\n    e/g/NetworkService/NetworkService\n")
    assert places == [Place("p", {"board": "rpi4", "lab": "b2"}, "h/u")]


HIDDEN_PROC = 'mount -t proc -o hidepid=2 proc /proc && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"'
STALE_AS_NOBODY = ("import sys; from harness.fleet.lab import _start_ticks, is_stale; "
                   "print(_start_ticks(int(sys.argv[3])), is_stale(sys.argv[1], (sys.argv[2], 'x')))")


def test_a_controller_whose_start_time_is_unknown_is_never_taken_for_dead() -> None:
    host, user = controller_identity()
    unknown = user.rsplit("-", 1)[0] + "-0"  # this live process, its start time unreadable when it started
    assert is_stale(f"{host}/{unknown}", (host, user)) is False
    dead = user.rsplit("-", 2)[0] + "-999999999-0"
    assert is_stale(f"{host}/{dead}", (host, user)) is True  # no such process: known dead


def test_a_controller_hidden_by_hidepid_is_never_taken_for_dead() -> None:
    host, user = controller_identity()
    if os.geteuid() != 0:  # CI runs as root; elsewhere this FAILs saying why rather than skipping
        pytest.fail("hiding /proc from another user needs root (a private mount of /proc with hidepid=2): "
                    "run the tests as root, as .ci/run does", pytrace=False)
    # Another user's controller on a /proc mounted hidepid=2 cannot read this process's start time: to it,
    # this controller is alive (it is), not a dead one whose lock it may clear.
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDDEN_PROC, "sh",
                           sys.executable, "-c", STALE_AS_NOBODY, f"{host}/{user}", host, str(os.getpid())],
                          capture_output=True, text=True, timeout=60, cwd="/", env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "False"], done.stdout  # hidden from it, and not stale to it


def _failed_board_cell(tmp_path: Path, host: str) -> Any:
    """Run a stand-in model on one inventory host ``board: HOST``, which must fail (exit 3); its one cell."""
    inv = tmp_path / "inv.yaml"
    inv.write_text(f"all:\n  hosts:\n    board: {host}\n")
    result = run_cli("run", "--models", stand_in_model(tmp_path / "m.tflite"), "--inventory", inv,
                     "--store", tmp_path / "s.sqlite", "-q")
    assert result.code == 3, result.err
    cell, = _export(tmp_path / "s.sqlite")["results"]
    return cell


def _client_wrapper(directory: Path, when: str, then: str) -> Path:
    """A ``labgrid-client`` beside a stand-in interpreter path: the real client, except that a call with the
    argument ``when`` runs the shell command ``then`` instead (labgrid cannot be made to hang or answer
    garbage on one call only). edgebench takes the labgrid-client beside sys.executable."""
    directory.mkdir()
    real = Path(sys.executable).parent / "labgrid-client"
    wrapper = directory / "labgrid-client"
    wrapper.write_text(f'#!/bin/sh\nfor a; do [ "$a" = {when} ] && {{ {then}; }}; done\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    return directory / "python"


def test_a_cancel_that_hangs_still_releases_the_place(labgrid_lab: LabgridLab, sshd_servers: Callable[..., list[SSHServer]],
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, = sshd_servers(1)
    labgrid_lab.export({"board-1": server})
    labgrid_lab.place("rpi-1", "board-1")
    monkeypatch.setattr(sys, "executable", str(_client_wrapper(tmp_path / "bin", "cancel-reservation",
                                                               "exec sleep 600")))
    started = time.monotonic()
    with pytest.raises(TransportError, match="cancel-reservation .* got no answer"):
        with hold_place(Device(name="board", labgrid_place="rpi-1"), 30) as target:
            assert target.port == server.port and ".eb-" in str(labgrid_lab.holder("rpi-1"))
    assert labgrid_lab.holder("rpi-1") is None  # released although the cancel never answered
    assert time.monotonic() - started < LET_GO_TIMEOUT_S + 20


def test_a_place_whose_env_is_not_a_mapping_fails_its_cells_and_is_released(
        labgrid_lab: LabgridLab, sshd_servers: Callable[..., list[SSHServer]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server, = sshd_servers(1)
    labgrid_lab.export({"board-1": server})
    labgrid_lab.place("rpi-1", "board-1")
    monkeypatch.setattr(sys, "executable", str(_client_wrapper(tmp_path / "bin", "env",
                                                               "printf -- '- targets\\n- rpi-1\\n'; exit 0")))
    cell = _failed_board_cell(tmp_path, "{labgrid_place: rpi-1}")
    assert cell["status"] == "environment_error" and "labgrid place rpi-1: no NetworkService" in cell["error"]
    assert labgrid_lab.holder("rpi-1") is None


@pytest.mark.parametrize("text, words", [
    ("just a line", "no NetworkService"),
    ("targets: [rpi-1]", "no NetworkService"),
    ("targets: {rpi-1: {resources: {NetworkService: {address: h}}}}", "no NetworkService"),
    ("targets: {rpi-1: {resources: [{NetworkService: [h, 22]}]}}", "must be a mapping, not list"),
    ("targets: {rpi-1: {resources: [{NetworkService: {port: 22}}]}}", "has no address (got None)"),
    ("targets: {rpi-1: {resources: [{NetworkService: {address: h, port: '22; rm'}}]}}", "must be a port number"),
    ("targets: {rpi-1: {resources: [{NetworkService: {address: h, username: [root]}}]}}", "must be text"),
    ("targets: [{unclosed", "printed no YAML"),
])
def test_every_level_of_a_places_env_is_checked(text: str, words: str) -> None:
    with pytest.raises(TransportError) as info:
        network_service(text, "rpi-1")
    assert info.value.status == "environment_error" and info.value.message.startswith("labgrid place rpi-1: ")
    assert words in info.value.message, info.value.message
    good = "targets: {rpi-1: {resources: [{NetworkService: {address: 10.0.0.7, username: pi, port: 2222}}]}}"
    assert network_service(good, "rpi-1") == {"address": "10.0.0.7", "username": "pi", "port": 2222}


def test_an_unreachable_coordinator_makes_the_cells_unreachable_naming_it(tmp_path: Path, ssh_home: Path) -> None:
    cell = _failed_board_cell(tmp_path, "{labgrid_place: rpi-1, labgrid_coordinator: '127.0.0.1:1'}")
    assert cell["status"] == "unreachable" and "labgrid coordinator 127.0.0.1:1 unreachable" in cell["error"]


@pytest.mark.parametrize("line, words", [
    ("labgrid_tags: [rpi4]", "labgrid_tags in host 'board' must be dict"),
    ("labgrid_tags: {board: 4}", "must map tag names to strings"),
    ("labgrid_place: [rpi-1]", "labgrid_place in host 'board' must be str"),
])
def test_labgrid_keys_are_checked_naming_the_line(tmp_path: Path, line: str, words: str) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text(f"all:\n  hosts:\n    board:\n      {line}\n")
    result = run_cli("devices", "--inventory", inv)
    assert result.code == 2 and f"{inv}:4" in result.err and words in result.err, result.err
