"""The results store on both of its databases: an SQLite file and a real PostgreSQL server.

Every behaviour test runs against both (the ``store_url`` fixture); the races use real processes on a real
file or server. Without the PostgreSQL server binaries these tests FAIL saying what to install: the
shared store is a feature, not an optional extra of the test suite.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.commands.results import remember_trend_shifts
from harness.common.errors import EdgebenchError
from harness.report.render import TREND_RUNS
from harness.results.record import p50
from harness.results.noise import series_points
from harness.results.store import SCHEMA_VERSION, Store, store_path
from tests.support.cli import run_cli
from tests.support.postgres import PostgresMissing, PostgresServer, postgres_server
from tests.support.synthetic import synthetic_cell, synthetic_device
from tests.support.tflite_models import convert_test_models

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "golden.sqlite"
_names = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        with postgres_server() as server:
            yield server
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def _new_database(postgres: PostgresServer) -> str:
    return postgres.create_database(f"store_{os.getpid()}_{next(_names)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A location for a new store: a file path, or the URL of a new, empty PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "results.sqlite")
    return _new_database(request.getfixturevalue("postgres"))


def _raw(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run SQL on the store's database directly, behind edgebench's back."""
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []
    with sqlite3.connect(url) as db:
        return db.execute(sql).fetchall()


def _cells(n: int, device: str = "pi-01") -> list[Any]:
    return [synthetic_cell(device, "mobilenet", f"v{i}", [1.0 + i, 2.0 + i, 3.0 + i]) for i in range(n)]


def test_a_run_round_trips_and_names_its_controller(store_url: str) -> None:
    store = Store(store_url)
    run_id = store.create_run("v1", {"settings": {"runs": 3}})
    store.put_device(run_id, "pi-01", synthetic_device("pi-01"))  # type: ignore[arg-type]
    cells = _cells(3)
    for cell in cells:
        store.put_cell(run_id, cell)
    store.finish_run(run_id)
    store.close()

    export = Store(store_url).export_run(run_id)
    assert export["schema_version"] == 1  # the export's format: the store's own schema moved on without it
    assert json.loads(json.dumps(export["results"])) == json.loads(json.dumps(cells))
    assert [d["name"] for d in export["devices"]] == ["pi-01"]
    run = export["run"]
    assert run["label"] == "v1" and run["finished_at"] and run["settings"] == {"runs": 3}
    assert run["controller"]["pid"] == os.getpid() and run["controller"]["host"]
    assert _raw(store_url, "SELECT value FROM meta") == [(str(SCHEMA_VERSION),)]


def test_latest_and_labels_resolve_to_the_newest_run_even_within_one_second(store_url: str) -> None:
    store = Store(store_url)
    ids = [store.create_run(label, {}) for label in ("a", "b", "a", "c", "a")]
    assert store.resolve("latest") == ids[-1]
    assert store.resolve("a") == ids[-1] and store.resolve("b") == ids[1] and store.resolve(ids[2]) == ids[2]
    assert [r["id"] for r in store.runs()] == ids
    with pytest.raises(EdgebenchError, match="no run with id or label 'zz'"):
        store.resolve("zz")


def test_a_cell_written_twice_is_one_cell_with_the_newer_result(store_url: str) -> None:
    store = Store(store_url)
    run_id = store.create_run(None, {})
    first, again = synthetic_cell("d", "m", "fp32", [5.0] * 9), synthetic_cell("d", "m", "fp32", [7.0] * 9)
    store.put_cell(run_id, first)
    store.put_cell(run_id, again)
    (cell,) = store.cells(run_id)
    assert p50(cell) == 7.0
    (summary,) = list(store.history().cells)
    assert summary.p50_ms == 7.0


def test_history_reads_per_cell_summaries_without_samples(store_url: str) -> None:
    store = Store(store_url)
    run_id = store.create_run("nightly", {})
    store.put_device(run_id, "pi-01", synthetic_device("pi-01"))  # type: ignore[arg-type]
    store.put_device(run_id, "pi-02", synthetic_device("pi-02"))  # type: ignore[arg-type]
    cells = _cells(2) + [synthetic_cell("pi-02", "mobilenet", "v0", None, status="unreachable", error="down")]
    for cell in cells:
        store.put_cell(run_id, cell)
    history = store.history()
    assert [r["id"] for r in history.runs] == [run_id] and history.counts == {run_id: (2, 3, 2)}
    summaries = sorted(history.cells)
    started = history.runs[0]["started_at"]
    assert [tuple(s) for s in summaries] == [
        (run_id, "nightly", started, "pi-01", "mobilenet", "v0", "ok", p50(cells[0])),
        (run_id, "nightly", started, "pi-01", "mobilenet", "v1", "ok", p50(cells[1])),
        (run_id, "nightly", started, "pi-02", "mobilenet", "v0", "unreachable", None)]


def test_series_points_for_noise_floors_are_read_by_the_database(store_url: str) -> None:
    store = Store(store_url)
    run_id = store.create_run("nightly", {})
    cells = _cells(2) + [synthetic_cell("pi-02", "mobilenet", "v0", None, status="unreachable", error="down")]
    cells[1]["threads"] = None
    for cell in cells:
        store.put_cell(run_id, cell)
    # the same points as computed from the cells in Python (series_points), without reading any sample
    assert sorted(store.series_points([run_id])) == sorted(series_points(run_id, cells))
    assert len(list(store.series_points([run_id]))) == 2 and not list(store.series_points([]))


def test_history_of_the_newest_runs_counts_every_run(store_url: str) -> None:
    store = Store(store_url)
    ids = [store.create_run(f"n{i}", {}) for i in range(4)]
    for run_id in ids:
        for cell in _cells(3):
            store.put_cell(run_id, cell)
    history = store.history(recent=2)
    assert {s.run_id for s in history.cells} == set(ids[2:])
    assert history.counts == {run_id: (0, 3, 3) for run_id in ids}
    assert list(store.history(recent=0).cells) == []


def _write_v1(path: Path, version: str = "1") -> None:
    """A store as edgebench 0.1 made it (schema_version 1), with any version written in its meta table."""
    path.write_bytes(GOLDEN.read_bytes())
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (version,))
    db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, whose bytes the tests compare
    db.close()


def test_an_old_store_is_migrated_with_its_medians_filled_in(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _write_v1(path)
    store = Store(path)
    assert _raw(str(path), "SELECT value FROM meta WHERE key='schema_version'") == [(str(SCHEMA_VERSION),)]
    for run in store.runs():
        by_key = {(c["device"], c["model"], c["variant"]): p50(c) for c in store.cells(str(run["id"]))}
        summaries = [s for s in store.history().cells if s.run_id == run["id"]]
        assert len(summaries) == len(by_key) > 0
        assert all(s.p50_ms == by_key[(s.device, s.model, s.variant)] for s in summaries)
        # the noise floors' series, from the columns, are what the cells themselves say
        assert sorted(store.series_points([str(run["id"])])) == sorted(series_points(str(run["id"]),
                                                                                     store.cells(str(run["id"]))))
    assert any(store.series_points([str(r["id"]) for r in store.runs()]))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("version", "words"), [("99", "schema_version 99, this edgebench reads up to"),
                                                ("two", "schema_version 'two' is not a version number")])
def test_a_store_from_the_future_or_with_a_garbled_version_is_refused_untouched(
        tmp_path: Path, version: str, words: str) -> None:
    path = tmp_path / "store.sqlite"
    _write_v1(path, version)
    before = _sha(path)
    with pytest.raises(EdgebenchError, match=words) as refused:
        Store(path)
    assert str(path) in str(refused.value)
    assert _sha(path) == before  # not even its journal mode changed
    result = run_cli("report", "--store", path, "-o", tmp_path / "r.html")
    assert result.code == 2 and words.split(",")[0] in result.err and "Traceback" not in result.err


def test_a_postgres_store_from_the_future_or_garbled_is_refused(postgres: PostgresServer) -> None:
    for version, words in (("99", "upgrade edgebench"), ("x1", "'x1' is not a version number"),
                           ("0", "'0' is not a version number")):
        url = _new_database(postgres)
        Store(url).close()
        _raw(url, f"UPDATE meta SET value='{version}' WHERE key='schema_version'")
        with pytest.raises(EdgebenchError, match=words):
            Store(url)
        assert _raw(url, "SELECT value FROM meta") == [(version,)]


def test_a_postgres_role_without_the_right_to_create_tables_is_told_so(postgres: PostgresServer,
                                                                       tmp_path: Path) -> None:
    url = _new_database(postgres)
    _raw(url, "CREATE ROLE guest LOGIN")
    guest = url.replace("edgebench@", "guest@")
    Store(tmp_path / "laptop.sqlite").close()
    result = run_cli("store", "copy", tmp_path / "laptop.sqlite", guest)  # a command that creates its store
    assert result.code == 2 and f"{guest}: PostgreSQL store: permission denied for schema public" in result.err


def test_another_applications_database_is_refused_and_left_alone(store_url: str) -> None:
    if not store_url.startswith("postgresql://"):
        Path(store_url).parent.mkdir(parents=True, exist_ok=True)
    _raw(store_url, "CREATE TABLE contacts (name TEXT)")
    with pytest.raises(EdgebenchError, match=r"not an edgebench results store \(it holds other tables: contacts\)"):
        Store(store_url)
    tables = "SELECT tablename FROM pg_tables WHERE schemaname='public'" if "://" in store_url \
        else "SELECT name FROM sqlite_master"
    assert _raw(store_url, tables) == [("contacts",)]


def _corrupt(path: Path) -> None:
    """A store whose schema page is overwritten: SQLite's own header intact, the rest garbage."""
    _write_v1(path)
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xa5" * 3996
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("make", "words"), [
    (lambda path: path.write_text("shopping list\n" * 100), "file is not a database"),
    (_corrupt, "database disk image is malformed")])
def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path, make: Any, words: str) -> None:
    path = tmp_path / "notes.sqlite"
    make(path)
    before = _sha(path)
    result = run_cli("export", "--store", path)
    assert result.code == 2 and f"{path}: not a usable edgebench results store: {words}" in result.err, result.err
    assert _sha(path) == before


def test_a_locked_sqlite_store_is_the_users_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.sqlite")
    store.db.execute("PRAGMA busy_timeout=100")
    other = sqlite3.connect(tmp_path / "results.sqlite", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process writing for longer than the busy timeout
    with pytest.raises(EdgebenchError, match="not a usable edgebench results store: database is locked"):
        store.create_run("r", {})
    other.execute("ROLLBACK")
    other.close()


def test_a_mistake_in_edgebenchs_own_sql_stays_a_bug(store_url: str) -> None:
    """A syntax error or a missing table in our SQL is not the user's unusable store: it keeps its traceback
    (the CLI's internal-error exit), on both databases, in a transaction too, and the store stays usable."""
    store = Store(store_url)
    for sql in ("SELEC 1", "INSERT INTO no_such_table VALUES (1)"):
        with pytest.raises(Exception) as raised:
            store.db.query(sql)
        assert not isinstance(raised.value, EdgebenchError) and ("syntax" in str(raised.value)
                                                                 or "no_such_table" in str(raised.value))
        with pytest.raises(Exception) as raised:
            with store.db.transaction():
                store.create_run("lost", {})
                store.db.execute(sql)
        assert not isinstance(raised.value, EdgebenchError)
    assert store.runs() == [] and store.resolve(store.create_run("kept", {})) == store.resolve("kept")


def test_a_url_is_recognised_before_any_path_handling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEBENCH_STORE", "postgresql://nobody@127.0.0.1:1/nothing")
    assert store_path(None) == "postgresql://nobody@127.0.0.1:1/nothing"
    result = run_cli("export")
    assert result.code == 2 and "postgresql://nobody@127.0.0.1:1/nothing: PostgreSQL store: connection" in result.err
    assert "Connection refused" in result.err
    result = run_cli("export", "--store", "postgresql://u:secret@127.0.0.1:1/db")
    assert "secret" not in result.err and "u:***@" in result.err
    result = run_cli("export", "--store", "mysql://u@h/db")
    assert result.code == 2 and "unknown store URL scheme 'mysql'" in result.err
    assert list(tmp_path.iterdir()) == []  # no file named after a URL


def test_a_store_password_is_never_printed_or_stored(postgres: PostgresServer, tmp_path: Path) -> None:
    """In the URL's userinfo or as ?password= (percent-encoded too), on a refused connection, a URL libpq cannot
    parse (its error quotes the URL), an unknown scheme, and in a store that works (the test server trusts)."""
    failing = ["postgresql://u:hunter2a@127.0.0.1:1/db", "postgresql://u@127.0.0.1:1/db?password=hunter2b",
               "postgresql://u@127.0.0.1:1/db?sslmode=disable&pass%77ord=hunter2c",
               "postgresql://u:hunter2d x@127.0.0.1:1/db", "postgresql://u:hunter2e@[::1/db",
               "mysql://u:hunter2f@h/db?password=hunter2g"]
    for url in failing:
        result = run_cli("export", "--store", url)
        assert result.code == 2 and "***" in result.err and "Traceback" not in result.err, result.err
        assert "hunter2" not in result.err + result.out, result.err
    laptop = tmp_path / "laptop.sqlite"
    with Store(laptop) as store:
        run_id = store.create_run("r", {})
        store.put_cell(run_id, synthetic_cell("pi-01", "mobilenet", "v0", [5.0]))
    url = _new_database(postgres)
    with_password = url.replace("edgebench@", "edgebench:hunter2h@")
    outputs = [run_cli("store", "copy", laptop, with_password),
               run_cli("export", "--store", f"{url}?password=hunter2i"),
               run_cli("report", "--store", with_password, "-o", tmp_path / "r.html"),
               run_cli("store", "copy", f"{url}?password=hunter2j", tmp_path / "back.sqlite")]
    assert all(r.code == 0 for r in outputs) and "edgebench:***@" in outputs[0].out
    assert "hunter2" not in "".join(r.out + r.err for r in outputs)
    assert "hunter2" not in str([_raw(url, f"SELECT * FROM {table}") for table in ("meta", "runs", "devices", "cells")])
    assert "hunter2" not in (tmp_path / "r.html").read_text() + (tmp_path / "index.html").read_text()


def test_without_psycopg_a_postgres_store_says_what_to_install(tmp_path: Path) -> None:
    script = ("import sys; sys.modules['psycopg'] = None\n"  # import psycopg now raises ImportError
              "from harness.cli import main; sys.exit(main(['export', '--store', 'postgresql://u@127.0.0.1:1/db']))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 2, done.stderr
    assert "needs psycopg: pip install 'edgebench[lab]'" in done.stderr and "Traceback" not in done.stderr


# -- copying between stores -------------------------------------------------------------------------------------
def test_store_copy_moves_history_both_ways_idempotently(tmp_path: Path, postgres: PostgresServer) -> None:
    laptop = tmp_path / "laptop.sqlite"
    _write_v1(laptop)  # an old laptop store: migrated on the way
    team = _new_database(postgres)
    first = run_cli("store", "copy", laptop, team)
    assert first.code == 0, first.err
    old = Store(laptop)
    n_runs, n_cells = len(old.runs()), sum(len(old.cells(str(r["id"]))) for r in old.runs())
    assert f"copied {n_runs} run(s), {n_cells} cell(s)" in first.out
    assert run_cli("store", "copy", laptop, team).out.startswith("copied 0 run(s), 0 cell(s)")

    shared = Store(team)
    for run in old.runs():
        assert shared.export_run(str(run["id"])) == old.export_run(str(run["id"]))
    assert shared.resolve("latest") == old.resolve("latest")

    back = tmp_path / "back.sqlite"
    assert run_cli("store", "copy", team, back).code == 0
    assert run_cli("store", "copy", team, back).out.startswith("copied 0 run(s), 0 cell(s)")
    assert [Store(back).export_run(str(r["id"])) for r in old.runs()] == [old.export_run(str(r["id"]))
                                                                         for r in old.runs()]


def test_store_copy_fills_in_what_the_destination_lacks_and_overwrites_nothing(store_url: str,
                                                                               tmp_path: Path) -> None:
    src = Store(tmp_path / "src.sqlite")
    run_id = src.create_run("r", {})
    for cell in _cells(4):
        src.put_cell(run_id, cell)
    dst = Store(store_url)
    assert src.copy_into(dst) == (1, 4, {})
    src.put_cell(run_id, synthetic_cell("pi-01", "mobilenet", "v9", [1.0]))  # measured later (a resume)
    changed = synthetic_cell("pi-01", "mobilenet", "v0", [50.0])
    dst.put_cell(run_id, changed)  # the destination's own newer result
    assert src.copy_into(dst) == (0, 1, {})
    assert {c["variant"]: p50(c) for c in dst.cells(run_id)}["v0"] == 50.0


def test_store_copy_keeps_two_runs_that_share_an_id_apart(store_url: str, tmp_path: Path) -> None:
    """Two laptops' stores can each hold a run with the same id: the copy is a new run, not a merge of the two."""
    team = Store(store_url)
    run_id = team.create_run("mine", {"settings": {"runs": 3}})
    team.put_cell(run_id, synthetic_cell("pi-01", "mobilenet", "v0", [5.0]))
    laptop = tmp_path / "laptop.sqlite"
    other = Store(laptop)
    theirs = other.create_run("theirs", {"settings": {"runs": 9}})
    for cell in _cells(2):
        other.put_cell(theirs, cell)
    other.close()
    _raw(str(laptop), f"UPDATE runs SET id='{run_id}'")  # the same id, drawn by another controller
    _raw(str(laptop), f"UPDATE cells SET run_id='{run_id}'")

    first = run_cli("store", "copy", laptop, store_url)
    (renamed,) = [str(r["id"]) for r in team.runs() if r["id"] != run_id]
    assert first.code == 0 and f"run {run_id}: {store_url} has another run with that id: this one is {renamed} " \
        "there" in first.out and "copied 1 run(s), 2 cell(s)" in first.out, first.err + first.out
    assert [p50(c) for c in team.cells(run_id)] == [5.0]  # the destination's own run is untouched
    assert team.export_run(renamed)["results"] == Store(laptop).export_run(run_id)["results"]
    assert team.export_run(renamed)["run"]["label"] == "theirs"
    again = run_cli("store", "copy", laptop, store_url)
    assert "copied 0 run(s), 0 cell(s)" in again.out and f"this one is {renamed} there" in again.out
    assert len(team.runs()) == 2


def _laptop(path: Path, cells: int) -> Store:
    """A store with one run of ``cells`` cells of 500 samples each."""
    store = Store(path)
    run_id = store.create_run("laptop", {})
    for n in range(cells):
        store.put_cell(run_id, synthetic_cell("pi-01", "mobilenet", f"v{n}", [1.0 + n] * 500))
    return store


def test_a_full_sqlite_store_says_it_is_full_and_stays_usable(tmp_path: Path) -> None:
    """Before: SQLite rolls a transaction back itself when the disk is full, so edgebench's own ROLLBACK failed and
    'cannot rollback - no transaction is active' was reported instead."""
    src, dst = _laptop(tmp_path / "src.sqlite", 50), Store(tmp_path / "dst.sqlite")
    pages = dst.db.query("PRAGMA page_count")[0][0]
    dst.db.execute(f"PRAGMA max_page_count={pages}")  # the disk is full: not one more page
    with pytest.raises(EdgebenchError, match="not a usable edgebench results store: database or disk is full"):
        src.copy_into(dst)
    assert dst.runs() == [] and not dst.db.conn.in_transaction  # nothing half-copied
    dst.db.execute("PRAGMA max_page_count=1000000")  # space freed
    assert src.copy_into(dst) == (1, 50, {})


def test_a_failed_commit_is_rolled_back_and_the_store_stays_usable(tmp_path: Path) -> None:
    """Before: a COMMIT that failed (here: another process reading a store in rollback-journal mode past the busy
    timeout) left the transaction open, and the next one failed with 'cannot start a transaction within a
    transaction'."""
    src, dst = _laptop(tmp_path / "src.sqlite", 3), Store(tmp_path / "dst.sqlite")
    dst.db.execute("PRAGMA journal_mode=DELETE")  # a reader blocks a commit (WAL would let both go on)
    dst.db.execute("PRAGMA busy_timeout=100")
    reader = sqlite3.connect(tmp_path / "dst.sqlite", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM runs").fetchall()  # holds its shared lock until the transaction ends
    with pytest.raises(EdgebenchError, match="database is locked"):
        src.copy_into(dst)
    reader.execute("COMMIT")
    reader.close()
    assert not dst.db.conn.in_transaction and dst.runs() == []
    assert src.copy_into(dst) == (1, 3, {})


@pytest.mark.parametrize("command", ["store copy", "report", "export", "gate"])
def test_a_store_that_is_only_read_is_never_created(store_url: str, tmp_path: Path, command: str) -> None:
    """A typo'd store path is an error naming it, not a new empty store that has no runs."""
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("budgets:\n  - model: m\n    p90_ms: 1\n")
    argv = {"store copy": ["store", "copy", store_url, tmp_path / "dst.sqlite"],
            "report": ["report", "--store", store_url, "-o", tmp_path / "r.html"],
            "export": ["export", "--store", store_url],
            "gate": ["gate", "--budgets", budgets, "--store", store_url]}[command]
    result = run_cli(*argv)
    assert result.code == 2 and f"{store_url}: no edgebench results store" in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["budgets.yaml"]
    if "://" in store_url:
        assert _raw(store_url, "SELECT tablename FROM pg_tables WHERE schemaname='public'") == []


# -- several processes at once ------------------------------------------------------------------------------------
RACE = """
import sys, time
from harness.results.store import Store
from tests.support.synthetic import synthetic_cell
start, me, shared_label, cells, *locations = sys.argv[1:]
for i, location in enumerate(locations):
    time.sleep(max(0.0, float(start) + 0.4 * i - time.time()))  # all processes open store i at once
    store = Store(location)
    own = store.create_run(f"{me}", {})
    shared = store.resolve(shared_label) if shared_label != "-" else None
    for n in range(int(cells)):
        store.put_cell(own, synthetic_cell(me, "m", f"v{n}", [1.0 + n]))
        if shared:
            store.put_cell(shared, synthetic_cell("same", "m", f"v{n % 20}", [2.0]))
    store.close()
"""


def _race(locations: list[str], processes: int, shared_label: str = "-", cells: int = 0) -> None:
    """Each process opens each location at the same moment as the others, adds a run and ``cells`` cells to it
    (and to the run labelled ``shared_label``, the same 20 cells from every process)."""
    start = time.time() + 3.0  # every process started, imported and waiting
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(start), f"p{n}", shared_label, str(cells), *locations],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
             for n in range(processes)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]


def test_processes_creating_one_new_store_at_once_all_succeed(store_url: str, tmp_path: Path,
                                                               postgres: PostgresServer) -> None:
    """Before: 'table already exists' / 'database is locked' about 1 in 4 with 4 processes."""
    rounds = 8
    if store_url.startswith("postgresql://"):
        locations = [store_url] + [_new_database(postgres) for _ in range(rounds - 1)]
    else:
        locations = [str(tmp_path / f"new{i}" / "results.sqlite") for i in range(rounds)]
    _race(locations, processes=5)
    for location in locations:
        assert _raw(location, "SELECT key, value FROM meta") == [("schema_version", str(SCHEMA_VERSION))]
        assert sorted(r["label"] for r in Store(location).runs()) == [f"p{n}" for n in range(5)]


def test_concurrent_writers_lose_and_duplicate_nothing(store_url: str) -> None:
    store = Store(store_url)
    shared = store.create_run("shared", {})
    _race([store_url], processes=4, shared_label="shared", cells=60)
    runs = {str(r["label"]): str(r["id"]) for r in store.runs()}
    assert sorted(runs) == ["p0", "p1", "p2", "p3", "shared"]
    for n in range(4):
        assert sorted(c["variant"] for c in store.cells(runs[f"p{n}"])) == sorted(f"v{i}" for i in range(60))
    assert sorted(c["variant"] for c in store.cells(shared)) == sorted(f"v{i}" for i in range(20))
    assert len(list(store.history().cells)) == 4 * 60 + 20


def test_two_controllers_run_into_one_postgres_store_and_every_command_reads_it(
        postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    models = convert_test_models(tmp_path_factory)
    url = _new_database(postgres)
    argv = [sys.executable, "-m", "harness", "run", "--devices", "local", "--runs", "20", "--warmup", "1",
            "--min-seconds", "0", "--store", url, "-q"]
    for name in ("mlp_fp32", "mlp_int8", "cnn_fp32"):
        argv += ["--models", str(models[name])]
    procs = {label: subprocess.Popen([*argv, "--label", label], cwd=tmp_path, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
             for label in ("ci-a", "ci-b")}
    for proc in procs.values():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]

    store = Store(url)
    for label, proc in procs.items():
        export = store.export_run(store.resolve(label))
        assert sorted(c["model"] for c in export["results"]) == ["cnn_fp32", "mlp_fp32", "mlp_int8"]
        assert all(c["status"] == "ok" and c["latency_ms"]["count"] >= 20 for c in export["results"])
        assert export["run"]["controller"]["pid"] == proc.pid
    assert len(list(store.history().cells)) == 6

    resumed = run_cli("run", *argv[4:], "--resume", "ci-a")
    assert resumed.code == 0 and "3 cell(s) already measured" in resumed.out, resumed.err
    out = tmp_path / "reports" / "ci-a.html"
    assert run_cli("report", "--run", "ci-a", "--baseline", "ci-b", "--store", url, "-o", out).code == 0
    index = (out.parent / "index.html").read_text()
    assert all(store.resolve(label) in index for label in procs) and index.count("<polyline") == 3
    exported = json.loads(run_cli("export", "--run", "ci-b", "--store", url).out)
    assert exported["run"]["label"] == "ci-b" and len(exported["results"]) == 3
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("budgets:\n  - model: mlp_*\n    p90_ms: 100000\n")
    assert run_cli("gate", "--budgets", budgets, "--run", "ci-a", "--baseline", "ci-b", "--store", url).code == 0


def test_the_index_counts_every_run_and_draws_trends_of_the_newest(store_url: str, tmp_path: Path) -> None:
    store = Store(store_url)
    header = {"settings": {}, "inventory": None, "suite": None, "commit": None, "host": {}}  # as `run` records it
    ids = [store.create_run(f"nightly-{n}", header) for n in range(TREND_RUNS + 5)]
    for n, run_id in enumerate(ids):
        store.put_device(run_id, "pi", synthetic_device("pi"))  # type: ignore[arg-type]
        store.put_cell(run_id, synthetic_cell("pi", "m", "int8", [10.0 + n] * 5))
        store.put_cell(run_id, synthetic_cell("pi", "m", "fp32", None, status="timeout"))
    assert run_cli("report", "--store", store_url, "-o", tmp_path / "r.html").code == 0
    index = (tmp_path / "index.html").read_text()
    assert f"(the newest {TREND_RUNS} of {TREND_RUNS + 5})" in index
    assert index.count("<polyline") == 1 and index.count("<circle cx=") == TREND_RUNS
    assert all(run_id in index for run_id in ids) and index.count("1 / 2</td>") == TREND_RUNS + 5
    assert "nightly-4:" not in index and f"nightly-{TREND_RUNS + 4}: {10.0 + TREND_RUNS + 4:.1f} ms" in index


def test_report_reads_the_change_points_that_run_found(store_url: str, tmp_path: Path) -> None:
    store = Store(store_url)
    header = {"settings": {}, "inventory": None, "suite": None, "commit": None, "host": {}}
    for n in range(TREND_RUNS):
        run_id = store.create_run(f"nightly-{n}", header)
        store.put_cell(run_id, synthetic_cell("pi", "m", "int8", [10.0 if n < 20 else 13.0] * 5))
    remember_trend_shifts(store)  # what `run` does once its run is stored
    [(_, found)] = _raw(store_url, "SELECT key, data FROM shifts")
    assert [shift[0] for shift in json.loads(found)] == [20]
    out = tmp_path / "warm" / "r.html"
    child = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                            "from harness.commands.results import cmd_report; "
                            "cmd_report(store=sys.argv[1], out_path=Path(sys.argv[2])); "
                            "print('ruptures' in sys.modules, 'scipy.stats' in sys.modules)", store_url, str(out)],
                           capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    assert child.stdout.split()[-2:] == ["False", "False"]  # read, not searched: 0.9 s of imports saved
    shifted = "<b>pi · int8</b> shifted ×1.30 at run nightly-20"
    assert shifted in (out.parent / "index.html").read_text()
    _raw(store_url, "DELETE FROM shifts")  # a store copied from elsewhere: the first report searches and keeps
    assert run_cli("report", "--store", store_url, "-o", tmp_path / "cold" / "r.html").code == 0
    assert shifted in (tmp_path / "cold" / "index.html").read_text()
    assert _raw(store_url, "SELECT data FROM shifts") == [(found,)]
