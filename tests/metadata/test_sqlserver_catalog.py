"""SQL Server catalog queries: compiled with the mssql dialect, parsed as T-SQL, and the portable
INFORMATION_SCHEMA ones run through pyodbc (psqlODBC against PostgreSQL: no T-SQL server here)."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pyodbc
import pytest
import sqlglot
from known_schema import create_known_schema
from sqlalchemy import text
from sqlalchemy.dialects import mssql

from prefect_ombudsman.connections import engine_for
from prefect_ombudsman.dialects import engines as dc
from prefect_ombudsman.dialects.base import dialect_for
from prefect_ombudsman.metadata.extract import KINDS, catalog_statements

PORTABLE = ("schemas", "columns", "primary_keys")


def _compiled(kind: str, schemas: list[str]) -> tuple[str, list]:
    """The statement as pyodbc receives it from SQLAlchemy's mssql+pyodbc dialect."""
    (stmt,) = catalog_statements(dialect_for("sqlserver"), kind)
    if "schemas" in stmt._bindparams:  # noqa: SLF001 - the expanding parameter of the statement
        stmt = stmt.bindparams(schemas=schemas)
    dialect = mssql.pyodbc.dialect(paramstyle="qmark")  # what pyodbc gives a real engine
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = [compiled.params[name] for name in compiled.positiontup or []]
    return str(compiled), params


@pytest.mark.parametrize("kind", KINDS)
def test_every_sqlserver_catalog_query_compiles_and_parses_as_tsql(kind: str):
    sql, params = _compiled(kind, ["dbo", "Sales"])
    if kind not in ("database", "schemas"):
        assert "IN (?, ?)" in sql and params == ["dbo", "Sales"]
    parsed = sqlglot.parse_one(sql.replace("?", "NULL"), read="tsql")
    assert parsed.find(sqlglot.exp.Select) is not None


def test_sqlserver_count_uses_count_big():
    expr = dialect_for("sqlserver").catalog_count()
    assert str(expr.compile(dialect=mssql.dialect())).lower() == "count_big(*)"


@pytest.fixture
def odbc_to_postgres(postgres_port: int):
    assert "PostgreSQL Unicode" in pyodbc.drivers(), (
        "odbc-postgresql must be installed (see .ci/run)"
    )
    spec = dc.sqlserver_spec(
        name="odbc-pg",
        odbc_connect=f"DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT={postgres_port};DATABASE=postgres;UID=postgres;CommLog=0",
    )
    conn = dc.open_odbc(spec)
    yield conn
    conn.close()
    for log in Path(tempfile.gettempdir()).glob(
        f"psqlodbc_*{os.getpid()}.log"
    ):  # Debian's CommLog=1
        log.unlink(missing_ok=True)


def _rows(conn, kind: str, schemas: list[str]) -> list[dict]:
    sql, params = _compiled(kind, schemas)
    cur = conn.cursor()
    cur.execute(sql, params)
    names = [d[0].lower() for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_information_schema_queries_run_through_pyodbc(postgres_url: str, odbc_to_postgres):
    schema = f"Mssql_{uuid.uuid4().hex[:6]}"
    with engine_for(postgres_url).begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    create_known_schema(engine_for(postgres_url), schema)

    assert schema in {r["schema_name"] for r in _rows(odbc_to_postgres, "schemas", [])}

    columns = [
        r for r in _rows(odbc_to_postgres, "columns", [schema]) if r["table_name"] == "Customer"
    ]
    by_name = {r["column_name"]: r for r in columns}
    assert sorted(by_name, key=lambda n: by_name[n]["ordinal_position"]) == [
        "customer_id",
        "RegionCode",
        "country_code",
        "Full Name",
        "balance",
    ]
    assert by_name["Full Name"]["max_length"] == 60 and by_name["Full Name"]["is_nullable"] == "NO"
    assert (by_name["balance"]["numeric_precision"], by_name["balance"]["numeric_scale"]) == (12, 2)
    assert by_name["customer_id"]["numeric_precision"] is None  # only decimals carry precision

    keys = sorted(
        (r["table_name"], r["key_position"], r["column_name"])
        for r in _rows(odbc_to_postgres, "primary_keys", [schema])
    )
    assert keys == [
        ("Customer", 1, "customer_id"),
        ("Region", 1, "RegionCode"),
        ("Region", 2, "country_code"),
        ("orders", 1, "order_id"),
        ("orders", 2, "line_no"),
    ]
