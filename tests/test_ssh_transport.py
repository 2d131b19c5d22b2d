"""The SSH transport against real OpenSSH servers on loopback (see sshd_fixture.py)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.config.inventory import Device
from harness.fleet.transport.base import TransportError
from harness.fleet.transport.ssh import SSHTransport
from tests.support.sshd import SSHServer, command_names, free_port, group_members, keygen, pid_alive, process_tree

Servers = Callable[..., list[SSHServer]]


def device(server: SSHServer, **overrides: object) -> Device:
    fields: dict[str, object] = dict(name="dut", host=server.host, port=server.port, user=server.user,
                                     key_file=str(server.client_key_path), workdir=str(server.home / "work"))
    fields.update(overrides)
    return Device(**fields)  # type: ignore[arg-type]


def trust(home: Path, *servers: SSHServer) -> None:
    with open(home / ".ssh" / "known_hosts", "a") as f:
        for server in servers:
            f.write(server.known_hosts_line + "\n")


def failure(transport: SSHTransport) -> TransportError:
    with pytest.raises(TransportError) as info:
        transport.connect()
    transport.close()
    return info.value


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# -- commands -----------------------------------------------------------------------------------------


def test_run_gives_stdout_stderr_exit_code_and_stdin_over_one_connection(sshd_servers: Servers, ssh_home: Path) -> None:
    server, = sshd_servers(1)
    trust(ssh_home, server)
    with SSHTransport(device(server)) as t:
        done = t.run(["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
        assert (done.code, done.stdout, done.stderr) == (3, b"out\n", b"err\n")
        assert t.run(["cat"], 10, stdin=b"job\x00\xff" * 50000).stdout == b"job\x00\xff" * 50000
        assert t.run(["true"], 10).code == 0
    # Three commands, one login: the connection is reused.
    assert server.log().count("Accepted publickey") == 1


def test_argv_reaches_the_device_literally(sshd_servers: Servers, ssh_home: Path) -> None:
    server, = sshd_servers(1)
    trust(ssh_home, server)
    work = server.home / "w"
    (work / "victim").mkdir(parents=True)
    name = "it's a \"file\"; rm -rf victim $(touch pwned) `touch pwned2` * & | > out \\ $HOME"
    with SSHTransport(device(server)) as t:
        assert t.run(["touch", "--", f"{work}/{name}"], 10).code == 0
        args = [name, "", "  lead", "new\nline", "-n", "%s"]
        assert t.run(["printf", "[%s]\\n", *args], 10).stdout == "".join(f"[{a}]\n" for a in args).encode()
    assert sorted(os.listdir(work)) == sorted([name, "victim"])


def test_put_file_and_home_directory(sshd_servers: Servers, ssh_home: Path, tmp_path: Path) -> None:
    server, = sshd_servers(1)
    trust(ssh_home, server)
    local = tmp_path / "model.tflite"
    local.write_bytes(os.urandom(3 << 20))
    with SSHTransport(device(server, workdir=None)) as t:
        home = t.home()
        # The default is ~/.cache/edgebench on the device, created on first use.
        assert home == str((server.home / ".cache" / "edgebench").resolve())
        assert Path(home).is_dir()
        t.put(local, f"{home}/model.tflite")
        remote = t.run(["sha256sum", f"{home}/model.tflite"], 10).stdout.split()[0].decode()
    assert remote == hashlib.sha256(local.read_bytes()).hexdigest()
    with SSHTransport(device(server, workdir="~/bench dir")) as t:
        assert t.home() == str(server.home.resolve() / "bench dir")


# -- host keys ----------------------------------------------------------------------------------------


def test_unknown_host_key_is_refused(sshd_servers: Servers, ssh_home: Path) -> None:
    server, = sshd_servers(1)
    err = failure(SSHTransport(device(server)))
    assert err.status == "host_key_unknown"
    assert server.fingerprint in err.message and "--trust-new-hosts" in err.message
    assert f"ssh-keyscan -p {server.port} 127.0.0.1" in err.message
    assert not (ssh_home / ".ssh" / "known_hosts").exists()
    assert "Accepted publickey" not in server.log()  # refused before authenticating


def test_trust_on_first_use_records_the_key(sshd_servers: Servers, ssh_home: Path) -> None:
    server, = sshd_servers(1)
    with SSHTransport(device(server), trust_new_hosts=True) as t:
        assert t.run(["echo", "hi"], 10).stdout == b"hi\n"
    known = ssh_home / ".ssh" / "known_hosts"
    assert known.read_text().splitlines() == [server.known_hosts_line]
    # The next connection, without the flag, knows the host.
    with SSHTransport(device(server)) as t:
        assert t.run(["true"], 10).code == 0
    assert known.read_text().splitlines() == [server.known_hosts_line]


def test_device_known_hosts_file_is_read_and_receives_new_keys(sshd_servers: Servers, ssh_home: Path,
                                                               tmp_path: Path) -> None:
    a, b = sshd_servers(2)
    lab = tmp_path / "lab_known_hosts"
    lab.write_text("# lab keys\n" + a.known_hosts_line)  # no final newline: the recorded line must not join it
    with SSHTransport(device(a, known_hosts=str(lab))) as t:
        assert t.run(["true"], 10).code == 0
    with SSHTransport(device(b, known_hosts=str(lab)), trust_new_hosts=True) as t:
        assert t.run(["true"], 10).code == 0
    assert lab.read_text().splitlines() == ["# lab keys", a.known_hosts_line, b.known_hosts_line]
    assert not (ssh_home / ".ssh" / "known_hosts").exists()


def test_changed_host_key_is_refused_even_when_trusting_new_hosts(sshd_servers: Servers, ssh_home: Path) -> None:
    server, impostor = sshd_servers(2)
    known = ssh_home / ".ssh" / "known_hosts"
    # The impostor answers at an address known_hosts remembers with another key.
    known.write_text(f"{impostor.known_hosts_name} {server.host_public_key}\n")
    for trust_new in (False, True):
        err = failure(SSHTransport(device(impostor), trust_new_hosts=trust_new))
        assert err.status == "host_key_changed"
        assert server.fingerprint in err.message and impostor.fingerprint in err.message
    assert known.read_text() == f"{impostor.known_hosts_name} {server.host_public_key}\n"
    assert "Accepted publickey" not in impostor.log()


def test_known_hosts_as_openssh_writes_it(sshd_servers: Servers, ssh_home: Path, tmp_path: Path) -> None:
    """Hashed names (ssh-keygen -H), several keys for one host, junk lines, wildcards and @revoked."""
    hashed, wildcard, revoked = sshd_servers(3)
    other_key = keygen(tmp_path / "other")
    known = ssh_home / ".ssh" / "known_hosts"
    # An old key of the same host kept beside the new one, both names hashed by OpenSSH itself.
    known.write_text(f"{hashed.known_hosts_name} {other_key}\n{hashed.known_hosts_line}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    assert hashed.known_hosts_name not in known.read_text()
    with open(known, "a") as f:
        f.write("this line is not a key\n"
                f"[127.0.0.*]:{wildcard.port},!{hashed.known_hosts_name} {wildcard.host_public_key}\n"
                f"@revoked * {revoked.host_public_key}\n")
    for server in (hashed, wildcard):
        with SSHTransport(device(server)) as t:
            assert t.run(["true"], 10).code == 0
    err = failure(SSHTransport(device(revoked), trust_new_hosts=True))
    assert err.status == "host_key_changed" and "@revoked" in err.message


# -- failures -----------------------------------------------------------------------------------------


def test_unreachable_port_fails_fast(ssh_home: Path) -> None:
    start = time.monotonic()
    err = failure(SSHTransport(Device(name="dut", host="127.0.0.1", port=free_port(), user="root")))
    assert err.status == "unreachable" and "refused" in err.message.lower()
    assert time.monotonic() - start < 2


def test_silent_server_times_out_as_unreachable(ssh_home: Path) -> None:
    with socket.socket() as listener:  # accepts TCP, never says a word of SSH
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        start = time.monotonic()
        err = failure(SSHTransport(Device(name="dut", host="127.0.0.1", port=port, user="root"), connect_timeout=1))
    assert err.status == "unreachable" and "no SSH handshake within 1 s" in err.message
    assert time.monotonic() - start < 4


def test_wrong_or_missing_key_is_auth_failed(sshd_servers: Servers, ssh_home: Path, tmp_path: Path) -> None:
    server, = sshd_servers(1)
    trust(ssh_home, server)
    keygen(tmp_path / "stranger")
    err = failure(SSHTransport(device(server, key_file=str(tmp_path / "stranger"))))
    assert err.status == "auth_failed" and f"{server.user}@127.0.0.1:{server.port}" in err.message
    err = failure(SSHTransport(device(server, key_file=str(tmp_path / "nope"))))
    assert err.status == "auth_failed" and "does not exist" in err.message


def test_default_key_and_ssh_agent(sshd_servers: Servers, ssh_home: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    server, = sshd_servers(1)
    trust(ssh_home, server)
    # ~/.ssh/id_ed25519, found without being named.
    for suffix in ("", ".pub"):
        (ssh_home / ".ssh" / f"id_ed25519{suffix}").write_bytes(Path(f"{server.client_key_path}{suffix}").read_bytes())
    (ssh_home / ".ssh" / "id_ed25519").chmod(0o600)  # as ssh-keygen writes it: a key others can read is skipped
    with SSHTransport(device(server, key_file=None)) as t:
        assert t.run(["true"], 10).code == 0
    for suffix in ("", ".pub"):
        (ssh_home / ".ssh" / f"id_ed25519{suffix}").unlink()
    assert failure(SSHTransport(device(server, key_file=None))).status == "auth_failed"
    # The key held only by a real ssh-agent.
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        assert wait_until(sock.exists)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        subprocess.run(["ssh-add", "-q", str(server.client_key_path)], check=True, capture_output=True)
        with SSHTransport(device(server, key_file=None)) as t:
            assert t.run(["true"], 10).code == 0
    finally:
        agent.kill()
        agent.wait()


def test_run_timeout_kills_the_remote_process_group(sshd_servers: Servers, ssh_home: Path) -> None:
    server, = sshd_servers(1)
    trust(ssh_home, server)
    pids = server.home / "pids"
    with SSHTransport(device(server)) as t:
        start = time.monotonic()
        with pytest.raises(TransportError) as info:
            t.run(["sh", "-c", 'echo $$ > "$1"; sleep 60 & echo $! >> "$1"; wait', "sh", str(pids)], 1)
        assert info.value.status == "timeout"
        assert time.monotonic() - start < 4
        shell, child = (int(p) for p in pids.read_text().split())
        assert wait_until(lambda: not pid_alive(shell) and not pid_alive(child))
        assert not group_members(shell)  # the shell led the group
        assert t.run(["echo", "still usable"], 10).stdout == b"still usable\n"


def test_start_streams_stdout_and_kill_ends_the_group(sshd_servers: Servers, ssh_home: Path) -> None:
    server, = sshd_servers(1)
    trust(ssh_home, server)
    with SSHTransport(device(server)) as t:
        proc = t.start(["sh", "-c", 'sleep 60 & read job; echo "got $job"; i=0; '
                                    'while :; do i=$((i+1)); echo $i; sleep 0.2; done'])
        proc.stdin.write(b"cells\n")
        start = time.monotonic()
        assert proc.stdout.readline() == b"got cells\n"
        assert proc.stdout.readline() == b"1\n"
        assert proc.stdout.readline() == b"2\n"
        assert time.monotonic() - start < 2  # line by line while it runs, not at the end
        assert proc.wait(0.1) is None
        group = group_members(proc.pgid)
        assert proc.pgid in group and group <= process_tree(server.proc.pid)  # the group we started on the server
        proc.kill()
        assert wait_until(lambda: not group_members(proc.pgid))
        assert proc.wait(5) == 137


def test_chatty_stderr_cannot_stall_stdout(sshd_servers: Servers, ssh_home: Path) -> None:
    server, = sshd_servers(1)
    trust(ssh_home, server)
    with SSHTransport(device(server)) as t:
        proc = t.start(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' e >&2; echo tail-marker >&2; echo done"])
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(10)  # a stalled channel fails here instead of hanging the suite
        assert line == [b"done\n"]
        assert proc.wait(10) == 0
        assert proc.stderr_tail(20) == "eeeeeeeetail-marker\n"
        proc.kill()
        done = t.run(["sh", "-c", "head -c 500000 /dev/zero >&2; echo ok"], 10)
        assert (done.stdout, len(done.stderr)) == (b"ok\n", 500000)


def test_server_killed_mid_command_is_connection_lost(sshd_servers: Servers, ssh_home: Path) -> None:
    server, = sshd_servers(1)
    trust(ssh_home, server)
    t = SSHTransport(device(server))
    t.connect()
    proc = t.start(["sleep", "30"])
    errors: list[TransportError] = []

    def run() -> None:
        try:
            t.run(["sh", "-c", "sleep 30"], 20)
        except TransportError as exc:
            errors.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    assert wait_until(lambda: command_names(process_tree(server.proc.pid)).count("sleep") == 2)
    start = time.monotonic()
    server.kill()
    runner.join(10)
    assert [e.status for e in errors] == ["connection_lost"]
    assert time.monotonic() - start < 3
    assert proc.stdout.read() == b""
    with pytest.raises(TransportError) as info:
        proc.wait(5)
    assert info.value.status == "connection_lost"
    proc.kill()  # a no-op on a dead connection, never an error
    with pytest.raises(TransportError) as info:
        t.run(["true"], 5)
    assert info.value.status == "connection_lost"
    t.close()


# -- ~/.ssh/config ------------------------------------------------------------------------------------


def test_ssh_config_alias(sshd_servers: Servers, ssh_home: Path) -> None:
    server, = sshd_servers(1)
    trust(ssh_home, server)
    (ssh_home / "keys").mkdir()
    (ssh_home / "keys" / "lab").write_bytes(server.client_key_path.read_bytes())
    (ssh_home / "keys" / "lab").chmod(0o600)  # a key others can read is refused, as OpenSSH refuses it
    (ssh_home / ".ssh" / "config").write_text(
        f"Host pi-bench pi-stranger\n  HostName 127.0.0.1\n  Port {server.port}\n"
        f"  IdentityFile ~/keys/lab\n  IdentityFile ~/keys/missing\n"
        f"Host pi-bench\n  User {server.user}\n"
        f"Host pi-stranger\n  User edgebench-nobody\n"
    )
    alias = Device(name="pi", host="pi-bench", workdir=str(server.home / "w"))
    with SSHTransport(alias) as t:
        assert t.run(["sh", "-c", 'echo "$SSH_CONNECTION"'], 10).stdout.split()[-1] == str(server.port).encode()
    err = failure(SSHTransport(Device(name="pi", host="pi-stranger")))
    assert err.status == "auth_failed" and f"edgebench-nobody@127.0.0.1:{server.port}" in err.message
    # Inventory values win over the config: the user, and a port with nothing behind it.
    with SSHTransport(Device(name="pi", host="pi-stranger", user=server.user, workdir=str(server.home / "w"))) as t:
        assert t.run(["true"], 10).code == 0
    alias.port = free_port()
    assert failure(SSHTransport(alias)).status == "unreachable"


def test_proxy_jump(sshd_servers: Servers, ssh_home: Path, tmp_path: Path) -> None:
    jump, = sshd_servers(1, log_level="DEBUG1")  # DEBUG1 logs each TCP forwarding it makes
    target, = sshd_servers(1)
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host target target-inline\n  IdentityFile {target.client_key_path}\n"
        f"Host target\n  HostName 127.0.0.1\n  Port {target.port}\n  ProxyJump bastion\n"
        f"Host bastion\n  HostName 127.0.0.1\n  Port {jump.port}\n  IdentityFile {jump.client_key_path}\n"
        f"Host target-inline\n  HostName 127.0.0.1\n  Port {target.port}\n"
        f"  ProxyJump {jump.user}@127.0.0.1:{jump.port}\n"
    )
    # The jump host's key is checked like any other.
    err = failure(SSHTransport(Device(name="t", host="target", user=target.user), ssh_config_path=config))
    assert err.status == "host_key_unknown" and "jump host bastion" in err.message
    trust(ssh_home, jump, target)
    # The config named by the transport's caller, or by the device itself.
    for t in (SSHTransport(Device(name="t", host="target", user=target.user), ssh_config_path=config),
              SSHTransport(Device(name="t", host="target-inline", user=target.user, ssh_config=str(config)))):
        t.connect()
        assert t.run(["echo", "via jump"], 10).stdout == b"via jump\n"
        t.close()
    # Both logins went through the bastion: it forwarded the TCP connections to the target.
    assert jump.log().count(f"target 127.0.0.1 port {target.port}") == 2
    # And the target's connection lives inside the bastion's.
    t = SSHTransport(Device(name="t", host="target", user=target.user), ssh_config_path=config)
    t.connect()
    jump.kill()
    with pytest.raises(TransportError) as info:
        t.run(["true"], 5)
    assert info.value.status == "connection_lost"
    t.close()
