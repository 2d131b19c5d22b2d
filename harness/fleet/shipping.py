"""Getting the agent and the models onto a device: a content-addressed cache named by sha256.

A file already in the device's cache is not sent again. New files go up under a
temporary name, are checked against their sha256 on the device, then renamed,
so an interrupted upload never leaves a file that looks complete.

A device's work directory is not trusted for its file names alone: before every
run the files already cached are hashed on the device, and one whose content
does not match its name (or a symlink, or another user's file) is removed and
sent again. The directory is created
private (umask 077), and one that another user owns or can write to is refused:
anyone who could write there could replace what edgebench executes.
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
# $1 is the work directory, then pairs of (sha256, name): prints "ok NAME" for each cached file whose content
# matches and that only this user can change, after checking the same of the directory and its cache.
# Anything else under an expected name (a symlink, another user's file, other content) is removed.
_VERIFY = r"""umask 077
home=$1; shift
mkdir -p "$home/cache" || exit 1
owned() {
  set -- "$1" $(ls -ldn -- "$1")
  case "$2" in ?????w*|????????w*) echo "unsafe: $1 is writable by other users (mode $2)"; return 1;; esac
  [ "$4" = "$(id -u)" ] || { echo "unsafe: $1 is owned by user $4, not by this user ($(id -u))"; return 1; }
}
private() {
  [ -d "$1" ] && [ ! -h "$1" ] || { echo "unsafe: $1 is not a directory"; return 1; }
  owned "$1"
}
private "$home" && private "$home/cache" || exit 3
while [ $# -ge 2 ]; do
  f="$home/cache/$2"
  if [ -e "$f" ] || [ -h "$f" ]; then
    if [ -f "$f" ] && [ ! -h "$f" ] && owned "$f" >/dev/null && [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$1" ]
    then echo "ok $2"; else rm -rf "$f"; fi
  fi
  shift 2
done
"""
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
    """Make every file present in the device cache, verified by its sha256; send only what is missing."""
    home = transport.home().rstrip("/")
    cache = home + "/cache"
    names: dict[Path, tuple[str, str]] = {}  # local file -> (sha256, name in the cache)
    for path in dict.fromkeys(files):
        digest = (digests or {}).get(path) or sha256_file(path)
        names[path] = (digest, digest + "".join(path.suffixes[-1:]))
    checked = transport.run(["sh", "-c", _VERIFY, "sh", home, *(x for pair in names.values() for x in pair)],
                            COMMAND_TIMEOUT_S)
    text = checked.stdout.decode(errors="replace")
    if checked.code == 3:
        raise TransportError(Status.ENVIRONMENT_ERROR, f"{transport.device.name}: work directory {home} refused: "
                             f"{text.strip().removeprefix('unsafe: ')[:300]}; edgebench runs nothing from a directory "
                             "other users can write (chmod 700 it, or give the device another workdir)")
    if checked.code != 0:
        raise TransportError(Status.UNREACHABLE, f"cannot prepare cache {cache}: "
                                                 f"{checked.stderr.decode(errors='replace')[-300:]}")
    present = {line[3:] for line in text.splitlines() if line.startswith("ok ")}
    remote: dict[Path, str] = {}
    commit: list[str] = []
    sent = 0
    for path, (digest, name) in names.items():
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
