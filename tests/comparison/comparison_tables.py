"""Create one test table with the same rows on SQLite, DuckDB, PostgreSQL or Snowflake (fakesnow)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import text
from sqlalchemy.engine import Engine

from prefect_ombudsman.dialects.engines import get_engine, snowflake_spec, spec_from_url

# column kind -> DDL type per engine
DDL = {
    "int": {
        "sqlite": "INTEGER",
        "duckdb": "INTEGER",
        "postgresql": "INTEGER",
        "snowflake": "INTEGER",
    },
    "bigint": {
        "sqlite": "BIGINT",
        "duckdb": "BIGINT",
        "postgresql": "BIGINT",
        "snowflake": "NUMBER(19,0)",
    },
    "text": {"sqlite": "TEXT", "duckdb": "VARCHAR", "postgresql": "TEXT", "snowflake": "VARCHAR"},
    "char5": {
        "sqlite": "CHAR(5)",
        "duckdb": "VARCHAR",
        "postgresql": "CHAR(5)",
        "snowflake": "CHAR(5)",
    },
    "dec": {
        "sqlite": "DECIMAL(12,3)",
        "duckdb": "DECIMAL(12,3)",
        "postgresql": "NUMERIC(12,3)",
        "snowflake": "NUMBER(12,3)",
    },
    "float": {
        "sqlite": "REAL",
        "duckdb": "DOUBLE",
        "postgresql": "DOUBLE PRECISION",
        "snowflake": "FLOAT",
    },
    "bool": {
        "sqlite": "BOOLEAN",
        "duckdb": "BOOLEAN",
        "postgresql": "BOOLEAN",
        "snowflake": "BOOLEAN",
    },
    "date": {"sqlite": "DATE", "duckdb": "DATE", "postgresql": "DATE", "snowflake": "DATE"},
    "ts": {
        "sqlite": "DATETIME",
        "duckdb": "TIMESTAMP",
        "postgresql": "TIMESTAMP",
        "snowflake": "TIMESTAMP_NTZ",
    },
    "tstz": {
        "sqlite": "TIMESTAMP",
        "duckdb": "TIMESTAMPTZ",
        "postgresql": "TIMESTAMPTZ",
        "snowflake": "TIMESTAMP_TZ",
    },
}


def sqlite_engine(path: Path) -> Engine:
    return get_engine(spec_from_url(f"sqlite:///{path}"))


def duckdb_engine(path: Path) -> Engine:
    return get_engine(spec_from_url(f"duckdb:///{path}"))


def fakesnow_engine(server: dict[str, Any], database: str = "CMP", schema: str = "S1") -> Engine:
    spec = snowflake_spec(
        name=f"fakesnow-{database}",
        account="fakesnow",
        user="fake",
        password="snow",
        database=database,
        schema=schema,
        host=str(server["host"]),
        port=int(server["port"]),  # type: ignore[arg-type]
        protocol="http",
    )
    bootstrap = get_engine(spec)
    with bootstrap.begin() as conn:
        conn.execute(text(f"create database if not exists {database}"))
        conn.execute(text(f"create schema if not exists {database}.{schema}"))
    return bootstrap


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return value


def create_table(
    engine: Engine,
    name: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Any]],
    *,
    primary_key: Sequence[str] = (),
) -> None:
    """(Re)create `name` with `columns` [(name, kind of DDL)] and load `rows` on `engine`."""
    kind = engine.dialect.name
    cols = ", ".join(f"{c} {DDL[k][kind]}" for c, k in columns)
    if primary_key:
        cols += f", PRIMARY KEY ({', '.join(primary_key)})"
    marks = ", ".join("?" for _ in columns)
    if kind == "sqlite":
        raw = sqlite3.connect(engine.url.database)
        raw.execute(f"DROP TABLE IF EXISTS {name}")
        raw.execute(f"CREATE TABLE {name} ({cols})")
        raw.executemany(
            f"INSERT INTO {name} VALUES ({marks})", [[_sqlite_value(v) for v in r] for r in rows]
        )
        raw.commit()
        raw.close()
        return
    if kind == "duckdb":
        engine.dispose()  # one process may not hold the file twice with different settings
        raw = duckdb.connect(engine.url.database)
        raw.execute(f"DROP TABLE IF EXISTS {name}")
        raw.execute(f"CREATE TABLE {name} ({cols})")
        if rows:
            raw.executemany(f"INSERT INTO {name} VALUES ({marks})", [list(r) for r in rows])
        raw.close()
        return
    params = ", ".join(f":p{i}" for i in range(len(columns)))
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        conn.execute(text(f"CREATE TABLE {name} ({cols})"))
        if rows:
            conn.execute(
                text(f"INSERT INTO {name} VALUES ({params})"),
                [{f"p{i}": v for i, v in enumerate(r)} for r in rows],
            )
