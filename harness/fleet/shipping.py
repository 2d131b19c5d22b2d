"""Getting the agent and the models onto a device: a content-addressed cache named by sha256.

A file already in the device's cache is not sent again. New files go up under a
temporary name, are checked against their sha256 on the device, then renamed,
so an interrupted upload never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import device_agent

from ..common.files import atomic_write, sha256_file
from ..results.record import Status
from .transport import Transport, TransportError

COMMAND_TIMEOUT_S = 120.0
_LIST = 'mkdir -p "$1" && ls -1 "$1"'
# Arguments come in triples: temporary name, expected sha256, final name.
_COMMIT = """
while [ $# -ge 3 ]; do
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then rm -f "$1"; echo "checksum mismatch for $3" >&2; exit 1; fi
  mv -f "$1" "$3"; shift 3
done
"""


@lru_cache(maxsize=1)
def agent_zip() -> Path:
    """The agent as one runnable zip, byte-for-byte reproducible so its sha256 is stable."""
    src = Path(device_agent.__file__).parent
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(src.glob("*.py")):
            info = zipfile.ZipInfo(f"device_agent/{path.name}", date_time=(2020, 1, 1, 0, 0, 0))
            z.writestr(info, path.read_bytes())
        z.writestr(zipfile.ZipInfo("__main__.py", date_time=(2020, 1, 1, 0, 0, 0)),
                   "import sys\nfrom device_agent.agent import main\nsys.exit(main())\n")
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    out = Path.home() / ".cache" / "edgebench" / f"agent-{digest[:16]}.pyz"
    if not out.exists():
        atomic_write(out, data, mode=0o644)
    return out


@dataclass
class Shipped:
    remote: dict[Path, str]  # local file -> path on the device
    bytes_sent: int
    files_sent: int


def ship(transport: Transport, files: list[Path], digests: dict[Path, str] | None = None) -> Shipped:
    """Make every file present in the device cache; send only what is missing."""
    cache = transport.home().rstrip("/") + "/cache"
    listing = transport.run(["sh", "-c", _LIST, "sh", cache], COMMAND_TIMEOUT_S)
    if listing.code != 0:
        raise TransportError(Status.UNREACHABLE, f"cannot prepare cache {cache}: {listing.stderr.decode(errors='replace')[-300:]}")
    present = set(listing.stdout.decode(errors="replace").split())
    remote: dict[Path, str] = {}
    commit: list[str] = []
    sent = 0
    for path in dict.fromkeys(files):
        digest = (digests or {}).get(path) or sha256_file(path)
        name = digest + "".join(path.suffixes[-1:])
        remote[path] = f"{cache}/{name}"
        if name in present:
            continue
        present.add(name)
        tmp = f"{cache}/.tmp-{secrets.token_hex(6)}"
        transport.put(path, tmp)
        commit += [tmp, digest, remote[path]]
        sent += path.stat().st_size
    if commit:
        done = transport.run(["sh", "-c", _COMMIT, "sh", *commit], COMMAND_TIMEOUT_S)
        if done.code != 0:
            raise TransportError(Status.CONNECTION_LOST, f"upload check failed: {done.stderr.decode(errors='replace')[-300:]}")
    return Shipped(remote, sent, len(commit) // 3)


def purge(transport: Transport) -> None:
    """Remove the device's whole edgebench cache."""
    cache = transport.home().rstrip("/") + "/cache"
    transport.run(["rm", "-rf", "--", cache], COMMAND_TIMEOUT_S)
