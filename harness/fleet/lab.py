"""Device pools on labgrid: a device is measured only while this controller holds its labgrid place.

Everything goes through labgrid's own client, ``labgrid-client`` (its command line is labgrid's stable
interface; its Python client is not a public API), one short call per step:

    reserve --shell name=PLACE | TAG=VALUE ...  a reservation: the coordinator's fair queue and tag matching
    wait TOKEN                                   until a free place is allocated to it (at most --lock-timeout)
    -p + acquire              (LG_TOKEN=TOKEN)   the lock itself; prints "acquired place NAME"
    -p NAME env                                  the place's NetworkService: address, username, port
    cancel-reservation TOKEN                     else the reservation keeps the place allocated for 60 s
    -p NAME release-from HOST/USER               frees the place only if this controller holds it

Identity: the coordinator tells clients apart by HOST/USER (LG_HOSTNAME, LG_USERNAME), and two CI jobs on
one runner share both; so every controller acquires as ``USER.eb-NS-PID-START`` (pid namespace, process id
and its start time). Every release names that identity, so a controller frees only its own lock (the
coordinator's ReleasePlace does not check who asks unless told ``fromuser``).

Stale locks: an acquisition outlives a controller that was killed. Before reserving, a controller releases
places held by a controller identity of its own host and pid namespace whose process is gone (and cancels
that identity's reservations). Any other stale lock is cleared by hand:
``labgrid-client -p PLACE release-from HOST/USER`` (the holder is printed in the device_busy error and by
``edgebench devices``).

labgrid-client runs in its own session so that Ctrl-C reaches edgebench only: edgebench then stops waiting
(transport.interrupted), and releases and cancels what it holds.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from ..common.errors import EdgebenchError
from ..config.inventory import Device
from ..results.record import Status
from .transport import POLL_S, TransportError, stop_if_interrupted

CLIENT_TIMEOUT_S = 60.0
LET_GO_TIMEOUT_S = 20.0  # each of cancel and release, when the place is given back
_IDENTITY = re.compile(r"\.eb-(\d+)-(\d+)-(\d+)$")


def _start_ticks(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def controller_identity() -> tuple[str, str]:
    """(HOST, USER) for labgrid: the user name made unique to this controller process (a start time or pid
    namespace that cannot be read is 0: unknown)."""
    user = os.environ.get("LG_USERNAME") or getpass.getuser()
    host = os.environ.get("LG_HOSTNAME") or socket.gethostname()
    return host, f"{user}.eb-{_pid_namespace()}-{os.getpid()}-{_start_ticks(os.getpid()) or 0}"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def is_stale(holder: str, identity: tuple[str, str]) -> bool:
    """Whether ``holder`` (HOST/USER) is a controller of this host and pid namespace known to be gone: no
    process has its pid, or the one that has it started at another time (the pid was reused). What cannot be
    known is never stale (releasing a live controller's lock would let two runs share a board): a start time
    or pid namespace that could not be read (0), or a process whose /proc entry is hidden from this one
    (hidepid, another user)."""
    host, _, user = holder.partition("/")
    found = _IDENTITY.search(user)
    namespace = _pid_namespace()
    if host != identity[0] or found is None or namespace == 0 or int(found.group(1)) != namespace:
        return False
    pid, start = int(found.group(2)), int(found.group(3))
    if pid <= 0:
        return False
    if not _pid_exists(pid):
        return True
    now = _start_ticks(pid)
    return start != 0 and now is not None and now != start


@dataclass
class Place:
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    acquired: str | None = None  # HOST/USER
    reservation: str | None = None

    def matches(self, wanted: dict[str, str]) -> bool:
        return all((self.name if k == "name" else self.tags.get(k)) == v for k, v in wanted.items())

    @property
    def state(self) -> str:
        if self.acquired:
            return f"acquired by {self.acquired}"
        return f"reserved ({self.reservation})" if self.reservation else "free"


def parse_places(text: str) -> list[Place]:
    """The places in ``labgrid-client -v places`` output."""
    places: list[Place] = []
    for line in text.splitlines():
        head = re.fullmatch(r"Place '(.+)':", line)
        if head:
            places.append(Place(head.group(1)))
        elif places and line.startswith("  ") and not line.startswith("    "):
            key, _, value = line.strip().partition(": ")
            if key == "tags":
                places[-1].tags = dict(t.split("=", 1) for t in value.split(", ") if "=" in t)
            elif key == "acquired" and value != "None":
                places[-1].acquired = value
            elif key == "reservation":
                places[-1].reservation = value
    return places


def labgrid_client() -> str:
    beside = Path(sys.executable).parent / "labgrid-client"  # a venv's tools, also when it is not activated
    found = str(beside) if beside.exists() else shutil.which("labgrid-client")
    if found is None:
        raise EdgebenchError("labgrid-client not found: install labgrid (pip install 'edgebench[lab]')",
                             where="labgrid")
    return found


@dataclass
class Client:
    """labgrid-client calls as one controller identity, against one coordinator."""

    coordinator: str | None
    identity: tuple[str, str]

    @property
    def who(self) -> str:
        return "/".join(self.identity)

    def _argv(self, args: tuple[str, ...]) -> list[str]:
        return [labgrid_client(), *(["-x", self.coordinator] if self.coordinator else []), *args]

    def _env(self, token: str | None) -> dict[str, str]:
        env = dict(os.environ, LG_HOSTNAME=self.identity[0], LG_USERNAME=self.identity[1], PYTHONUNBUFFERED="1")
        if token:
            env["LG_TOKEN"] = token
        return env

    def call(self, *args: str, token: str | None = None, check: bool = True, timeout: float = CLIENT_TIMEOUT_S) -> str:
        try:
            done = subprocess.run(self._argv(args), capture_output=True, text=True, env=self._env(token),
                                  timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise TransportError(Status.UNREACHABLE, f"labgrid-client {' '.join(args)} got no answer from the "
                                                     f"coordinator {self.coordinator or '(default)'} within "
                                                     f"{timeout:g} s") from None
        if check and done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip())[-300:]
            if "could not connect to coordinator" in said.lower():
                raise TransportError(Status.UNREACHABLE, f"labgrid coordinator {self.coordinator or '(default)'} "
                                                         f"unreachable (LG_COORDINATOR, labgrid_coordinator): {said}")
            raise TransportError(Status.ENVIRONMENT_ERROR, f"labgrid-client {' '.join(args)}: {said}")
        return done.stdout

    def places(self) -> list[Place]:
        return parse_places(self.call("-v", "places"))

    def wait(self, token: str, timeout_s: float) -> bool:
        """Whether the reservation got a place within ``timeout_s``; KeyboardInterrupt on Ctrl-C."""
        proc = subprocess.Popen(self._argv(("wait", token)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=self._env(None), start_new_session=True)
        deadline = time.monotonic() + timeout_s
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                stop_if_interrupted()
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate()
        if proc.returncode not in (0, -9):
            raise TransportError(Status.ENVIRONMENT_ERROR, f"labgrid-client wait {token}: {err.strip()[-300:]}")
        return proc.returncode == 0

    def release(self, place: str, holder: str | None = None, timeout: float = CLIENT_TIMEOUT_S) -> None:
        """Free ``place`` only if ``holder`` (default: this controller) holds it."""
        self.call("-p", place, "release-from", holder or self.who, check=False, timeout=timeout)

    def clear_stale(self, places: list[Place]) -> None:
        """Release these places when a dead controller of this host holds them, and cancel its reservations."""
        stale = {p.acquired: p.name for p in places if p.acquired and is_stale(p.acquired, self.identity)}
        for holder, place in stale.items():
            self.release(place, holder)
        owner = None
        for line in self.call("reservations").splitlines() if stale else []:
            key, _, value = line.strip().partition(": ")
            owner = value if key == "owner" else owner
            if key == "token" and owner in stale:
                self.call("cancel-reservation", value, check=False)


def pool_places(devices: list[Device]) -> list[tuple[str | None, Place]]:
    """Every place of the coordinators these devices use: (coordinator, place)."""
    coordinators = dict.fromkeys(d.labgrid_coordinator or os.environ.get("LG_COORDINATOR")
                                 for d in devices if d.on_labgrid)
    return [(c, p) for c in coordinators for p in Client(c, controller_identity()).places()]


def _filters(device: Device) -> dict[str, str]:
    return {"name": device.labgrid_place} if device.labgrid_place else dict(device.labgrid_tags)


def _spec(wanted: dict[str, str]) -> list[str]:
    """labgrid's filter syntax: name=rpi-07, board=rpi4 ..."""
    return [f"{k}={v}" for k, v in wanted.items()]


def network_service(text: str, place: str) -> dict[str, object]:
    """The NetworkService in ``labgrid-client -p PLACE env`` output (YAML ``targets: {PLACE: {resources:
    [{NetworkService: {address, username, port}}]}}``), every level checked: anything else the coordinator
    sends is an environment_error for this device's cells, naming the place."""
    def bad(problem: str) -> TransportError:
        return TransportError(Status.ENVIRONMENT_ERROR, f"labgrid place {place}: {problem}")

    try:
        env = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise bad(f"labgrid-client env printed no YAML: {str(exc)[:200]}") from None
    targets = env.get("targets") if isinstance(env, dict) else None
    target = targets.get(place) if isinstance(targets, dict) else None
    resources = target.get("resources") if isinstance(target, dict) else None
    services = [r["NetworkService"] for r in resources if isinstance(r, dict) and "NetworkService" in r] \
        if isinstance(resources, list) else []
    if not services:
        raise bad("no NetworkService resource (add-match EXPORTER/GROUP/NetworkService)")
    service = services[0]
    if not isinstance(service, dict):
        raise bad(f"its NetworkService must be a mapping, not {type(service).__name__}")
    address, user, port = service.get("address"), service.get("username"), service.get("port")
    if not isinstance(address, str) or not address.strip():
        raise bad(f"its NetworkService has no address (got {address!r:.80})")
    if user is not None and not isinstance(user, str):
        raise bad(f"its NetworkService username must be text, not {user!r:.80}")
    if port is not None and (type(port) is not int or not 0 <= port < 65536):
        raise bad(f"its NetworkService port must be a port number, not {port!r:.80}")
    return {"address": address, "username": user, "port": port}


def _busy(client: Client, wanted: dict[str, str], waited: float) -> TransportError:
    places = [p for p in client.places() if p.matches(wanted)]
    held = "; ".join(f"{p.name} {p.state}" for p in places) or "no such place"
    return TransportError(Status.DEVICE_BUSY, f"no labgrid place {' '.join(_spec(wanted))} became free in "
                                              f"{waited:g} s (--lock-timeout): {held}")


@contextmanager
def hold_place(device: Device, lock_timeout_s: float) -> Iterator[Device]:
    """The device to measure, with the place's SSH address, while this controller holds the place.

    Raises TransportError: device_busy when no place became free in time, unreachable when the
    coordinator does not answer. The place is released and the reservation cancelled however the
    block ends.
    """
    if not device.on_labgrid:
        yield device
        return
    client = Client(device.labgrid_coordinator or os.environ.get("LG_COORDINATOR"), controller_identity())
    wanted = _filters(device)
    places = [p for p in client.places() if p.matches(wanted)]
    if not places:
        raise TransportError(Status.ENVIRONMENT_ERROR, f"no labgrid place {' '.join(_spec(wanted))} on the "
                                                       f"coordinator {client.coordinator or '(default)'}")
    client.clear_stale(places)
    token = client.call("reserve", "--shell", *_spec(wanted)).split("=", 1)[-1].strip()  # "export LG_TOKEN=..."
    place: str | None = device.labgrid_place
    try:
        if not client.wait(token, lock_timeout_s):
            raise _busy(client, wanted, lock_timeout_s)
        place = client.call("-p", "+", "acquire", token=token).strip().rsplit(" ", 1)[-1]
        service = network_service(client.call("-p", place, "env"), place)
        port, user = service["port"], service["username"]
        yield replace(device, transport="ssh", host=str(service["address"]), labgrid_place=place,
                      user=str(user) if user else device.user,
                      port=port if isinstance(port, int) and port > 0 else device.port)
    except BaseException:
        _let_go(client, token, place)
        raise
    failed = _let_go(client, token, place)
    if failed is not None:
        raise failed


def _let_go(client: Client, token: str, place: str | None) -> TransportError | None:
    """Cancel the reservation, then release the place: two steps, each with its own deadline, so a cancel that
    hangs never leaves the place locked. Returns the first failure (the caller raises it unless it is already
    raising something else).

    Cancel first: the coordinator hands a released place to the next waiting reservation at once only when no
    reservation of ours is left on it (else at its next periodic scheduling, up to 15 s later)."""
    failed: TransportError | None = None
    try:
        client.call("cancel-reservation", token, check=False, timeout=LET_GO_TIMEOUT_S)
    except TransportError as exc:
        failed = exc
    if place is not None:
        try:
            client.release(place, timeout=LET_GO_TIMEOUT_S)
        except TransportError as exc:
            failed = failed or exc
    return failed
