"""Android devices over adb: every operation is one run of the `adb` client binary.

``device.serial`` is a USB serial (``adb devices``) or ``host:port`` for a
phone on the network (then ``adb connect`` first); with no serial,
``ansible_host``/``port`` make ``host:5555``. The adb server the client starts
is the user's own (``ANDROID_ADB_SERVER_PORT`` picks its port) and is left
running, as are network connections: another run may be using the same phone.

Every argv is quoted with shlex.quote for the device's ``sh``; nothing from the
inventory or model names reaches the remote shell unquoted. ``adb shell``
itself is unreliable in two ways that this module hides:

* Devices without the ``shell_v2`` feature (Android < 7) and the adb client of
  Debian/Ubuntu (1.0.41) in that case return exit status 0 whatever happened,
  and merge stderr into stdout. So each command redirects its stderr to a
  scratch file on the device and ends its output with ``\\n<marker><status>\\n``
  followed by that file: stdout, the real status and stderr come back apart.
* A lost connection ends ``adb shell`` with status 0 and no output: a missing
  marker is how a lost connection (or a vanished device) is recognised.
* When the host hangs up (timeout, kill), adbd sends SIGHUP to the shell it
  started and to nothing else, so a benchmark would run on and heat the phone.
  Each command therefore runs as a background job of that shell, which writes
  both pids to a file that a timeout or ``kill()`` uses to end them.

Old devices also refuse a service string over 4 KiB, so a longer script is
pushed as a file and run with ``sh FILE``; stdin for ``run()`` is pushed as a
file too (a legacy device cannot be told that stdin ended).
"""

from __future__ import annotations

import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...common.errors import EdgebenchError, ExitCode
from .base import CommandResult, RemoteProcess, Transport, TransportError
from .local import run_capped

if TYPE_CHECKING:
    from ...config.inventory import Device

DEFAULT_HOME = "/data/local/tmp/edgebench"
DEFAULT_NETWORK_PORT = 5555
CONNECT_TIMEOUT_S = 10.0
QUICK_TIMEOUT_S = 20.0  # get-state, connect, the small housekeeping commands
PUSH_BYTES_PER_S = 1_000_000  # slow Wi-Fi; a push may take 60 s plus this long per byte
MAX_SERVICE_CHARS = 3800  # MAX_PAYLOAD_V1 (4096) minus "shell:" and headroom
STDERR_TAIL = 4000

# `adb` client messages that mean the device is not there (rather than that the connection dropped).
_GONE = ("not found", "offline", "no devices", "no emulators", "device still connecting", "no permissions")


def _q(argv: list[str]) -> str:
    if not argv:
        raise ValueError("empty argv")
    return " ".join(shlex.quote(a) for a in argv)


def _classify(message: str) -> str:
    """TransportError status for an `adb` failure message."""
    text = message.lower()
    if "unauthorized" in text:
        return "auth_failed"
    if any(word in text for word in _GONE):
        return "unreachable"
    return "connection_lost"


class AdbTransport(Transport):
    connect_timeout_s = CONNECT_TIMEOUT_S

    def __init__(self, device: Device):
        super().__init__(device)
        if device.serial:
            self.serial = device.serial
        elif device.host:
            self.serial = f"{device.host}:{device.port or DEFAULT_NETWORK_PORT}"
        else:
            raise EdgebenchError(f"adb device {device.name!r} needs a serial (USB serial or host:port) or "
                                 f"ansible_host", where=device.source)
        self.network = re.fullmatch(r"[^:\s]+:\d+|\[[0-9a-fA-F:]+\]:\d+", self.serial) is not None

    # -- the adb client ---------------------------------------------------------------------------------

    def _adb_binary(self) -> str:
        path = shutil.which("adb")
        if path is None:
            raise EdgebenchError("the adb client is not installed: apt-get install adb (Debian/Ubuntu) or put "
                                 "Android platform-tools on PATH", where=self.device.name,
                                 exit_code=ExitCode.BAD_INPUT)
        return path

    def _adb(self, args: list[str], timeout: float, *, device: bool = True, interruptible: bool = False,
             ) -> CommandResult:
        """One run of the adb client; its output capped like every transport's (MAX_OUTPUT_BYTES)."""
        argv = [self._adb_binary()] + (["-s", self.serial] if device else []) + args
        return run_capped(argv, timeout, what=f"adb {args[0]} on {self.serial}", interruptible=interruptible)

    @staticmethod
    def _text(done: CommandResult) -> str:
        return (done.stdout + done.stderr).decode("utf-8", "replace").strip()

    # -- Transport --------------------------------------------------------------------------------------

    def connect(self) -> None:
        if self.network:
            done = self._adb(["connect", self.serial], QUICK_TIMEOUT_S, device=False)
            text = self._text(done)
            if "connected to" not in text:  # `adb connect` exits 0 even when it failed
                raise TransportError("unreachable", f"adb connect {self.serial}: {text or 'no answer'}")
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            done = self._adb(["get-state"], QUICK_TIMEOUT_S)
            state = self._text(done)
            if done.code == 0 and state == "device":
                return
            status = _classify(state)
            # A phone just plugged in or reconnecting is "offline" for a moment; the others will not change.
            if status == "auth_failed" or "not found" in state or "no permissions" in state \
                    or time.monotonic() > deadline:
                if status == "auth_failed":
                    state += " (accept the USB debugging prompt on the phone)"
                raise TransportError("unreachable" if status == "connection_lost" else status,
                                     f"{self.serial}: {state or 'no state'}")
            time.sleep(0.2)

    def home(self) -> str:
        return (self.device.workdir or DEFAULT_HOME).rstrip("/") or "/"

    def _scratch(self) -> str:
        return f"{self.home()}/tmp"

    def _shell_arg(self, script: str) -> str:
        """The command string for `adb shell`; a script too long for old devices travels as a file."""
        if len(script) <= MAX_SERVICE_CHARS:
            return script
        path = f"{self._scratch()}/{secrets.token_hex(8)}.sh"
        self._push_bytes(('rm -f "$0"\n' + script).encode(), path)
        return f"sh {shlex.quote(path)}"

    def _push_bytes(self, data: bytes, remote: str) -> None:
        with tempfile.NamedTemporaryFile(prefix="edgebench-adb-") as f:
            f.write(data)
            f.flush()
            self.put(Path(f.name), remote)

    def _job_files(self) -> dict[str, str]:
        base = f"{self._scratch()}/{secrets.token_hex(8)}"
        return {k: f"{base}.{k}" for k in ("err", "pid", "rc", "in")}

    def _job(self, argv: list[str], stdin: str, files: dict[str, str]) -> str:
        """Shell text starting argv as a background job with its stderr in a file, leaving its status in $r.

        The shell records its own pid and the job's, so a timeout or kill() can end both: adbd only
        sends SIGHUP to the shell when the host hangs up, and the job would run on and load the phone.
        """
        err, pid = shlex.quote(files["err"]), shlex.quote(files["pid"])
        # umask 077: the work directory is private (see shipping.py), whichever command creates it first
        return (f"(umask 077; mkdir -p {shlex.quote(self._scratch())}) 2>/dev/null; {_q(argv)} {stdin} 2>{err} & "
                f'echo "$$ $!" >{pid}; wait $!; r=$?')

    def _end_job(self, files: dict[str, str]) -> str:
        """Kill a job's shell and the job, remove its files; the tail of its stderr ("" if unknown)."""
        q = {k: shlex.quote(v) for k, v in files.items()}
        script = (f"kill -9 $(cat {q['pid']} 2>/dev/null) 2>/dev/null; tail -c {STDERR_TAIL} {q['err']} 2>/dev/null; "
                  f"rm -f {' '.join(q.values())}")
        try:
            return self.run(["sh", "-c", script], QUICK_TIMEOUT_S).stdout.decode("utf-8", "replace")
        except TransportError:
            return ""

    def run(self, argv: list[str], timeout: float, stdin: bytes = b"", *, interruptible: bool = False) -> CommandResult:
        files = self._job_files()
        marker = f"__EB_{secrets.token_hex(8)}_RC="
        redirect = "</dev/null"
        if stdin:
            self._push_bytes(stdin, files["in"])
            redirect = f"<{shlex.quote(files['in'])}"
        err = shlex.quote(files["err"])
        script = (f'{self._job(argv, redirect, files)}; echo; echo "{marker}$r"; cat {err} 2>/dev/null; '
                  f"rm -f {' '.join(shlex.quote(v) for v in files.values())}")
        try:
            done = self._adb(["shell", self._shell_arg(script)], timeout, interruptible=interruptible)
        except KeyboardInterrupt:  # the local adb client is gone; the job on the device is ended here
            self._end_job(files)
            raise
        except TransportError as exc:
            if exc.status not in ("timeout", "invalid_output"):
                raise
            self._end_job(files)
            if exc.status == "invalid_output":
                raise
            raise TransportError("timeout", f"{argv[0]} did not finish in {timeout:.0f} s") from None
        found = re.search(b"\n" + re.escape(marker.encode()) + rb"(\d+)\n", done.stdout)
        if found is None:
            message = done.stderr.decode("utf-8", "replace").strip()
            status = _classify(message) if message else "connection_lost"
            raise TransportError(status, f"{self.serial}: {message or 'connection lost during ' + argv[0]}")
        return CommandResult(int(found.group(1)), done.stdout[:found.start()], done.stdout[found.end():])

    def put(self, local: Path, remote: str) -> None:
        size = local.stat().st_size
        done = self._adb(["push", str(local), remote], 60 + size / PUSH_BYTES_PER_S)
        if done.code != 0:
            text = self._text(done)
            # "remote ..." is the device refusing the file (permissions, full disk): it is there but unusable.
            status = "unreachable" if "remote" in text else _classify(text)
            raise TransportError(status, f"adb push {local.name} to {remote} on {self.serial}: {text[-500:]}")

    def start(self, argv: list[str]) -> RemoteProcess:
        files = self._job_files()
        # In a non-interactive sh a background job's stdin is /dev/null unless redirected explicitly,
        # hence the copy of stdin on fd 3. The job's status goes to a file too: a legacy device's
        # adb would not report it.
        script = (f"exec 3<&0; {self._job(argv, '<&3 3<&-', files)}; echo $r >{shlex.quote(files['rc'])}; exit $r")
        local_err = tempfile.NamedTemporaryFile(prefix="edgebench-adb-", suffix=".stderr")
        try:
            popen = subprocess.Popen([self._adb_binary(), "-s", self.serial, "shell", self._shell_arg(script)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=local_err,
                                     start_new_session=True)
        except OSError as exc:
            local_err.close()
            raise TransportError("unreachable", f"cannot start adb: {exc}") from None
        return AdbProcess(self, popen, local_err, files)

    # -- Android facts ----------------------------------------------------------------------------------

    def device_facts(self) -> dict[str, Any]:
        """Model, SoC, SDK level, ABI and thermal state, from getprop and `dumpsys thermalservice`.

        ``thermal_status`` is Android's PowerManager level (0 none, 1 light, 2 moderate, 3 severe,
        4 critical, 5 emergency, 6 shutdown; None before Android 10).
        """
        result = self.run(["sh", "-c", "getprop; echo __EB_THERMAL__; dumpsys thermalservice 2>/dev/null"],
                          QUICK_TIMEOUT_S * 3)
        text = result.stdout.decode("utf-8", "replace")
        props_text, _, thermal_text = text.partition("__EB_THERMAL__")
        props = dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", props_text, re.M))
        sdk = props.get("ro.build.version.sdk", "")
        return {
            "serial": self.serial,
            "model": props.get("ro.product.model") or None,
            "manufacturer": props.get("ro.product.manufacturer") or None,
            "soc": props.get("ro.soc.model") or props.get("ro.hardware.chipname") or None,
            "board": props.get("ro.board.platform") or props.get("ro.hardware") or None,
            "sdk": int(sdk) if sdk.isdigit() else None,
            "release": props.get("ro.build.version.release") or None,
            "abi": props.get("ro.product.cpu.abi") or None,
            **parse_thermalservice(thermal_text),
        }


def parse_thermalservice(text: str) -> dict[str, Any]:
    """``dumpsys thermalservice`` (Android 10+): the throttling status and the HAL's current temperatures."""
    status = re.search(r"^\s*Thermal Status:\s*(\d+)", text, re.M)
    # "Current temperatures from HAL:" is live; "Cached temperatures:" is the fallback on older HALs.
    section = re.search(r"Current temperatures from HAL:\n((?:[ \t]+.*\n?)*)", text) or \
        re.search(r"Cached temperatures:\n((?:[ \t]+.*\n?)*)", text)
    temps = {name: float(value) for value, name in
             re.findall(r"Temperature\{mValue=([-\d.]+), mType=-?\d+, mName=([^,}]+)", section.group(1))} \
        if section else {}
    return {"thermal_status": int(status.group(1)) if status else None, "temperatures_c": temps or None}


class AdbProcess(RemoteProcess):
    """A process started by ``adb shell``; its stderr, pid and exit status live in files on the device."""

    def __init__(self, transport: AdbTransport, popen: subprocess.Popen[bytes],
                 local_err: tempfile._TemporaryFileWrapper[bytes], files: dict[str, str]):
        assert popen.stdin is not None and popen.stdout is not None
        self.stdin = popen.stdin
        self.stdout = popen.stdout
        self._transport = transport
        self._popen = popen
        self._local_err = local_err
        self._files = files
        self._code: int | None = None
        self._final_tail: str | None = None  # read while killing, before the files are removed

    def wait(self, timeout: float | None = None) -> int | None:
        if self._code is not None:
            return self._code
        try:
            adb_code = self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        try:
            done = self._transport.run(["cat", self._files["rc"]], QUICK_TIMEOUT_S)
            text = done.stdout.decode(errors="replace").strip()
            self._code = int(text) if done.code == 0 and text.isdigit() else adb_code
        except TransportError:
            self._code = adb_code
        return self._code

    def kill(self) -> None:
        if self._final_tail is None:
            self._final_tail = self._transport._end_job(self._files)
        if self._popen.poll() is None:
            self._popen.kill()
        self._popen.wait()

    def _local_tail(self) -> str:
        self._local_err.flush()
        return Path(self._local_err.name).read_bytes()[-STDERR_TAIL:].decode("utf-8", "replace")

    def stderr_tail(self, limit: int = 2000) -> str:
        remote = self._final_tail
        if remote is None:
            try:
                remote = self._transport.run(["tail", "-c", str(limit), self._files["err"]],
                                             QUICK_TIMEOUT_S).stdout.decode("utf-8", "replace")
            except TransportError:
                remote = ""
        return (remote + self._local_tail())[-limit:]
