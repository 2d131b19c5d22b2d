"""A test Android device on loopback that speaks the real adb wire protocol.

Phones cannot exist on CI, so this stands in for adbd: Debian's real `adb`
client and server connect to it with ``adb connect 127.0.0.1:PORT`` exactly as
they would to a phone over Wi-Fi.

Wire format (adb's protocol.txt): every message is a 24-byte little-endian
header ``command, arg0, arg1, data_length, data_crc32 (a byte sum), magic``
(magic = command XOR 0xffffffff) followed by ``data_length`` bytes of payload.

    host   CNXN(version, maxdata, "host::")       device  CNXN(version, maxdata, banner)
    host   OPEN(host_id, 0, "shell:CMD\\0")        device  OKAY(dev_id, host_id)
    device WRTE(dev_id, host_id, bytes)           host    OKAY(host_id, dev_id)   # one write in flight
    host   WRTE(host_id, dev_id, bytes)           device  OKAY(dev_id, host_id)
    device CLSE(dev_id, host_id)                   (or the host closes first: CLSE from the host)

Services:

* ``shell:CMD`` (legacy, raw): stdout and stderr share the stream, no exit
  status, no way for the host to close stdin alone -- what a device without
  the ``shell_v2`` feature gives (Android before 7.0).
* ``shell,v2[,TERM=..][,raw|pty]:CMD`` (when the banner advertises ``shell_v2``):
  payload is packets of ``id:u8 length:u32`` + data; ids 0 stdin, 1 stdout,
  2 stderr, 3 exit (1 byte), 4 close-stdin, 5 window size.
* ``sync:`` (push/pull): requests ``id[4] length:u32`` + data; STAT answers
  ``STAT mode size mtime``; SEND ``path,mode`` then DATA chunks then
  DONE(mtime) answered OKAY/FAIL; RECV answers DATA chunks then DONE, or FAIL;
  LIST answers DENT entries then DONE; QUIT closes.

The sandbox: a directory stands for the phone's root. Shell commands run for
real with ``/bin/sh -c CMD``, cwd = the sandbox and ``$SANDBOX/system/bin``
first on PATH, where ``getprop`` (reading ``system/build.prop``) and ``dumpsys
thermalservice`` live. Paths are NOT remapped: a shell command that names an
absolute path touches this machine's filesystem, so tests give the device a
workdir inside the sandbox. The sync service does refuse paths outside the
sandbox, with the FAIL a phone gives for a directory the shell user cannot
write. Every connection gets threads; several devices run at once on their own
ports; ``stop()`` closes the listener, every connection and every process.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

# No AUTH: like a phone that already trusts this host's key, the device answers CNXN with CNXN.
A_CNXN, A_OPEN, A_OKAY, A_WRTE, A_CLSE = (
    int.from_bytes(name, "little") for name in (b"CNXN", b"OPEN", b"OKAY", b"WRTE", b"CLSE"))
A_VERSION = 0x01000001  # the version that lets both sides skip checksums; we compute them anyway
MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024
ACK_TIMEOUT_S = 30.0
HEADER = struct.Struct("<6I")

# shell protocol v2 packet ids
SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN = range(5)

GETPROP = """#!/bin/sh
# getprop for the edgebench test device: properties are key=value lines in build.prop.
props="$(dirname "$0")/../build.prop"
if [ $# -eq 0 ]; then
  awk -F= 'NF >= 2 { k = $1; sub(/^[^=]*=/, ""); printf "[%s]: [%s]\\n", k, $0 }' "$props"
else
  awk -F= -v key="$1" -v dflt="$2" '
    $1 == key { sub(/^[^=]*=/, ""); print; found = 1; exit }
    END { if (!found) print dflt }' "$props"
fi
"""

DUMPSYS = """#!/bin/sh
# dumpsys for the edgebench test device: only `dumpsys thermalservice`, in Android 10+'s format.
if [ "$1" != thermalservice ]; then echo "Can't find service: $1"; exit 0; fi
cat <<'EOF'
IsStatusOverride: false
ThermalEventListeners:
\tcallbacks: 1
\tkilled: false
\tbroadcasts count: -1
Thermal Status: @STATUS@
Cached temperatures:
\tTemperature{mValue=30.0, mType=0, mName=cached-cpu, mStatus=0}
HAL Ready: true
HAL connection:
\tThermalHAL 2.0 connected: yes
Current temperatures from HAL:
@TEMPS@Current cooling devices from HAL:
EOF
"""

DEFAULT_PROPS = {
    "ro.product.name": "edgebench_test",
    "ro.product.model": "EdgebenchTest",
    "ro.product.device": "test",
    "ro.product.manufacturer": "Edgebench",
    "ro.build.version.sdk": "34",
    "ro.build.version.release": "14",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.board.platform": "testboard",
    "ro.soc.model": "TestSoC 9000",
}


def _checksum(data: bytes) -> int:
    return sum(data) & 0xFFFFFFFF


def _message(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    return HEADER.pack(command, arg0, arg1, len(data), _checksum(data), command ^ 0xFFFFFFFF) + data


class _Connection:
    """One host connection: a reader thread dispatching messages to streams."""

    def __init__(self, device: AdbTestDevice, sock: socket.socket):
        self.device = device
        self.sock = sock
        self.send_lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.max_payload = 4096  # until the host's CNXN says otherwise
        self.closed = threading.Event()
        threading.Thread(target=self._read_loop, name="adb-test-conn", daemon=True).start()

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        with self.send_lock:
            try:
                self.sock.sendall(_message(command, arg0, arg1, data))
            except OSError:
                self.close()

    def _recv_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _read_loop(self) -> None:
        try:
            while True:
                header = self._recv_exact(HEADER.size)
                if header is None:
                    return
                command, arg0, arg1, length, _crc, magic = HEADER.unpack(header)
                if magic != command ^ 0xFFFFFFFF or length > 16 * 1024 * 1024:
                    return  # garbage: drop the connection like adbd does
                data = self._recv_exact(length) if length else b""
                if data is None:
                    return
                self._dispatch(command, arg0, arg1, data)
        finally:
            self.close()

    def _dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            self.max_payload = min(arg1, MAX_PAYLOAD) or 4096
            self.send(A_CNXN, min(arg0, A_VERSION), MAX_PAYLOAD, self.device.banner().encode())
        elif command == A_OPEN:
            service = data.rstrip(b"\0").decode("utf-8", "replace")
            local_id = self.next_id
            self.next_id += 1
            stream = self.device.open_service(self, local_id, arg0, service)
            if stream is None:
                self.send(A_CLSE, 0, arg0)  # refused, as adbd refuses an unknown service
                return
            self.streams[local_id] = stream
            self.send(A_OKAY, local_id, arg0)
            stream.start()
        elif command == A_OKAY:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.acked.set()
        elif command == A_WRTE:
            stream = self.streams.get(arg1)
            if stream is None:
                self.send(A_CLSE, 0, arg0)
            else:
                stream.on_data(data)
        elif command == A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream is not None:
                stream.host_closed()

    def forget(self, local_id: int) -> None:
        self.streams.pop(local_id, None)

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for stream in list(self.streams.values()):
            stream.host_closed()
        self.streams.clear()


class _Stream:
    """One open service: device->host writes go one at a time, each waiting for the host's OKAY."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int):
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.acked = threading.Event()
        self.acked.set()
        self.dead = threading.Event()
        self.write_lock = threading.Lock()

    def start(self) -> None:
        pass

    def write(self, data: bytes) -> bool:
        """Send data to the host; False once the stream or connection is gone."""
        with self.write_lock:
            for i in range(0, len(data), self.conn.max_payload):
                if not self._wait_ack():
                    return False
                self.acked.clear()
                self.conn.send(A_WRTE, self.local_id, self.remote_id, data[i:i + self.conn.max_payload])
            return not self.dead.is_set()

    def _wait_ack(self) -> bool:
        waited = 0.0
        while not self.acked.wait(0.1):
            waited += 0.1
            if self.dead.is_set() or self.conn.closed.is_set() or waited > ACK_TIMEOUT_S:
                return False
        return not self.dead.is_set()

    def ack_host(self) -> None:
        """Tell the host its write was consumed (it then may send the next one)."""
        self.conn.send(A_OKAY, self.local_id, self.remote_id)

    def close_from_device(self) -> None:
        if not self.dead.is_set():
            self._wait_ack()  # the last write must be acknowledged before the close
            self.dead.set()
            self.conn.forget(self.local_id)
            self.conn.send(A_CLSE, self.local_id, self.remote_id)

    def on_data(self, data: bytes) -> None:
        self.ack_host()

    def host_closed(self) -> None:
        self.dead.set()


class _ShellStream(_Stream):
    """A real /bin/sh process in the sandbox, raw (no pty), legacy or shell protocol v2."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int, command: str, v2: bool):
        super().__init__(conn, local_id, remote_id)
        self.command = command
        self.v2 = v2
        self.proc: subprocess.Popen[bytes] | None = None
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.pending = b""  # partial v2 packet from the host

    def start(self) -> None:
        device = self.conn.device
        argv = ["/bin/sh", "-c", self.command] if self.command else ["/bin/sh"]
        self.proc = subprocess.Popen(
            argv, cwd=device.root, env=device.shell_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if self.v2 else subprocess.STDOUT, start_new_session=True)
        device.track(self.proc)
        readers = [threading.Thread(target=self._pump, args=(self.proc.stdout, SHELL_STDOUT), daemon=True)]
        if self.v2:
            readers.append(threading.Thread(target=self._pump, args=(self.proc.stderr, SHELL_STDERR), daemon=True))
        for t in readers:
            t.start()
        threading.Thread(target=self._stdin_loop, daemon=True).start()
        threading.Thread(target=self._finish, args=(readers,), daemon=True).start()

    def _frame(self, packet_id: int, data: bytes) -> bytes:
        return struct.pack("<BI", packet_id, len(data)) + data if self.v2 else data

    def _pump(self, pipe: IO[bytes], packet_id: int) -> None:
        while True:
            chunk = os.read(pipe.fileno(), 32 * 1024)
            if not chunk:
                return
            if not self.write(self._frame(packet_id, chunk)):
                return

    def _finish(self, readers: list[threading.Thread]) -> None:
        assert self.proc is not None
        for t in readers:
            t.join()
        code = self.proc.wait()
        if code < 0:
            code = 128 - code  # killed by a signal, as a shell reports it
        if self.v2 and not self.dead.is_set():
            self.write(self._frame(SHELL_EXIT, bytes([code & 0xFF])))
        self.inbox.put(None)
        self.close_from_device()

    def on_data(self, data: bytes) -> None:
        self.inbox.put(data)  # written by _stdin_loop, which acknowledges: the reader thread never blocks

    def _stdin_loop(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        stdin = self.proc.stdin
        while (data := self.inbox.get()) is not None:
            if not self.v2:
                self._feed(stdin, data)
            else:
                self.pending += data
                while len(self.pending) >= 5:
                    packet_id, length = struct.unpack("<BI", self.pending[:5])
                    if len(self.pending) < 5 + length:
                        break
                    payload, self.pending = self.pending[5:5 + length], self.pending[5 + length:]
                    if packet_id == SHELL_STDIN:
                        self._feed(stdin, payload)
                    elif packet_id == SHELL_CLOSE_STDIN:
                        stdin.close()
            self.ack_host()

    @staticmethod
    def _feed(stdin: IO[bytes], data: bytes) -> None:
        try:
            stdin.write(data)
            stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the process is gone or closed its stdin: the host's bytes go nowhere, as on a phone

    def host_closed(self) -> None:
        # The host hung up (client killed, `adb kill-server`): adbd sends SIGHUP to the shell it
        # started -- that process only, not its process group, so its children live on.
        super().host_closed()
        self.inbox.put(None)
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGHUP)
            except ProcessLookupError:
                pass


class _SyncStream(_Stream):
    """The file sync service behind `adb push` and `adb pull`."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int):
        super().__init__(conn, local_id, remote_id)
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.buf = b""

    def start(self) -> None:
        threading.Thread(target=self._serve, daemon=True).start()

    def on_data(self, data: bytes) -> None:
        self.inbox.put(data)
        self.ack_host()

    def host_closed(self) -> None:
        super().host_closed()
        self.inbox.put(None)

    def _read(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            data = self.inbox.get()
            if data is None:
                return None
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _request(self) -> tuple[bytes, int] | None:
        header = self._read(8)
        if header is None:
            return None
        return header[:4], struct.unpack("<I", header[4:])[0]

    def _fail(self, message: str) -> None:
        data = message.encode()
        self.write(b"FAIL" + struct.pack("<I", len(data)) + data)

    def _serve(self) -> None:
        try:
            while (req := self._request()) is not None:
                rid, length = req
                if rid == b"QUIT":
                    break
                arg = self._read(length)
                if arg is None:
                    break
                handler: Callable[[bytes], bool] | None = {
                    b"STAT": self._stat, b"SEND": self._send, b"RECV": self._recv, b"LIST": self._list,
                }.get(rid)
                if handler is None:
                    self._fail(f"unknown sync request {rid!r}")
                    break
                if not handler(arg):
                    break
        finally:
            self.close_from_device()

    def _stat(self, arg: bytes) -> bool:
        path = self.conn.device.sandboxed(arg.decode())
        try:
            st = os.lstat(path) if path else None
        except OSError:
            st = None
        mode, size, mtime = (st.st_mode, st.st_size, int(st.st_mtime)) if st else (0, 0, 0)
        return self.write(b"STAT" + struct.pack("<III", mode, size & 0xFFFFFFFF, mtime))

    def _send(self, arg: bytes) -> bool:
        spec = arg.decode()
        name, _, mode_text = spec.rpartition(",")
        path = self.conn.device.sandboxed(name)
        tmp = None
        failure = None if path else f"secure_mkdirs failed: Permission denied ({name} is outside the device sandbox)"
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.adbpart")
                out = open(tmp, "wb")
            except OSError as exc:
                failure, tmp = f"couldn't create file: {exc.strerror}", None
        while (req := self._request()) is not None:
            rid, length = req
            if rid == b"DATA":
                data = self._read(length)
                if data is None:
                    return False
                if tmp is not None:
                    out.write(data)
            elif rid == b"DONE":
                if tmp is not None and path is not None:
                    out.close()
                    os.chmod(tmp, int(mode_text) & 0o777 if mode_text.isdigit() else 0o644)  # decimal st_mode
                    os.replace(tmp, path)
                    os.utime(path, (length, length))
                    return self.write(b"OKAY" + struct.pack("<I", 0))
                self._fail(failure or "push failed")
                return True
            else:
                self._fail(f"unexpected sync request {rid!r} during SEND")
                return False
        return False

    def _recv(self, arg: bytes) -> bool:
        path = self.conn.device.sandboxed(arg.decode())
        try:
            if path is None:
                raise PermissionError(13, "Permission denied")
            with open(path, "rb") as f:
                while chunk := f.read(SYNC_DATA_MAX):
                    if not self.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk):
                        return False
        except OSError as exc:
            self._fail(exc.strerror or str(exc))
            return True
        return self.write(b"DONE" + struct.pack("<I", 0))

    def _list(self, arg: bytes) -> bool:
        path = self.conn.device.sandboxed(arg.decode())
        names = sorted(os.listdir(path)) if path is not None and path.is_dir() else []
        for name in [".", ".."] + names:
            st = os.lstat(path / name) if path is not None else None
            if st is None:
                continue
            raw = name.encode()
            entry = struct.pack("<IIII", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime), len(raw)) + raw
            if not self.write(b"DENT" + entry):
                return False
        return self.write(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))



class AdbTestDevice:
    """A phone on 127.0.0.1:port. ``with AdbTestDevice(tmp_path / "phone") as dev: dev.serial``."""

    def __init__(self, root: Path, *, shell_v2: bool = True, props: dict[str, str] | None = None,
                 thermal_status: int = 0, temperatures: dict[str, float] | None = None):
        self.root = Path(root).resolve()
        self.shell_v2 = shell_v2
        self.props = {**DEFAULT_PROPS, **(props or {})}
        self.thermal_status = thermal_status
        self.temperatures = temperatures if temperatures is not None else {"CPU0": 41.5, "battery": 30.2}
        self.port = 0
        self._listener: socket.socket | None = None
        self._connections: list[_Connection] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def banner(self) -> str:
        keys = ("ro.product.name", "ro.product.model", "ro.product.device")
        features = "shell_v2,cmd" if self.shell_v2 else ""
        return "device::" + "".join(f"{k}={self.props[k]};" for k in keys) + f"features={features}"

    def start(self) -> AdbTestDevice:
        self._build_sandbox()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), name="adb-test-accept", daemon=True).start()
        return self

    def _build_sandbox(self) -> None:
        bin_dir = self.root / "system" / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "data" / "local" / "tmp").mkdir(parents=True, exist_ok=True)
        (self.root / "system" / "build.prop").write_text("".join(f"{k}={v}\n" for k, v in self.props.items()))
        temps = "".join(f"\tTemperature{{mValue={v}, mType=0, mName={k}, mStatus=0}}\n"
                        for k, v in self.temperatures.items())
        scripts = {"getprop": GETPROP,
                   "dumpsys": DUMPSYS.replace("@STATUS@", str(self.thermal_status)).replace("@TEMPS@", temps)}
        for name, text in scripts.items():
            path = bin_dir / name
            path.write_text(text.replace("\\t", "\t"))
            path.chmod(0o755)

    def shell_env(self) -> dict[str, str]:
        return {"PATH": f"{self.root / 'system' / 'bin'}:/usr/bin:/bin", "HOME": str(self.root / "data" / "local" / "tmp"),
                "ANDROID_ROOT": str(self.root / "system"), "LANG": "C.UTF-8"}

    def sandboxed(self, name: str) -> Path | None:
        """The path a sync request names, or None when it lies outside the sandbox."""
        path = Path(os.path.normpath(self.root / name if not os.path.isabs(name) else name))
        return path if path == self.root or self.root in path.parents else None

    def open_service(self, conn: _Connection, local_id: int, remote_id: int, service: str) -> _Stream | None:
        if service == "sync:":
            return _SyncStream(conn, local_id, remote_id)
        if service.startswith("shell"):
            head, _, command = service.partition(":")
            args = head.split(",")[1:]
            v2 = "v2" in args
            if v2 and not self.shell_v2:
                return None
            return _ShellStream(conn, local_id, remote_id, command, v2)
        return None

    def track(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.append(proc)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections.append(_Connection(self, sock))

    def stop(self) -> None:
        """Close the listener, every connection and every process the device started."""
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            connections, self._connections = self._connections, []
            procs, self._procs = self._procs, []
        for conn in connections:
            conn.close()
        for proc in procs:
            # Each shell leads its own process group: killing the group also ends the jobs it left behind
            # after a SIGHUP, like a phone that is switched off.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    def __enter__(self) -> AdbTestDevice:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
