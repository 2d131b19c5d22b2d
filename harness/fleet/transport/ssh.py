"""Devices over SSH (paramiko): one verified connection per device, every argv quoted.

Host keys are checked against ~/.ssh/known_hosts (read through $HOME) and the
device's own ``known_hosts`` file. An unknown key is refused unless the user
asked to trust new hosts, in which case it is recorded (trust on first use); a
key that differs from the recorded one is always refused.

~/.ssh/config (or the device's ``ssh_config``) is read the way OpenSSH reads it:
Host aliases, HostName, User, Port, IdentityFile and ProxyJump; the device's
host is looked up as an alias, and its port, user and key_file win over the
config. Authentication tries the key files, then ~/.ssh/id_*, then ssh-agent;
a key file that others can read is refused (a default one skipped), as OpenSSH
does.

Every command runs as ``setsid sh -c 'print pgid; exec argv'`` so the whole
remote process group can be killed later through a second exec on the same
connection; where the device has no ``setsid`` (macOS) only the process itself.

Every blocking step has a deadline: paramiko waits without one for channel
requests (exec) and SFTP answers, so a server that authenticated and then
stalled would hold the run forever. A step past its deadline closes the
connection (which wakes every waiter) and is a ``timeout``.
"""

from __future__ import annotations

import getpass
import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, cast

import paramiko

from ...config.inventory import Device
from .base import (MAX_OUTPUT_BYTES, POLL_S, STDERR_KEEP_BYTES, Capture, CommandResult, RemoteProcess, Transport,
                   TransportError, Watchdog, feed, interrupting, stop_if_interrupted, too_much_output)
from .hostkeys import HostKeyPolicy, KnownHosts, transport_preferring
from .sshkeys import Endpoint, default_keys, key_label, private_key, scrub_key_paths, split_jump

DEFAULT_WORKDIR = ".cache/edgebench"  # relative to the device's $HOME
KEEPALIVE_S = 30  # an agent measuring quietly for minutes must not lose its connection to an idle NAT timeout
MAX_JUMPS = 8
STDERR_TAIL_BYTES = 64 << 10
MAX_PREAMBLE_BYTES = 64 << 10  # what a login script may print before the command starts

_PGID_MARK = b"edgebench-pgid "
_INNER = 'printf "edgebench-pgid %s\\n" "$$"; exec "$@"'
# `; exit $?` stops the login shell from exec'ing setsid itself: as a process group
# leader, setsid would fork and its parent would exit at once, losing the exit code.
_OUTER = ('if command -v setsid >/dev/null 2>&1; then set -- setsid; else set --; fi; '
          '"$@" sh -c {inner} edgebench {argv}; exit $?')
_KILL_GROUP = 'kill -KILL "-$1" 2>/dev/null || kill -KILL "$1" 2>/dev/null; true'
_MAKE_HOME = 'umask 077 && cd && mkdir -p -- "$1" && cd -- "$1" && pwd -P'  # private: see shipping.py

# paramiko logs a dropped connection at ERROR; without a handler Python would print that
# on stderr beside edgebench's own report of it. Records still propagate to any configured handler.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def remote_command(argv: list[str]) -> str:
    """The command line the remote login shell runs for argv: every argument quoted, nothing interpreted."""
    if not argv:
        raise ValueError("empty argv")
    return _OUTER.format(inner=shlex.quote(_INNER), argv=" ".join(shlex.quote(a) for a in argv))


class _StderrPump:
    """Reads a channel's stderr on a thread, keeping the tail.

    stdout and stderr share one SSH flow-control window: unread stderr would
    stall stdout too, so a chatty process could deadlock the channel.
    """

    def __init__(self, chan: paramiko.Channel, limit: int):
        self._chan = chan
        self._limit = limit
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ssh-stderr", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data = self._chan.recv_stderr(1 << 16)
            except (OSError, EOFError, paramiko.SSHException):
                return
            if not data:
                return
            with self._lock:
                self._buf += data
                del self._buf[: max(0, len(self._buf) - self._limit)]

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def data(self) -> bytes:
        with self._lock:
            return bytes(self._buf)


class SSHProcess(RemoteProcess):
    """A command started over the shared connection, in its own remote process group."""

    def __init__(self, transport: SSHTransport, chan: paramiko.Channel, argv: list[str], stderr_limit: int):
        self._transport = transport
        self._chan = chan
        self._what = argv[0]
        self.stdin = cast(IO[bytes], chan.makefile_stdin("wb", 0))
        self.stdout = cast(IO[bytes], chan.makefile("rb"))
        self._stderr = _StderrPump(chan, stderr_limit)
        self.pgid = self._read_pgid(transport.command_timeout)

    def _close_channel(self) -> None:
        try:
            self._chan.close()
        except (OSError, EOFError, paramiko.SSHException):  # the connection died first: the read ends anyway
            pass

    def _read_pgid(self, timeout: float) -> int:
        """The first line our wrapper prints; anything a login script printed before it is dropped, up to
        MAX_PREAMBLE_BYTES, and all of it within ``timeout`` (a shell trickling a byte a second never makes
        a read time out): past either the channel is closed and the command fails."""
        dog = Watchdog(timeout, self._close_channel)  # closing the channel ends a blocked read
        seen = 0
        try:
            while seen < MAX_PREAMBLE_BYTES:
                line = self.stdout.readline(min(4096, MAX_PREAMBLE_BYTES - seen))
                if not line or dog.expired:
                    break
                seen += len(line)
                if line.startswith(_PGID_MARK) and line[len(_PGID_MARK):].strip().isdigit():
                    return int(line[len(_PGID_MARK):])
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the channel closed under the read: the watchdog's, or the connection's
        finally:
            dog.stop()
        self._chan.close()
        if dog.expired:
            raise TransportError("timeout", f"{self._what} did not start within {timeout:g} s")
        if seen >= MAX_PREAMBLE_BYTES:
            raise TransportError("invalid_output", f"the device's shell printed more than {MAX_PREAMBLE_BYTES} bytes "
                                                   f"before starting {self._what} (a login script?)")
        raise self._transport.failure(f"the device's shell did not start {self._what}: "
                                      f"{self.stderr_tail(300).strip() or 'no output'}")

    def wait(self, timeout: float | None = None) -> int | None:
        """Exit code, None while running; TransportError("connection_lost") if the connection closed first."""
        if not self._chan.status_event.wait(timeout):
            return None
        code = self._chan.recv_exit_status()  # at once: the status (or the close) has arrived
        # Our wrapper's shell always exits with a status; a close without one is a lost connection.
        if code == -1:
            raise TransportError("connection_lost", f"connection closed before {self._what} finished")
        return code

    def kill(self) -> None:
        if not self._chan.status_event.is_set():
            try:
                self._transport.run(["sh", "-c", _KILL_GROUP, "sh", str(self.pgid)], self._transport.command_timeout)
            except TransportError:
                pass  # the connection is gone: there is nothing left to reach
            self._chan.status_event.wait(5)
        self._chan.close()

    def stderr_tail(self, limit: int = 2000) -> str:
        return self.stderr_bytes().decode("utf-8", "replace")[-limit:]

    def stderr_bytes(self) -> bytes:
        """The stderr kept so far; complete once the process has ended."""
        if self._chan.status_event.is_set():
            self._stderr.join(1.0)  # the last bytes may still be on their way to the reader thread
        return self._stderr.data()


class SSHTransport(Transport):
    def __init__(
        self,
        device: Device,
        *,
        trust_new_hosts: bool = False,
        connect_timeout: float = 10.0,
        command_timeout: float = 60.0,
        ssh_config_path: Path | None = None,
        known_hosts_path: Path | None = None,
    ):
        super().__init__(device)
        self.trust_new_hosts = trust_new_hosts
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        # Read in order; new keys go to the last one (the device's own file when it has one).
        self.known_hosts_files = [known_hosts_path or Path(os.path.expanduser("~/.ssh/known_hosts"))]
        if device.known_hosts:
            self.known_hosts_files.append(Path(os.path.expanduser(device.known_hosts)))
        explicit = device.ssh_config or ssh_config_path
        self.ssh_config_path = Path(os.path.expanduser(explicit)) if explicit else None
        self._opened: list[paramiko.SSHClient] = []  # jump hosts first, the device last
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._home: str | None = None

    # -- connecting -------------------------------------------------------------------------------

    def connect(self) -> None:
        if self._client is not None:
            return
        try:
            config = self._config()
            target = self._endpoint(config, self.device.host or self.device.name, self.device.name,
                                    self.device.user, self.device.port, self.device.key_file)
            self._client = self._dial(config, KnownHosts.read(self.known_hosts_files), target, 0)
        except BaseException:
            self.close()
            raise

    def _config(self) -> paramiko.SSHConfig:
        path = self.ssh_config_path
        if path is None:
            default = Path(os.path.expanduser("~/.ssh/config"))
            if not default.is_file():
                return paramiko.SSHConfig()
            path = default
        try:
            return paramiko.SSHConfig.from_path(str(path))
        except (OSError, paramiko.SSHException) as exc:
            raise TransportError("unreachable", f"cannot read ssh config {path}: {exc}") from None

    def _endpoint(self, config: paramiko.SSHConfig, alias: str, label: str, user: str | None, port: int | None,
                  key_file: str | None) -> Endpoint:
        try:
            opts = config.lookup(alias)
            port = port or int(opts.get("port", 22))
        except (paramiko.SSHException, ValueError, ImportError) as exc:
            raise TransportError("unreachable", f"ssh config entry for {alias!r}: {exc}") from None
        if key_file:
            keys = [private_key(os.path.expanduser(key_file))]
        else:  # like OpenSSH, IdentityFile entries that do not exist are skipped
            keys = [private_key(k) for k in (os.path.expanduser(p) for p in opts.get("identityfile", []))
                    if os.path.isfile(k)]
        jump = opts.get("proxyjump", "none")
        return Endpoint(label, opts.get("hostname", alias), port, user or opts.get("user") or getpass.getuser(), keys,
                        [] if jump.lower() == "none" else [j for j in jump.split(",") if j.strip()])

    def _dial(self, config: paramiko.SSHConfig, known: KnownHosts, target: Endpoint,
              depth: int) -> paramiko.SSHClient:
        """Connect through target's ProxyJump hosts: the first as its own config says, later ones via the one before."""
        if depth > MAX_JUMPS:
            raise TransportError("unreachable", f"more than {MAX_JUMPS} ProxyJump hops to {target.label} (a loop?)")
        via: paramiko.SSHClient | None = None
        for spec in target.jumps:
            user, host, port = split_jump(spec)
            hop = self._endpoint(config, host, f"jump host {host}", user, port, None)
            # A jump host's identity comes from its own config entry; the device's key is a fallback worth trying.
            hop.key_files += [k for k in target.key_files if k not in hop.key_files]
            if via is None:
                via = self._dial(config, known, hop, depth + 1)
            else:
                via = self._open(hop, via, known)
        return self._open(target, via, known)

    def _open(self, ep: Endpoint, via: paramiko.SSHClient | None, known: KnownHosts) -> paramiko.SSHClient:
        sock = self._socket(ep, via)
        client = paramiko.SSHClient()  # with no host keys of its own: _HostKeyPolicy decides
        self._opened.append(client)
        client.set_missing_host_key_policy(HostKeyPolicy(self, known, ep.label))
        timeout = self.connect_timeout
        started = time.monotonic()
        defaults, loose = default_keys()  # paramiko's own search would take keys others can read
        keys = ep.key_files + [k for k in defaults if k not in ep.key_files]
        try:
            client.connect(ep.hostname, ep.port, ep.user, key_filename=keys or None, sock=sock,
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                           allow_agent=True, look_for_keys=False,
                           transport_factory=transport_preferring(known.keys_for(ep.known_hosts_name)))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport = client.get_transport()
            reason = str(exc) or type(exc).__name__
            if transport is None or transport.host_key is None:  # no SSH server got as far as showing its key
                if time.monotonic() - started >= timeout:  # paramiko's words for it vary ("No existing session")
                    reason = f"no SSH handshake within {timeout:g} s"
                raise TransportError("unreachable", f"{ep.label}: no SSH session with {ep.hostname}:{ep.port}: "
                                                    f"{reason}") from None
            if time.monotonic() - started >= timeout:  # the server went silent mid-authentication: not a refusal
                raise TransportError("timeout", f"{ep.label}: {ep.hostname}:{ep.port} stopped answering during "
                                                f"authentication (no reply within {timeout:g} s)") from None
            tried = [key_label(k) for k in keys] + (["ssh-agent"] if os.environ.get("SSH_AUTH_SOCK") else [])
            raise TransportError("auth_failed", f"{ep.label}: authentication as {ep.address} failed "
                                                f"({scrub_key_paths(reason, keys)}); tried {', '.join(tried) or 'no key'}"
                                                + "".join(f"; skipped ~/.ssh/{k}: readable by others" for k in loose)
                                 ) from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(KEEPALIVE_S)
        return client

    def _socket(self, ep: Endpoint, via: paramiko.SSHClient | None) -> socket.socket | paramiko.Channel:
        if via is not None:
            jump = via.get_transport()
            assert jump is not None
            try:
                return jump.open_channel("direct-tcpip", (ep.hostname, ep.port), ("127.0.0.1", 0),
                                         timeout=self.connect_timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise TransportError("unreachable", f"{ep.label}: the jump host cannot reach "
                                                    f"{ep.hostname}:{ep.port}: {exc}") from None
        try:
            return socket.create_connection((ep.hostname, ep.port), timeout=self.connect_timeout)
        except socket.gaierror as exc:
            raise TransportError("unreachable", f"{ep.label}: cannot resolve {ep.hostname}: {exc.strerror}") from None
        except TimeoutError:
            raise TransportError("unreachable", f"{ep.label}: no answer from {ep.hostname}:{ep.port} "
                                                f"within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise TransportError("unreachable", f"{ep.label}: cannot connect to {ep.hostname}:{ep.port}: "
                                                f"{exc.strerror or exc}") from None

    def failure(self, message: str) -> TransportError:
        """A failed operation: connection_lost when the connection died, else unreachable."""
        transport = self._client.get_transport() if self._client else None
        # A channel can fail a moment before paramiko marks its dead connection inactive (always so via a jump host).
        deadline = time.monotonic() + 1.0
        while transport is not None and transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)
        alive = transport is not None and transport.is_active()
        return TransportError("unreachable" if alive else "connection_lost", message)

    # -- commands and files -----------------------------------------------------------------------

    def _start(self, argv: list[str], stderr_limit: int) -> SSHProcess:
        self.connect()
        assert self._client is not None
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise self.failure(f"cannot start {argv[0]}: the connection is closed")
        with self._step(f"starting {argv[0]}", self.connect_timeout):
            chan = transport.open_session(timeout=self.connect_timeout)
            chan.exec_command(remote_command(argv))
        return SSHProcess(self, chan, argv, stderr_limit)

    @contextmanager
    def _step(self, what: str, seconds: float) -> Iterator[Watchdog]:
        """A blocking step on the connection that must finish, or (``kick``) make progress, within ``seconds``."""
        dog = Watchdog(seconds, self._abort)
        try:
            yield dog
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if dog.expired or isinstance(exc, socket.timeout) or str(exc).startswith("Timeout"):
                self._abort()  # the connection's state is unknown after a timed-out request
                raise TransportError("timeout", f"{what}: no answer from the device within {seconds:g} s "
                                                "(it accepted the connection, then stopped answering)") from None
            raise self.failure(f"{what} failed: {exc}") from None
        finally:
            dog.stop()
        if dog.expired:
            raise TransportError("timeout", f"{what}: no answer from the device within {seconds:g} s")

    def _abort(self) -> None:
        """Close the connection without a goodbye: every thread waiting on it wakes with an error."""
        for client in self._opened:
            transport = client.get_transport()
            if transport is not None:
                transport.close()

    def start(self, argv: list[str]) -> SSHProcess:
        return self._start(argv, STDERR_TAIL_BYTES)

    def run(self, argv: list[str], timeout: float, stdin: bytes = b"", *, interruptible: bool = False) -> CommandResult:
        proc = self._start(argv, STDERR_KEEP_BYTES)
        out = Capture(proc.stdout, MAX_OUTPUT_BYTES)
        threading.Thread(target=feed, args=(proc.stdin, stdin), daemon=True).start()
        deadline = time.monotonic() + timeout
        code = None
        while code is None and not out.overflow.is_set() and time.monotonic() < deadline \
                and not (interruptible and interrupting()):
            code = proc.wait(min(POLL_S, max(0.0, deadline - time.monotonic())))
        # output still in flight after the exit status
        ended = code is not None and out.join(max(1.0, deadline - time.monotonic()))
        proc.kill()  # closes the channel; the process group too if it still runs
        stop_if_interrupted(interruptible and not ended)
        if out.overflow.is_set():
            raise too_much_output(argv[0])
        if not ended or code is None:
            raise TransportError("timeout", f"{argv[0]} did not finish in {timeout:g} s; its process group was killed")
        return CommandResult(code, out.data(), proc.stderr_bytes())

    def put(self, local: Path, remote: str) -> None:
        self.connect()
        assert self._client is not None
        client = self._client
        if self._sftp is None:
            with self._step("opening SFTP", self.connect_timeout):
                self._sftp = client.open_sftp()
        sftp = self._sftp
        # A deadline on progress, not on the whole upload: large models take as long as the link needs.
        with self._step(f"upload of {local.name} to {remote}", self.command_timeout) as dog:
            sftp.put(str(local), remote, callback=dog.kick)

    def home(self) -> str:
        if self._home is None:
            workdir = self.device.workdir or DEFAULT_WORKDIR
            if workdir == "~" or workdir.startswith("~/"):
                workdir = workdir[2:] or "."  # relative paths are taken from $HOME
            done = self.run(["sh", "-c", _MAKE_HOME, "sh", workdir], self.command_timeout)
            path = done.stdout.decode(errors="replace").strip()
            if done.code != 0 or not path.startswith("/"):
                raise self.failure(f"cannot create the work directory {workdir!r}: "
                                   f"{done.stderr.decode(errors='replace').strip()[-300:]}")
            self._home = path
        return self._home

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        for client in reversed(self._opened):
            client.close()
        self._opened, self._client, self._sftp = [], None, None
