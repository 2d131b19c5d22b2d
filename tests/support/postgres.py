"""A real PostgreSQL server for the tests and benchmarks: Debian's `postgresql` package, a private cluster.

initdb into a fresh directory under the temp root (pytest's tmp_path sits under a 0700 directory the
`postgres` user cannot reach), started by pg_ctl on a free loopback port with its socket in that directory,
trust authentication for one superuser, fsync off. PostgreSQL refuses to run as root: as root, every server
command runs as the `postgres` user and the directory is chowned to it. Stopped (fast) and removed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.sshd import free_port

USER = "edgebench"


class PostgresMissing(RuntimeError):
    pass


def pg_bin() -> Path:
    """The server binaries' directory: $EDGEBENCH_PG_BIN, Debian's newest /usr/lib/postgresql/N/bin, or PATH."""
    if os.environ.get("EDGEBENCH_PG_BIN"):
        candidates = [Path(os.environ["EDGEBENCH_PG_BIN"])]
    else:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True,
                            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
        if shutil.which("initdb"):
            candidates.append(Path(str(shutil.which("initdb"))).parent)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    raise PostgresMissing("the PostgreSQL server binaries (initdb, pg_ctl) are needed for the shared-store tests and "
                          f"were not found in {', '.join(map(str, candidates)) or '/usr/lib/postgresql/*/bin'} or on "
                          "PATH: apt-get install postgresql (./quickstart installs it), or set EDGEBENCH_PG_BIN")


class PostgresServer:
    def __init__(self, root: Path, port: int, bindir: Path):
        self.root, self.port, self.bindir = root, port, bindir
        self.data = root / "data"
        self._as_server = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _server_cmd(self, *argv: str) -> None:
        done = subprocess.run([*self._as_server, *argv], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log"
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stderr.strip()}"
                               + (f"\n{log.read_text()[-2000:]}" if log.exists() else ""))

    def start(self) -> None:
        if self._as_server:
            shutil.chown(self.root, "postgres", "postgres")
        self._server_cmd(str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust",
                         "-E", "UTF8", "--no-sync")
        self._server_cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                         "-w", "-t", "60", "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                                                 "-c fsync=off -c max_connections=100", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._server_cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A running private server (raises PostgresMissing, saying what to install, without the binaries)."""
    bindir = pg_bin()
    root = Path(tempfile.mkdtemp(prefix="edgebench-pg-"))
    server = PostgresServer(root, free_port(), bindir)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
