"""A real labgrid lab on loopback: ``labgrid-coordinator`` and one ``labgrid-exporter`` whose NetworkService
resources are the test sshd servers, and places made and matched with ``labgrid-client``.

    def test_x(labgrid_lab, sshd_servers):
        server, = sshd_servers(1)
        labgrid_lab.export({"board-1": server})
        labgrid_lab.place("rpi-1", "board-1", board="rpi4")

The coordinator keeps its places.yaml in the test's tmp dir; everything is killed at teardown. Without
labgrid the tests fail and say how to install it (they are never skipped).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.support.sshd import SSHServer, free_port

BIN = Path(sys.executable).parent
INSTALL_HINT = "labgrid is needed for the device-pool tests: pip install 'edgebench[lab]' (or pip install labgrid)"


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} not found beside {sys.executable}; {INSTALL_HINT}", pytrace=False)
    return str(path)


@dataclass
class LabgridLab:
    address: str
    dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def client(self, *args: str, user: str = "tester", check: bool = True) -> subprocess.CompletedProcess[str]:
        """labgrid-client as HOST ``testhost``, USER ``user`` (a person at the lab, not edgebench)."""
        env = dict(os.environ, LG_COORDINATOR=self.address, LG_HOSTNAME="testhost", LG_USERNAME=user)
        done = subprocess.run([_tool("labgrid-client"), *args], capture_output=True, text=True, env=env, timeout=60)
        assert not check or done.returncode == 0, f"labgrid-client {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def _start(self, name: str, argv: list[str], ready: str) -> None:
        log = self.dir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=self.dir, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while ready not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{name} did not start:\n{log.read_text(errors='replace')[-3000:]}", pytrace=False)
            time.sleep(0.1)

    def export(self, devices: dict[str, SSHServer], name: str = "exporter") -> None:
        """One exporter: a resource group per device, each a NetworkService for its sshd."""
        config = self.dir / f"{name}.yaml"
        config.write_text(yaml.safe_dump({group: {"NetworkService": {"address": s.host, "username": s.user,
                                                                      "port": s.port}}
                                          for group, s in devices.items()}))
        self._start(name, [_tool("labgrid-exporter"), "-c", self.address, "-n", name, "--hostname", "127.0.0.1",
                           str(config)], "Exporter ready")
        deadline = time.monotonic() + 30
        while not all(f"{name}/{g}/NetworkService" in self.client("resources").stdout for g in devices):
            assert time.monotonic() < deadline, "the exporter's resources never reached the coordinator"
            time.sleep(0.2)
        self.exporter = name

    def place(self, name: str, group: str, **tags: str) -> None:
        self.client("-p", name, "create")
        self.client("-p", name, "add-match", f"{self.exporter}/{group}/NetworkService")
        if tags:
            self.client("-p", name, "set-tags", *(f"{k}={v}" for k, v in tags.items()))

    def holder(self, place: str) -> str | None:
        for line in self.client("-p", place, "show").stdout.splitlines():
            if line.strip().startswith("acquired: "):
                value = line.split(": ", 1)[1]
                return None if value == "None" else value
        raise AssertionError(f"no 'acquired:' line for place {place}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@pytest.fixture()
def labgrid_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LabgridLab]:
    """A coordinator on a free loopback port (LG_COORDINATOR points at it); exporters via ``export``."""
    lab = LabgridLab(f"127.0.0.1:{free_port()}", tmp_path / "labgrid")
    lab.dir.mkdir()
    monkeypatch.setenv("LG_COORDINATOR", lab.address)
    try:
        lab._start("coordinator", [_tool("labgrid-coordinator"), "-l", lab.address], "Coordinator ready")
        yield lab
    finally:
        lab.stop()
