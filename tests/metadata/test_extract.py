"""Catalog extraction against known DDL on SQLite, DuckDB, PostgreSQL and Snowflake (fakesnow)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from known_schema import ROWS, check_known_catalog, create_known_schema
from pydantic import SecretStr
from sqlalchemy import create_engine, event, text

from prefect_ombudsman.connections import engine_for
from prefect_ombudsman.dialects.base import GenericDialect
from prefect_ombudsman.dialects.engines import snowflake_spec, spec_from_url
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.metadata.extract import extract_catalog, split_type


def _counting(engine) -> list[str]:
    """Statements the engine runs from now on (to prove one query per kind)."""
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_sqlite_catalog_matches_known_ddl(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'known.db'}")
    create_known_schema(engine, None)
    statements = _counting(engine)
    catalog = extract_catalog(engine, connection="known")
    check_known_catalog(catalog, "main")
    assert catalog.dialect == "sqlite" and catalog.database.endswith("known.db")
    # database, schemas, tables, columns (with primary-key positions), foreign keys
    assert len(statements) == 5
    customer = catalog.table("main", "customer")  # case-insensitive lookup
    assert customer is not None and customer.column("full name").max_length == 60


def test_exact_counts_are_flagged_and_batched(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'known.db'}")
    create_known_schema(engine, None)
    statements = _counting(engine)
    catalog = extract_catalog(engine, connection="known", exact_counts=True)
    check_known_catalog(catalog, "main", exact=True)
    assert len(statements) == 6  # the five catalog queries plus one UNION ALL of three COUNT(*)


def test_duckdb_catalog_matches_known_ddl(tmp_path: Path):
    engine = create_engine(f"duckdb:///{tmp_path / 'known.duckdb'}")
    with engine.begin() as conn:
        conn.execute(text('CREATE SCHEMA "Sales"'))
    create_known_schema(engine, "Sales")
    catalog = extract_catalog(engine, connection="known", schema="sales", exact_counts=True)
    assert catalog.schemas == ["Sales"] and catalog.scope == "schema"
    check_known_catalog(catalog, "Sales", exact=True)
    estimates = extract_catalog(engine, connection="known", schema="Sales")
    check_known_catalog(estimates, "Sales")
    assert (
        estimates.table("Sales", "orders").row_count == ROWS["orders"]
    )  # duckdb_tables().estimated_size
    engine.dispose()


def test_postgresql_catalog_matches_known_ddl(postgres_url: str):
    engine = engine_for(postgres_url)
    schema = f"Sales_{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    create_known_schema(engine, schema)
    catalog = extract_catalog(engine, connection="pg", schema=schema, exact_counts=True)
    check_known_catalog(catalog, schema, exact=True)
    customer = catalog.table(schema, "Customer")
    assert customer.column("Full Name").data_type == "CHARACTER VARYING"
    assert customer.column("Full Name").max_length == 60
    assert customer.column("country_code").max_length == 2
    with engine.begin() as conn:
        conn.execute(text(f'ANALYZE "{schema}".orders'))
    estimated = extract_catalog(engine, connection="pg", schema=schema)
    check_known_catalog(estimated, schema)
    assert estimated.table(schema, "orders").row_count == ROWS["orders"]
    everything = extract_catalog(engine, connection="pg")
    assert schema in everything.schemas and "pg_catalog" not in everything.schemas
    assert "information_schema" not in everything.schemas


def test_snowflake_catalog_through_fakesnow_server(fakesnow_server):
    spec = snowflake_spec(
        name="fs",
        account="fakesnow",
        user="fake",
        password=SecretStr("snow"),
        database="MDDB",
        schema="SALES",
        host=fakesnow_server["host"],
        port=fakesnow_server["port"],
        protocol="http",
    )
    engine = engine_for(spec)
    with engine.begin() as conn:
        conn.execute(text("CREATE DATABASE IF NOT EXISTS mddb"))
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS mddb.sales"))
        conn.execute(text("USE SCHEMA mddb.sales"))
    create_known_schema(engine, "SALES")
    catalog = extract_catalog(engine, connection="fs", schema="sales", exact_counts=True)
    assert catalog.database == "MDDB" and catalog.schemas == ["SALES"]
    check_known_catalog(catalog, "SALES", fold=str.upper, exact=True)
    assert catalog.table("SALES", "ORDERS").column("AMOUNT").data_type == "NUMBER"


def test_table_names_missing_one_is_reported_and_rest_extracted(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'known.db'}")
    create_known_schema(engine, None)
    catalog = extract_catalog(
        engine, connection="known", table_names=["customer", "main.ORDERS", "no_such_table"]
    )
    assert [t.name for t in catalog.tables] == ["Customer", "orders"]
    assert catalog.scope == "tables"
    assert [(p.kind, p.table) for p in catalog.problems] == [("missing_table", "no_such_table")]
    # the foreign key to a table outside the selection is still described
    assert catalog.table(None, "Customer").foreign_keys[0].referred_table == "Region"


def test_missing_schema_is_a_clear_error(tmp_path: Path):
    engine = create_engine(f"duckdb:///{tmp_path / 'x.duckdb'}")
    with pytest.raises(ConfigurationError, match=r"schema 'nope' not found .* its schemas: main"):
        extract_catalog(engine, connection="x", schema="nope")
    engine.dispose()


def test_postgresql_tables_without_privileges_are_reported_per_table(postgres_url: str):
    admin = engine_for(postgres_url)
    schema, role = f"priv_{uuid.uuid4().hex[:6]}", f"reader_{uuid.uuid4().hex[:6]}"
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
        conn.execute(text(f"CREATE TABLE {schema}.open_t (id int primary key)"))
        conn.execute(text(f"CREATE TABLE {schema}.secret_t (id int primary key, v text)"))
        conn.execute(text(f"INSERT INTO {schema}.open_t VALUES (1), (2)"))
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
        conn.execute(text(f"GRANT SELECT ON {schema}.open_t TO {role}"))
    url = postgres_url.replace("postgres@", f"{role}@", 1)
    engine = engine_for(spec_from_url(url))
    catalog = extract_catalog(engine, connection="reader", schema=schema, exact_counts=True)
    by_name = {t.name: t for t in catalog.tables}
    assert set(by_name) == {"open_t", "secret_t"}
    assert by_name["open_t"].row_count == 2 and by_name["open_t"].row_count_exact
    assert [c.name for c in by_name["secret_t"].columns] == ["id", "v"]  # structure still listed
    assert not by_name["secret_t"].row_count_exact
    assert [(p.kind, p.table) for p in catalog.problems] == [
        ("insufficient_privileges", "secret_t")
    ]


def test_postgresql_count_failure_is_reported_not_fatal(postgres_url: str):
    """A table that fails its COUNT(*) (here: a view-free table we revoke mid-way) fails alone."""
    admin = engine_for(postgres_url)
    schema = f"cnt_{uuid.uuid4().hex[:6]}"
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
        for name in ("a", "b", "c"):
            conn.execute(text(f"CREATE TABLE {schema}.{name} (id int)"))
        conn.execute(text(f"INSERT INTO {schema}.b VALUES (1)"))
        # a foreign table whose server is unreachable cannot be counted, yet it is listed
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgres_fdw"))
        conn.execute(
            text(
                f"CREATE SERVER {schema}_srv FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '1')"
            )
        )
        conn.execute(text(f"CREATE USER MAPPING FOR CURRENT_USER SERVER {schema}_srv"))
        conn.execute(text(f"CREATE FOREIGN TABLE {schema}.remote (id int) SERVER {schema}_srv"))
    catalog = extract_catalog(admin, connection="pg", schema=schema, exact_counts=True)
    counts = {t.name: (t.row_count, t.row_count_exact) for t in catalog.tables}
    assert counts == {"a": (0, True), "b": (1, True), "c": (0, True), "remote": (None, False)}
    assert [(p.kind, p.table) for p in catalog.problems] == [("row_count_failed", "remote")]


def test_reflection_fallback_agrees_with_catalog_queries(tmp_path: Path):
    """A database without catalog SQL goes through get_multi_*; both paths describe the same keys."""
    engine = create_engine(f"sqlite:///{tmp_path / 'known.db'}")
    create_known_schema(engine, None)
    fast = extract_catalog(engine, connection="known")
    reflected = extract_catalog(engine, connection="known", dialect=GenericDialect(engine.dialect))

    def shape(catalog):
        return {
            (t.name, t.type): (
                [c.name for c in t.columns],
                t.primary_key,
                [(f.columns, f.referred_table, f.referred_columns) for f in t.foreign_keys],
            )
            for t in catalog.tables
        }

    assert shape(fast) == shape(reflected)


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("varchar(20)", ("VARCHAR", 20, None, None)),
        ("NVARCHAR(MAX)", ("NVARCHAR", -1, None, None)),
        ("numeric(12, 2)", ("NUMERIC", None, 12, 2)),
        ("DECIMAL(10)", ("DECIMAL", None, 10, 0)),
        ("timestamp(3) with time zone", ("TIMESTAMP WITH TIME ZONE", None, None, None)),
        ("character varying", ("CHARACTER VARYING", None, None, None)),
        ("", (None, None, None, None)),
    ],
)
def test_split_type(declared: str, expected: tuple):
    assert split_type(declared) == expected
