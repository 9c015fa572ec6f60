"""MariaDB / MySQL as the sixth database, on a real MariaDB server the tests start themselves.

Everything the other databases do, on `dialects/mariadb.py` alone: the proof of correctness in
both directions (MariaDB -> DuckDB, PostgreSQL -> MariaDB), the metadata catalog, the canonical
row hash equal to the Python reference (and so to the other five), the bulk load, cancel of a
running statement, and which driver errors are transient.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pymysql
import pytest
from comparison_tables import duckdb_engine
from known_schema import ROWS as KNOWN_ROWS
from known_schema import check_known_catalog, create_known_schema
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from test_canonical_hash import ROWS, SPEC, reference_fingerprint

from prefect_ombudsman.datagen.generator import build_plan
from prefect_ombudsman.datagen.load import STAGING_MARK, Target
from prefect_ombudsman.datagen.schemas import get_schema
from prefect_ombudsman.datagen.verify import stored_digest as datagen_fingerprint
from prefect_ombudsman.datagen.warehouse import generate_warehouse
from prefect_ombudsman.dialects.base import dialect_for, is_transient
from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.dialects.mariadb import MariaDBDialect
from prefect_ombudsman.metadata.extract import extract_catalog
from prefect_ombudsman.validation.comparison import compare_tables, table_fingerprint
from support import MariaDbServer, wait_until
from test_proof_of_correctness import _project, _prove


@pytest.fixture(scope="module")
def mariadb_url() -> Iterator[str]:
    """A MariaDB server of our own (tests/support.py), stopped at the end."""
    try:
        server = MariaDbServer()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture(scope="module")
def maria(mariadb_url: str) -> Engine:
    return get_engine(spec_from_url(mariadb_url))


def _database(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))


def test_a_mysql_url_is_served_by_the_registered_mariadb_dialect(maria: Engine):
    spec = spec_from_url("mysql://someone@db.example:3307/shop")
    assert spec.url.startswith("mysql+pymysql://") and spec.kind == "mariadb"
    assert isinstance(dialect_for(maria), MariaDBDialect)
    assert isinstance(dialect_for("mariadb"), MariaDBDialect)
    with maria.connect() as conn:
        assert conn.execute(text("SELECT @@session.time_zone")).scalar() == "+00:00"


# --- canonical row hash: the same rows give the Python reference (so the other engines' value)

GOLDEN_DDL = (
    "CREATE TABLE golden.golden (id INT PRIMARY KEY, "
    "name VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, code CHAR(5), "
    "amount DECIMAL(12,3), ratio DOUBLE, flag BOOLEAN, on_day DATE, at_ts DATETIME(6), "
    "at_tz DATETIME(6))"
)


def _golden_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """MariaDB has no time zone type: an aware timestamp is stored as its UTC time."""
    at_tz = row[8]
    if at_tz is not None:
        at_tz = at_tz.astimezone(UTC).replace(tzinfo=None)
    return (*row[:8], at_tz)


@pytest.fixture(scope="module")
def golden(maria: Engine) -> Engine:
    _database(maria, "golden")
    with maria.begin() as conn:
        conn.execute(text(GOLDEN_DDL))
        conn.execute(
            text("INSERT INTO golden.golden VALUES (:a, :b, :c, :d, :e, :f, :g, :h, :i)"),
            [dict(zip("abcdefghi", _golden_row(r), strict=True)) for r in ROWS],
        )
    return maria


def test_canonical_fingerprint_equals_the_reference_of_every_engine(golden: Engine):
    assert SPEC.count(",") == 8  # the golden rows of tests/comparison/test_canonical_hash.py
    assert table_fingerprint(golden, "golden.golden") == reference_fingerprint()


def test_rows_compare_equal_against_duckdb_and_changes_are_found(golden: Engine, tmp_path: Path):
    duck = duckdb_engine(tmp_path / "golden.duckdb")
    with duck.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE golden (id INTEGER PRIMARY KEY, name VARCHAR(100), code CHAR(5), "
                "amount DECIMAL(12,3), ratio DOUBLE, flag BOOLEAN, on_day DATE, "
                "at_ts TIMESTAMP, at_tz TIMESTAMPTZ)"
            )
        )
        conn.execute(
            text("INSERT INTO golden VALUES (:a, :b, :c, :d, :e, :f, :g, :h, :i)"),
            [dict(zip("abcdefghi", r, strict=True)) for r in ROWS],
        )
    same = compare_tables(golden, duck, "golden.golden", "golden").result
    assert same.status == "PASS" and same.source_rows == len(ROWS)
    with duck.begin() as conn:
        conn.execute(text("UPDATE golden SET name = 'Plain' WHERE id = 1"))
        conn.execute(text("DELETE FROM golden WHERE id = 7"))
    differs = compare_tables(golden, duck, "golden.golden", "golden").result
    assert (differs.changed, differs.missing_in_target, differs.extra_in_target) == (1, 1, 0)
    assert differs.samples.changed[0].key == 1 and differs.samples.changed[0].columns == ["name"]
    assert differs.samples.missing_in_target == [7]
    duck.dispose()


# --- data generation: bulk load, and a second run swapping the tables in place


def test_generated_warehouse_is_identical_to_duckdbs_and_reloads_in_place(
    maria: Engine, tmp_path: Path
):
    duck = duckdb_engine(tmp_path / "datagen.duckdb")
    plan = build_plan("Healthcare", 600, 5)
    generate_warehouse(plan, [Target("maria", maria), Target("duck", duck)])
    tables = [t.name for t in get_schema("Healthcare").tables]
    first = {t: datagen_fingerprint(maria, "Healthcare", t) for t in tables}
    assert first == {t: datagen_fingerprint(duck, "Healthcare", t) for t in tables}
    other = generate_warehouse(build_plan("Healthcare", 300, 6), [Target("maria", maria)])
    assert all(t["rows"] for t in other["targets"][0]["tables"].values())
    again = {t: datagen_fingerprint(maria, "Healthcare", t) for t in tables}
    assert again != first and all(again[t]["rows"] for t in tables)
    with maria.connect() as conn:  # no staging table left behind by the swaps
        left = conn.execute(
            text(
                "SELECT COUNT(*) FROM information_schema.tables "
                "WHERE table_schema IN ('dim', 'fact') AND table_name LIKE :staging"
            ),
            {"staging": f"%{STAGING_MARK}%"},
        ).scalar()
    assert left == 0
    duck.dispose()


# --- metadata catalog


def test_catalog_matches_known_ddl(mariadb_url: str, maria: Engine):
    schema = "Sales_known"
    _database(maria, schema)
    # the known DDL quotes names the ANSI way
    ansi = create_engine(
        mariadb_url, connect_args={"init_command": "SET SESSION sql_mode = 'ANSI_QUOTES'"}
    )
    create_known_schema(ansi, schema)
    ansi.dispose()
    catalog = extract_catalog(maria, connection="maria", schema=schema, exact_counts=True)
    assert catalog.dialect == "mariadb" and catalog.database == "ombudsman"
    check_known_catalog(catalog, schema, exact=True)
    assert {n: catalog.table(schema, n).row_count for n in KNOWN_ROWS} == KNOWN_ROWS
    everything = extract_catalog(maria, connection="maria")
    assert schema in everything.schemas
    assert not {"mysql", "information_schema", "performance_schema", "sys"} & set(
        everything.schemas
    )


# --- the proof of correctness: planted drift found exactly, in both directions


def test_mariadb_to_duckdb_reports_exactly_the_planted_differences(
    tmp_path: Path, mariadb_url: str
):
    root = tmp_path / "projects"
    folder = _project(root, "Retail", mariadb_url, "duckdb:///warehouse/target.duckdb")
    (folder / "warehouse").mkdir(exist_ok=True)
    _prove(root, "Retail", folder)


def test_postgresql_to_mariadb_reports_exactly_the_planted_differences(
    tmp_path: Path, mariadb_url: str, postgres_url: str
):
    database = f"proof_maria_{tmp_path.name[-6:].replace('-', '_')}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    root = tmp_path / "projects"
    source = postgres_url.rsplit("/", 1)[0] + f"/{database}"
    folder = _project(root, "Finance", source, mariadb_url)
    _prove(root, "Finance", folder)


# --- cancel and transient errors


def test_interrupt_stops_a_running_statement(maria: Engine):
    dialect = dialect_for(maria)
    outcome: dict[str, Any] = {}
    with maria.connect() as conn:
        raw = conn.connection.dbapi_connection
        thread_id = raw.thread_id()

        def run() -> None:
            try:
                outcome["value"] = conn.exec_driver_sql("SELECT SLEEP(600)").scalar()
            except Exception as exc:  # a killed query may also raise, depending on the server
                outcome["error"] = exc

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        with maria.connect() as watcher:

            def sleeping() -> bool:
                state = watcher.execute(
                    text("SELECT info FROM information_schema.processlist WHERE id = :id"),
                    {"id": thread_id},
                ).scalar()
                watcher.rollback()
                return state is not None and "SLEEP" in str(state)

            assert wait_until(sleeping, timeout=120, interval=0.05)
        dialect.interrupt(raw, None)
        worker.join(timeout=120)
        assert not worker.is_alive()
        # SLEEP returns 1 when it is interrupted (0 only after sleeping the whole time)
        assert outcome.get("value") == 1 or "interrupted" in str(outcome.get("error", ""))


def test_transient_driver_errors_are_told_apart(maria: Engine, mariadb_url: str):
    dialect = dialect_for(maria)
    with pytest.raises(Exception) as refused:
        port = int(mariadb_url.rsplit(":", 1)[1].split("/")[0])
        pymysql.connect(host="127.0.0.1", port=port + 1 if port < 65000 else port - 1, user="x")
    assert dialect.is_transient(refused.value) and is_transient(refused.value)
    with pytest.raises(Exception) as syntax, maria.connect() as conn:
        conn.exec_driver_sql("SELEKT 1")
    assert not dialect.is_transient(syntax.value) and not is_transient(syntax.value)
    with pytest.raises(Exception) as missing, maria.connect() as conn:
        conn.exec_driver_sql("SELECT * FROM no_such_table")
    assert not dialect.is_transient(missing.value)
    # the server drops a session (restart, failover, KILL): lost connection / gone away
    with maria.connect() as conn:
        victim = conn.connection.dbapi_connection.thread_id()
        with maria.connect() as killer:
            killer.exec_driver_sql(f"KILL CONNECTION {int(victim)}")
        with pytest.raises(Exception) as lost:
            conn.exec_driver_sql("SELECT 1").scalar()
    assert dialect.is_transient(lost.value) and is_transient(lost.value)
    for code, transient in ((1213, True), (1205, True), (2006, True), (1064, False)):
        error = pymysql.err.OperationalError(code, "message")
        assert dialect.is_transient(error) is transient
