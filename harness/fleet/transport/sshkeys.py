"""Where an SSH connection goes (the device or a ProxyJump host) and with which private keys.

Private keys are checked as OpenSSH checks them: a key file that others can read
(mode & 0o077) is refused. Key file paths are local details: errors that leave the
transport (into cells, the shared report) name a key by its file name only.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from .base import TransportError


@dataclass
class Endpoint:
    """One SSH server to reach: the device or a ProxyJump host, resolved through the ssh config."""

    label: str
    hostname: str
    port: int
    user: str
    key_files: list[str]
    jumps: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def split_jump(spec: str) -> tuple[str | None, str, int | None]:
    """``[ssh://][user@]host[:port]`` (host may be ``[v6]``) -> user, host, port."""
    spec = spec.strip().removeprefix("ssh://")
    user, _, hostport = spec.rpartition("@")
    port: str | None = None
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    else:
        host = hostport
    if port is not None and not port.isdigit():
        raise TransportError("unreachable", f"ProxyJump {spec!r}: port {port!r} is not a number")
    return user or None, host, int(port) if port else None


def key_label(path: str) -> str:
    """How errors name a key file: its file name, never the local path."""
    return os.path.basename(path) or "the configured key"


def private_key(path: str) -> str:
    """``path`` when it is a private key file only its owner can read; TransportError("auth_failed") otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise TransportError("auth_failed", f"key file {key_label(path)} does not exist or cannot be read") from None
    if stat.S_IMODE(mode) & 0o077:
        raise TransportError("auth_failed", f"key file {key_label(path)} is readable by others "
                                            f"(mode {stat.S_IMODE(mode):04o}); like OpenSSH, edgebench refuses it: "
                                            "chmod 600 it")
    return path


DEFAULT_KEYS = ("id_rsa", "id_ecdsa", "id_ed25519", "id_dsa")  # ~/.ssh, tried when no key is named


def default_keys() -> tuple[list[str], list[str]]:
    """The default ~/.ssh/id_* keys that exist: those only their owner can read, and (by file name) those
    skipped because others can read them, as OpenSSH skips them."""
    usable, loose = [], []
    for name in DEFAULT_KEYS:
        path = os.path.expanduser(f"~/.ssh/{name}")
        if os.path.isfile(path):
            try:
                usable.append(private_key(path))
            except TransportError:
                loose.append(name)
    return usable, loose


def scrub_key_paths(text: str, key_files: list[str]) -> str:
    """``text`` with every key file path replaced by the key's file name."""
    for path in sorted(key_files, key=len, reverse=True):
        text = text.replace(path, key_label(path))
    return text
