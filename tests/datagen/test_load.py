"""Loads: identical data on every target, valid keys in the database, atomic tables, if_exists."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pyodbc
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

from prefect_ombudsman.datagen import (
    Target,
    build_plan,
    generate_warehouse,
    get_schema,
    iter_chunks,
    sa_table,
)
from prefect_ombudsman.datagen.verify import stored_digest
from prefect_ombudsman.dialects.base import Dialect, dialect_for
from prefect_ombudsman.dialects.sqlserver import SQLServerDialect
from prefect_ombudsman.errors import ConfigurationError, OmbudsmanError, OperationCancelled

ROWS = 3000


def _fingerprints(engine, schema_type: str) -> dict[str, dict]:
    return {t.name: stored_digest(engine, schema_type, t) for t in get_schema(schema_type).tables}


def _count(engine, schema_type: str, table: str) -> int:
    spec = get_schema(schema_type).table(table)
    tbl = sa_table(spec, dialect_for(engine))
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(tbl)).scalar_one()


def test_identical_tables_on_sqlite_duckdb_postgres_and_across_runs(
    sqlite_engine, duckdb_engine, pg_engine
):
    plan = build_plan("Retail", ROWS, 42)
    targets = [
        Target("source", sqlite_engine),
        Target("target", duckdb_engine),
        Target("pg", pg_engine),
    ]
    result = generate_warehouse(plan, targets)
    assert result["seed"] == 42 and result["rows_generated"] == sum(plan.sizes.values())
    assert [t["target"] for t in result["targets"]] == ["source", "target", "pg"]
    assert result["targets"][1]["tables"]["fact.fact_sales"]["rows"] == ROWS
    assert result["targets"][0]["tables"]["fact_sales"]["rows"] == ROWS  # SQLite has no schemas
    first = _fingerprints(sqlite_engine, "Retail")
    assert first == _fingerprints(duckdb_engine, "Retail") == _fingerprints(pg_engine, "Retail")
    assert first["fact_sales"]["rows"] == ROWS
    again = generate_warehouse(build_plan("Retail", ROWS, 42), targets[:1])
    assert [t["content_sha256"] for t in again["tables"]] == [
        t["content_sha256"] for t in result["tables"]
    ]
    assert _fingerprints(sqlite_engine, "Retail") == first
    other = generate_warehouse(build_plan("Retail", ROWS, 43), targets[:1])
    assert other["tables"][4]["content_sha256"] != result["tables"][4]["content_sha256"]


@pytest.mark.parametrize("schema_type", ["Finance", "Healthcare"])
def test_foreign_keys_are_valid_in_the_database(schema_type: str, duckdb_engine):
    generate_warehouse(build_plan(schema_type, ROWS, 8), [Target("t", duckdb_engine)])
    schema = get_schema(schema_type)
    dialect = dialect_for(duckdb_engine)
    with duckdb_engine.connect() as connection:
        for fact in (t for t in schema.tables if t.schema == "fact"):
            f = sa_table(fact, dialect)
            for column in fact.foreign_keys:
                ref_name, _, ref_column = column.references.partition(".")
                d = sa_table(schema.table(ref_name), dialect)
                orphans = connection.execute(
                    sa.select(sa.func.count())
                    .select_from(f.outerjoin(d, f.c[column.name] == d.c[ref_column]))
                    .where(d.c[ref_column].is_(None))
                ).scalar_one()
                assert orphans == 0, (fact.name, column.name)


def test_batch_size_does_not_change_what_is_loaded(sqlite_engine, duckdb_engine):
    generate_warehouse(
        build_plan("Healthcare", 2500, 5, table_name="fact_visits"),
        [Target("a", sqlite_engine)],
        batch_rows=333,
    )
    generate_warehouse(
        build_plan("Healthcare", 2500, 5, table_name="fact_visits"), [Target("b", duckdb_engine)]
    )
    assert stored_digest(sqlite_engine, "Healthcare", "fact_visits") == stored_digest(
        duckdb_engine, "Healthcare", "fact_visits"
    )


def test_if_exists_fail_refuses_before_loading_and_append_adds_rows(duckdb_engine):
    target = Target("t", duckdb_engine)
    generate_warehouse(build_plan("Finance", 500, 1, table_name="fact_balances"), [target])
    before = stored_digest(duckdb_engine, "Finance", "fact_balances")
    with pytest.raises(
        ConfigurationError,
        match=r"fact\.fact_balances already exists in target 't' \(if_exists=fail\)",
    ):
        generate_warehouse(build_plan("Finance", 500, 2), [target], if_exists="fail")
    assert stored_digest(duckdb_engine, "Finance", "fact_balances") == before
    assert not sa.inspect(duckdb_engine).has_table(
        "dim_account", schema="dim"
    )  # nothing was loaded
    # append of the same keys breaks the primary key: the load fails and the table stays as it was
    with pytest.raises(OmbudsmanError, match="target 't', table fact.fact_balances"):
        generate_warehouse(
            build_plan("Finance", 500, 2, table_name="fact_balances"), [target], if_exists="append"
        )
    assert stored_digest(duckdb_engine, "Finance", "fact_balances") == before
    # append into a table holding other keys
    with duckdb_engine.begin() as connection:
        connection.exec_driver_sql("UPDATE fact.fact_balances SET balance_id = balance_id + 10000")
    generate_warehouse(
        build_plan("Finance", 500, 1, table_name="fact_balances"), [target], if_exists="append"
    )
    assert _count(duckdb_engine, "Finance", "fact_balances") == 500 + 500


class _Boom(RuntimeError):
    pass


def _fail_on_second_batch(monkeypatch, cls: type[Dialect]) -> None:
    original = cls.bulk_insert
    calls = {"n": 0}

    def bulk_insert(self, connection, table, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise _Boom("disk full (injected)")
        return original(self, connection, table, batch)

    monkeypatch.setattr(cls, "bulk_insert", bulk_insert)


DUCKDB_BATCHED = (
    "duckdb_engine:batched"  # a table above max_rows_per_transaction: committed staging
)


def _engine(request, monkeypatch, engine_fixture: str):
    name, _, mode = engine_fixture.partition(":")
    engine = request.getfixturevalue(name)
    if mode == "batched":
        monkeypatch.setattr(type(dialect_for(engine)), "max_rows_per_transaction", 1000)
    return engine


@pytest.mark.parametrize(
    "engine_fixture",
    ["sqlite_engine", "duckdb_engine", DUCKDB_BATCHED, "pg_engine", "snowflake_engine"],
)
def test_a_failure_mid_load_leaves_the_old_table(
    engine_fixture, request, monkeypatch, staging_tables
):
    engine = _engine(request, monkeypatch, engine_fixture)
    target = Target("t", engine)
    generate_warehouse(build_plan("Retail", 1000, 1, table_name="fact_inventory"), [target])
    before = stored_digest(engine, "Retail", "fact_inventory")
    _fail_on_second_batch(monkeypatch, type(dialect_for(engine)))
    with pytest.raises(
        OmbudsmanError, match=r"target 't', table (fact\.)?fact_inventory: _Boom: disk full"
    ):
        generate_warehouse(
            build_plan("Retail", 2500, 2, table_name="fact_inventory"), [target], batch_rows=1000
        )
    assert stored_digest(engine, "Retail", "fact_inventory") == before
    assert staging_tables(engine) == []


def test_a_cancel_between_chunks_leaves_the_old_tables(
    sqlite_engine, duckdb_engine, staging_tables
):
    targets = [Target("s", sqlite_engine), Target("t", duckdb_engine)]
    generate_warehouse(build_plan("Retail", 1000, 1, table_name="fact_sales"), targets)
    before = [stored_digest(t.engine, "Retail", "fact_sales") for t in targets]
    calls = {"n": 0}

    def check_cancelled() -> None:
        calls["n"] += 1
        if calls["n"] > 4:
            raise OperationCancelled("operation x stopped: job cancelled")

    with pytest.raises(OperationCancelled):
        generate_warehouse(
            build_plan("Retail", 9000, 2, table_name="fact_sales"),
            targets,
            batch_rows=1000,
            check_cancelled=check_cancelled,
        )
    assert [stored_digest(t.engine, "Retail", "fact_sales") for t in targets] == before
    assert staging_tables(sqlite_engine) == staging_tables(duckdb_engine) == []


_CHILD = textwrap.dedent(
    """
    import sys
    from prefect_ombudsman.connections import engine_for
    from prefect_ombudsman.datagen import Target, build_plan, generate_warehouse
    from prefect_ombudsman.dialects.base import dialect_for

    engine = engine_for(sys.argv[1])
    cls = type(dialect_for(engine))
    original = cls.bulk_insert
    if len(sys.argv) > 2:
        cls.max_rows_per_transaction = int(sys.argv[2])

    def slow(self, connection, table, batch):
        original(self, connection, table, batch)
        print("loaded a batch", flush=True)
        sys.stdin.readline()  # held mid-load until the test kills this process (it never writes)

    cls.bulk_insert = slow
    generate_warehouse(build_plan("Retail", 5000, 2, table_name="fact_sales"), [Target("t", engine)], batch_rows=1000)
    """
)


@pytest.mark.parametrize(
    "engine_fixture", ["sqlite_engine", "duckdb_engine", DUCKDB_BATCHED, "pg_engine"]
)
def test_a_killed_load_leaves_the_old_table(engine_fixture, request, monkeypatch, staging_tables):
    engine = _engine(request, monkeypatch, engine_fixture)
    batched = engine_fixture.endswith(":batched")
    generate_warehouse(
        build_plan("Retail", 1000, 1, table_name="fact_sales"), [Target("t", engine)]
    )
    before = stored_digest(engine, "Retail", "fact_sales")
    engine.dispose()  # DuckDB allows one process per file
    url = engine.url.render_as_string(hide_password=False)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url, *(["1000"] if batched else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()
        assert line.startswith("loaded a batch"), child.stderr.read()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert stored_digest(engine, "Retail", "fact_sales") == before
    if batched:  # the committed staging table outlives the process; the next load sweeps it,
        # even one small enough for a single transaction (no committed staging of its own)
        assert len(staging_tables(engine)) == 1
        generate_warehouse(
            build_plan("Retail", 800, 3, table_name="fact_sales"), [Target("t", engine)]
        )
        assert stored_digest(engine, "Retail", "fact_sales")["rows"] == 800
    assert staging_tables(engine) == []


@pytest.mark.parametrize("engine_fixture", ["sqlite_engine", "duckdb_engine", "pg_engine"])
def test_the_next_load_drops_staging_tables_a_killed_load_left(
    engine_fixture, request, staging_tables
):
    engine = request.getfixturevalue(engine_fixture)
    dialect = dialect_for(engine)
    plan = build_plan("Retail", 1000, 1, table_name="fact_sales")
    generate_warehouse(plan, [Target("t", engine)])
    expected = stored_digest(engine, "Retail", "fact_sales")
    schema = dialect.datagen_schema(get_schema("Retail").table("fact_sales").schema)
    leftover = "fact_sales__stg_0badc0de"
    kept = ["fact_sales__stg_backup", "fact_inventory__stg_12345678"]  # not this table's staging
    with engine.begin() as connection:  # what a killed committed-staging load leaves
        for name in [leftover, *kept]:
            connection.exec_driver_sql(
                f"CREATE TABLE {dialect.qualified(schema, name)} AS SELECT * FROM "
                f"{dialect.qualified(schema, 'fact_sales')}"
            )
    assert set(staging_tables(engine)) == {leftover, *kept}
    generate_warehouse(plan, [Target("t", engine)])  # one transaction: no staging of its own
    assert set(staging_tables(engine)) == set(kept)
    assert stored_digest(engine, "Retail", "fact_sales") == expected
    with engine.begin() as connection:
        for name in kept:
            connection.exec_driver_sql(f"DROP TABLE {dialect.qualified(schema, name)}")


def test_unreachable_target_and_missing_permission_are_clear_errors(pg_url, pg_engine):
    with pytest.raises(
        OmbudsmanError,
        match=r"target 'down', table \(schemas\): OperationalError: .*(refused|connect)",
    ):
        generate_warehouse(
            build_plan("Retail", 10, 1),
            [
                Target(
                    "down",
                    sa.create_engine(
                        "postgresql+psycopg://postgres@127.0.0.1:1/x",
                        connect_args={"connect_timeout": 2},
                    ),
                )
            ],
        )
    with pg_engine.begin() as connection:
        connection.exec_driver_sql("DROP ROLE IF EXISTS dg_reader")
        connection.exec_driver_sql("CREATE ROLE dg_reader LOGIN")
        connection.exec_driver_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    reader = sa.create_engine(pg_url.replace("postgres@", "dg_reader@"))
    try:
        with pytest.raises(OmbudsmanError, match="target 'readonly'.*permission denied"):
            generate_warehouse(build_plan("Retail", 10, 1), [Target("readonly", reader)])
    finally:
        reader.dispose()


def test_snowflake_loads_through_put_and_copy_and_matches_sqlite(snowflake_engine, sqlite_engine):
    targets = [Target("source", sqlite_engine), Target("snow", snowflake_engine)]
    plan = build_plan("Finance", 1500, 21)
    result = generate_warehouse(plan, targets)
    assert result["targets"][1]["tables"]["fact.fact_transactions"]["rows"] == 1500
    for table in ("dim_account", "dim_merchant", "fact_transactions", "fact_balances"):
        assert stored_digest(snowflake_engine, "Finance", table) == stored_digest(
            sqlite_engine, "Finance", table
        )
    # a second load replaces the table (SWAP WITH where Snowflake has it, drop + rename on fakesnow)
    generate_warehouse(build_plan("Finance", 700, 22, table_name="fact_balances"), [targets[1]])
    assert stored_digest(snowflake_engine, "Finance", "fact_balances")["rows"] == 700
    with snowflake_engine.connect() as connection:
        names = {row[1].lower() for row in connection.exec_driver_sql("SHOW TABLES IN SCHEMA FACT")}
    assert {"fact_transactions", "fact_balances"} <= names
    assert not [n for n in names if "__stg_" in n]


def test_sqlserver_fast_executemany_loads_through_pyodbc(pg_engine, postgres_port):
    """The SQL Server loader's pyodbc path, for real through unixODBC, against PostgreSQL's driver."""
    assert "PostgreSQL Unicode" in pyodbc.drivers(), (
        "odbc-postgresql must be installed (see .ci/run)"
    )
    plan = build_plan("Healthcare", 1200, 31, table_name="fact_medications")
    spec = plan.schema.table("fact_medications")
    generate_warehouse(plan, [Target("pg", pg_engine)])  # the reference copy, through COPY
    mssql_dialect = mssql.dialect()
    mssql_dialect.server_version_info = (16, 0, 1000)
    mssql_dialect._setup_version_attributes()
    sqlserver = SQLServerDialect(mssql_dialect)
    odbc_table = sa_table(spec, sqlserver, name="fact_medications_odbc")
    with pg_engine.begin() as connection:  # same columns, created by PostgreSQL
        sa_table(spec, dialect_for(pg_engine), name="fact_medications_odbc").create(connection)
    dbname = pg_engine.url.database
    connection = pyodbc.connect(
        f"DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT={postgres_port};DATABASE={dbname};UID=postgres",
        autocommit=False,
    )
    try:
        for batch in iter_chunks(plan, spec):
            sqlserver.fast_executemany(connection, odbc_table, batch, rows_per_call=500)
        connection.commit()
    finally:
        connection.close()
    reference = stored_digest(pg_engine, "Healthcare", spec)
    assert reference["rows"] == 1200
    assert stored_digest(pg_engine, "Healthcare", spec, name="fact_medications_odbc") == reference


def test_targets_must_be_distinct(sqlite_engine):
    with pytest.raises(ConfigurationError, match="named twice"):
        generate_warehouse(
            build_plan("Retail", 10, 1), [Target("a", sqlite_engine), Target("b", sqlite_engine)]
        )
