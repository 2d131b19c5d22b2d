"""Real OpenSSH servers on loopback for the SSH transport tests.

Each server is `/usr/sbin/sshd -D -e -f CONFIG` on a free 127.0.0.1 port with
its own host key, its own authorized_keys (the test client key) and its own
"device home": `SetEnv HOME=...` makes every session see a home directory
inside the test's tmp dir, so nothing is written to the real home of the user
the server runs as. Tests get a fresh, isolated $HOME for the client too
(`ssh_home`), so the user's real ~/.ssh is never read or written.

Use in a test module:

    from sshd_fixture import ssh_home, sshd_servers  # noqa: F401  (pytest fixtures)

    def test_x(sshd_servers):
        server, = sshd_servers(1)
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
INSTALL_HINT = "real OpenSSH servers are needed for the SSH tests: apt-get install openssh-server"


def keygen(path: Path) -> str:
    """A new ed25519 key pair at ``path``; returns the public key ("ssh-ed25519 AAAA...")."""
    keygen_bin = shutil.which("ssh-keygen")
    if keygen_bin is None:
        pytest.fail(f"ssh-keygen not found; {INSTALL_HINT}", pytrace=False)
    subprocess.run([keygen_bin, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


def fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a "type base64" public key."""
    digest = hashlib.sha256(base64.b64decode(public_key.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(root: int) -> set[int]:
    """``root`` and every process below it (connections, sessions, their commands)."""
    tree, found, todo = _children(), set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(tree.get(pid, []))
    return found


def group_members(pgid: int) -> set[int]:
    """Live processes of process group ``pgid``."""
    members = set()
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.add(int(entry))
    return members


def command_names(pids: set[int]) -> list[str]:
    names = []
    for pid in pids:
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            pass
    return names


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie nobody reaps (PID 1 here may not) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@dataclass
class SSHServer:
    host: str
    port: int
    user: str
    dir: Path
    home: Path  # $HOME of sessions on this server
    host_key_path: Path
    host_public_key: str  # "ssh-ed25519 AAAA..."
    client_key_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def known_hosts_name(self) -> str:
        return f"[{self.host}]:{self.port}"

    @property
    def known_hosts_line(self) -> str:
        return f"{self.known_hosts_name} {self.host_public_key}"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.host_public_key)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """Power cut: SIGKILL the server, its connections and everything their sessions run."""
        self._signal_tree(signal.SIGKILL)

    def restart(self) -> None:
        """Power back on after kill(): the same config, host key and port; the log starts afresh."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None and "Server listening" not in self.log():
            time.sleep(0.02)
        assert "Server listening" in self.log(), self.log()

    def stop(self) -> None:
        """Orderly shutdown of the whole tree; SIGKILL whatever is left after 5 s."""
        if self.proc.poll() is None:
            self._signal_tree(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal_tree(self, sig: int) -> None:
        # Freeze the tree first: a stopped process cannot fork, and once its parent
        # is gone a process is reparented and can no longer be found by walking down.
        frozen: set[int] = set()
        while self.proc.poll() is None:
            new = process_tree(self.proc.pid) - frozen
            if not new:
                break
            for pid in new:
                _signal(pid, signal.SIGSTOP)
            frozen |= new
        for pid in frozen:
            _signal(pid, sig)
            _signal(pid, signal.SIGCONT)
        self.proc.wait(10)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def free_port() -> int:
    """A loopback port nothing listens on (until someone binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {host_key}
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 100
LogLevel {log_level}
SetEnv HOME={home}
Subsystem sftp internal-sftp
"""


def start_sshd(base: Path, client_public_key: str, client_key_path: Path, log_level: str = "VERBOSE") -> SSHServer:
    """One sshd in the foreground (daemonised sshd resets connections here) on a free port."""
    if not os.access(SSHD, os.X_OK):
        pytest.fail(f"{SSHD} not found; {INSTALL_HINT}", pytrace=False)
    try:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    except PermissionError:
        pass  # not root: sshd does not need it, and says so in its log if it does
    base.mkdir(parents=True)
    home = base / "home"
    home.mkdir()
    host_key = base / "host_ed25519"
    host_public_key = keygen(host_key)
    (base / "authorized_keys").write_text(client_public_key + "\n")
    log_path = base / "sshd.log"
    for _ in range(5):  # a free port can be taken between probing and binding
        port = free_port()
        config = base / "sshd_config"
        config.write_text(_CONFIG.format(port=port, host_key=host_key, dir=base, home=home, log_level=log_level))
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None and "Server listening" not in log_path.read_text():
            time.sleep(0.02)
        if proc.poll() is None and "Server listening" in log_path.read_text():
            return SSHServer("127.0.0.1", port, getpass.getuser(), base, home, host_key, host_public_key,
                             client_key_path, log_path, proc)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if "Address already in use" not in log_path.read_text():
            break
    pytest.fail(f"sshd did not start:\n{log_path.read_text()}", pytrace=False)


@pytest.fixture()
def ssh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $HOME with an empty ~/.ssh and no ssh-agent: the user's real keys and known_hosts stay out."""
    home = tmp_path / "client-home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture()
def sshd_servers(ssh_home: Path, tmp_path: Path) -> Iterator[Callable[..., list[SSHServer]]]:
    """Factory: ``sshd_servers(n, log_level=...)`` starts n servers accepting one client key; stopped at teardown."""
    client_key = tmp_path / "client_ed25519"
    client_public_key = keygen(client_key)
    started: list[SSHServer] = []

    def start(n: int = 1, log_level: str = "VERBOSE") -> list[SSHServer]:
        servers = []
        for _ in range(n):
            server = start_sshd(tmp_path / f"sshd-{len(started)}", client_public_key, client_key, log_level)
            started.append(server)
            servers.append(server)
        return servers

    yield start
    for server in started:
        server.stop()


def trust(home: Path, servers: list[SSHServer]) -> None:
    """known_hosts under ``home`` with these servers' host keys (the host verifies them, never trusts on first use)."""
    (home / ".ssh" / "known_hosts").write_text("".join(s.known_hosts_line + "\n" for s in servers))
