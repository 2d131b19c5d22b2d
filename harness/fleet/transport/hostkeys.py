"""SSH host keys, checked as OpenSSH checks them: known_hosts files (hashed names, wildcards, negation,
@revoked), trust on first use only when asked, and a changed key always refused."""

from __future__ import annotations

import base64
import fnmatch
import hmac
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
from paramiko.pkey import UnknownKeyType

from .base import TransportError

if TYPE_CHECKING:
    from .ssh import SSHTransport

_known_hosts_lock = threading.Lock()


def fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def host_matches(name: str, patterns: list[str]) -> bool:
    """OpenSSH's known_hosts host field: exact names, hashed names (|1|salt|hmac), * and ? wildcards, !negation."""
    matched = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern[1:] if negate else pattern
        if pattern.startswith("|1|"):
            parts = pattern.split("|")
            try:
                salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            except (IndexError, ValueError):
                continue
            hit = hmac.compare_digest(hmac.new(salt, name.encode(), "sha1").digest(), digest)
        elif "*" in pattern or "?" in pattern:
            hit = fnmatch.fnmatchcase(name, pattern.lower().replace("[", "[[]"))  # "[host]:port" brackets are literal
        else:
            hit = name == pattern.lower()
        if hit and negate:
            return False
        matched = matched or hit
    return matched


@dataclass
class KnownHosts:
    """known_hosts files read as OpenSSH reads them: several keys per host, @revoked keys, malformed lines skipped."""

    entries: list[tuple[list[str], paramiko.PKey]]
    revoked: list[paramiko.PKey]

    @classmethod
    def read(cls, paths: list[Path]) -> KnownHosts:
        known = cls([], [])
        for path in paths:
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise TransportError("host_key_unknown", f"cannot read {path}: {exc}") from None
            for line in text.splitlines():
                fields = line.split()
                marker = fields.pop(0) if fields and fields[0].startswith("@") else None
                if len(fields) < 3 or fields[0].startswith("#") or marker not in (None, "@revoked"):
                    continue  # @cert-authority: paramiko verifies no host certificates
                try:
                    key = paramiko.PKey.from_type_string(fields[1], base64.b64decode(fields[2]))
                except (UnknownKeyType, paramiko.SSHException, ValueError):
                    continue
                if marker:
                    known.revoked.append(key)
                else:
                    known.entries.append((fields[0].split(","), key))
        return known

    def keys_for(self, name: str) -> list[paramiko.PKey]:
        return [key for patterns, key in self.entries if host_matches(name.lower(), patterns)]


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Every host key decision. The SSHClient is given no host keys of its own, so paramiko asks here each time."""

    def __init__(self, transport: SSHTransport, known: KnownHosts, label: str):
        self.transport = transport
        self.known = known
        self.label = label

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        files = self.transport.known_hosts_files
        if key in self.known.revoked:
            raise TransportError("host_key_changed", f"host key of {hostname} ({self.label}) is marked @revoked in "
                                                     f"known_hosts ({fingerprint(key)}); refusing to connect")
        expected = self.known.keys_for(hostname)
        if key in expected:
            return
        if expected:
            old = next((k for k in expected if k.get_name() == key.get_name()), expected[0])
            raise TransportError(
                "host_key_changed",
                f"HOST KEY CHANGED for {hostname} ({self.label}): known_hosts has {fingerprint(old)}, the server "
                f"presented {fingerprint(key)}. Someone may be intercepting the connection, or the device was "
                f"reinstalled; if you know it was, remove the old key (ssh-keygen -R '{hostname}' -f FILE, for "
                f"{' and '.join(map(str, files))}) and connect again",
            )
        record_to = files[-1]
        if not self.transport.trust_new_hosts:
            host, _, port = hostname.strip("[").partition("]:")
            scan = f"ssh-keyscan {'-p ' + port + ' ' if port else ''}{host}"
            raise TransportError(
                "host_key_unknown",
                f"host key of {hostname} ({self.label}) is not known ({fingerprint(key)}); if that fingerprint is "
                f"the device's, pass --trust-new-hosts to record it in {record_to}, or add it yourself: "
                f"{scan} >> {record_to}",
            )
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with _known_hosts_lock:
            record_to.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(record_to, "a+b") as f:
                if f.seek(0, os.SEEK_END) > 0:
                    f.seek(f.tell() - 1)
                    if f.read(1) != b"\n":
                        line = "\n" + line
                f.write(line.encode())
        self.known.entries.append(([hostname], key))


def transport_preferring(known: list[paramiko.PKey]) -> Callable[..., paramiko.Transport]:
    """Ask first for the host key types already recorded, as OpenSSH does, so a host that also
    has a newer key type is not mistaken for a changed host."""
    names = {key.get_name() for key in known}

    def make(sock: socket.socket | paramiko.Channel, **kwargs: Any) -> paramiko.Transport:
        transport = paramiko.Transport(sock, **kwargs)
        options = transport.get_security_options()
        types = list(options.key_types)
        first = [t for t in types if t in names or (t.startswith("rsa-sha2-") and "ssh-rsa" in names)]
        options.key_types = first + [t for t in types if t not in first]
        return transport

    return make
