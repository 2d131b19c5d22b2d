"""The two databases a results store can live in, behind one small interface.

SQLite is a file and the embedded default; PostgreSQL is a team's shared server (psycopg 3, imported only
when a ``postgresql://`` store is opened, so the core install works without it). The store's SQL is written
once for both: ``?`` placeholders (PostgreSQL's ``%s`` substituted here), ``INSERT ... ON CONFLICT``, and no
``rowid`` outside ``Database.seq``. Every call holds the connection's lock: the runner stores cells from one
thread per device, and a transaction must not interleave with another thread's statements.

Only the server's or the file's own failures (refused, locked, full, corrupt, not a database, ...) become an
EdgebenchError naming the store; a mistake in edgebench's own SQL (SQLite's generic SQLITE_ERROR: a syntax
error, no such table, ...; psycopg's ProgrammingError) stays a bug with its traceback. Python 3.10's sqlite3
gives no error code, so there every SQLite failure but a constraint or misuse is the store's.

A store URL's password (``USER:PASSWORD@`` or ``?password=``) is never printed or stored: ``redact``.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..common.errors import EdgebenchError

Row = tuple[Any, ...]
NO_STORE = "no edgebench results store: run 'edgebench run' first"
# Serialises first-time schema creation and migrations among PostgreSQL clients (an arbitrary constant).
SCHEMA_LOCK_KEY = 0x6564676562656E63  # "edgebenc"
# The password of a URL: in its userinfo (up to the last @ before the path: libpq's own parse may take less), or a
# ?password= / &password= query parameter (its key possibly percent-encoded).
USERINFO_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:)([^/]*)(@)")
QUERY_PARAMETER = re.compile(r"([?&][^=&#]*=)([^&#]*)()")


def redact(text: str, url: str) -> str:
    """``text`` without the password of the store ``url``: masked in the URL wherever the URL appears, and its
    value replaced wherever else it does (libpq's errors may quote part of a URL)."""
    secrets: list[str] = []

    def mask(found: re.Match[str]) -> str:
        if found.re is QUERY_PARAMETER and urllib.parse.unquote(found.group(1)[1:-1]) != "password":
            return found.group(0)
        secrets.append(found.group(2))
        return f"{found.group(1)}***{found.group(3)}"

    masked = QUERY_PARAMETER.sub(mask, USERINFO_PASSWORD.sub(mask, url, count=1))
    text = text.replace(url, masked)
    for secret in sorted({s for raw in secrets for s in (raw, urllib.parse.unquote(raw)) if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class Database:
    """One connection; ``seq`` is the expression that orders runs as they were inserted (``seq_column`` the
    runs table's column that provides it, where the database has no rowid)."""

    where: str
    seq: str
    seq_column = ""
    tables_sql: str  # the names of the tables in the store's own namespace

    def __init__(self) -> None:
        self.lock = threading.RLock()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.lock, self._errors():
            return list(self._execute(sql, params).fetchall())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        with self.lock, self._errors():
            return int(self._execute(sql, params).rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement per row; the number of rows they changed together."""
        with self.lock, self._errors():
            return self._executemany(sql, rows) if rows else 0

    @contextmanager
    def transaction(self, *, schema: bool = False) -> Iterator[None]:
        """Statements that commit together; ``schema``: exclusive of every other client creating or migrating."""
        with self.lock, self._errors(), self._transaction(schema):
            yield

    def after_schema(self) -> None:
        """Settings applied once the store is known to be an edgebench store of a version this edgebench reads."""

    def close(self) -> None:
        raise NotImplementedError

    # -- per database ----------------------------------------------------------
    def _execute(self, sql: str, params: Sequence[Any]) -> Any:
        raise NotImplementedError

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        raise NotImplementedError

    def _transaction(self, schema: bool) -> Any:
        raise NotImplementedError

    def _errors(self) -> Any:
        raise NotImplementedError


class SqliteDatabase(Database):
    seq = "rowid"

    tables_sql = "SELECT name FROM sqlite_master WHERE type='table'"

    def __init__(self, path: Path, *, create: bool):
        super().__init__()
        self.where = str(path)
        if not create and not path.exists():  # connecting would create the file
            raise EdgebenchError(NO_STORE, where=self.where)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgebenchError(f"cannot create the store's directory: {exc.strerror or exc}", where=self.where) \
                from None
        with self._errors():
            # autocommit: transactions are explicit, so schema creation can be BEGIN EXCLUSIVE
            self.conn = sqlite3.connect(self.where, timeout=30, isolation_level=None, check_same_thread=False)

    def after_schema(self) -> None:
        # WAL: readers never wait for the writer. Switching can fail at once with "locked" while another
        # process that just created the store holds it (SQLite's busy timeout does not cover it): retry.
        deadline = time.monotonic() + 30
        with self.lock, self._errors():
            while True:
                try:
                    if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        self.conn.execute("PRAGMA journal_mode=WAL")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def close(self) -> None:
        self.conn.close()

    def _execute(self, sql: str, params: Sequence[Any]) -> Any:
        return self.conn.execute(sql, params)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return int(self.conn.executemany(sql, rows).rowcount)

    @contextmanager
    def _transaction(self, schema: bool) -> Iterator[None]:
        self.conn.execute("BEGIN EXCLUSIVE" if schema else "BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")  # a COMMIT that fails (locked, full) leaves the transaction open
        except BaseException as exc:
            if self.conn.in_transaction:  # not when SQLite rolled it back itself (disk full): ROLLBACK would fail
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error as failed:  # the first failure is the one to report; this one is its sequel
                    raise exc from failed
            raise

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError)) or _sql_mistake(exc):
                raise
            # locked past the timeout, not a database, corrupt, disk full, unreadable, ...
            raise EdgebenchError(f"not a usable edgebench results store: {exc}", where=self.where) from None


def _sql_mistake(exc: sqlite3.DatabaseError) -> bool:
    """SQLite's generic SQLITE_ERROR (a syntax error, no such table or column, ...): edgebench's own SQL."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return code is not None and code & 0xFF == sqlite3.SQLITE_ERROR


class PostgresDatabase(Database):
    seq = "seq"
    seq_column = ", seq BIGSERIAL"

    tables_sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"

    def __init__(self, url: str):
        super().__init__()
        self._url, self.where = url, redact(url, url)
        try:
            import psycopg
        except ImportError:
            raise EdgebenchError("a PostgreSQL store needs psycopg: pip install 'edgebench[lab]'",
                                 where=self.where) from None
        self._psycopg = psycopg
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=30)
        except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:  # Programming: libpq cannot parse the URL
            raise self._user_error(exc) from None

    def close(self) -> None:
        self.conn.close()

    def _execute(self, sql: str, params: Sequence[Any]) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), params)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)
            return int(cur.rowcount)  # the sum over the rows (psycopg >= 3.1)

    @contextmanager
    def _transaction(self, schema: bool) -> Iterator[None]:
        with self.conn.transaction():
            if schema:  # released with the transaction: two first-time clients never both create the tables
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            yield

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (self._psycopg.OperationalError, self._psycopg.errors.InsufficientPrivilege) as exc:
            # refused, authentication, server gone, no right to create the tables, ...
            raise self._user_error(exc) from None

    def _user_error(self, exc: Exception) -> EdgebenchError:
        return EdgebenchError(f"PostgreSQL store: {redact(' '.join(str(exc).split()), self._url)}", where=self.where)
