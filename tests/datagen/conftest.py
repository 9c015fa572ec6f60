"""Databases for the data-generation tests: each module gets its own PostgreSQL database and
fakesnow database, so `dim`/`fact` tables never collide with other test areas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from prefect_ombudsman.connections import engine_for
from prefect_ombudsman.dialects import engines as dc


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Engine:
    return engine_for(f"sqlite:///{tmp_path / 'source.db'}")


@pytest.fixture
def duckdb_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = engine_for(f"duckdb:///{tmp_path / 'target.duckdb'}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def pg_url(postgres_url: str) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL server."""
    name = f"dg_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        dc.dispose_engines()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="module")
def pg_engine(pg_url: str) -> Engine:
    return engine_for(pg_url)


@pytest.fixture(scope="module")
def snowflake_engine(fakesnow_server: dict) -> Engine:
    """A database of its own on the fakesnow server, reached through the real connector over HTTP."""
    database = f"DG_{uuid.uuid4().hex[:8].upper()}"
    spec = dc.snowflake_spec(
        name="fakesnow",
        account="fakesnow",
        user="fake",
        password="snow",
        database=database,
        schema="PUBLIC",
        host=fakesnow_server["host"],
        port=fakesnow_server["port"],
        protocol=fakesnow_server["protocol"],
    )
    engine = dc.get_engine(spec)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS {database}")
        connection.exec_driver_sql(f"USE DATABASE {database}")
        connection.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS PUBLIC")
    engine.dispose()  # new sessions start in the created database
    return engine


def _staging_tables(engine: Engine) -> list[str]:
    """Tables a load left behind (`<table>__stg_<token>`), in any schema."""
    inspector = sa.inspect(engine)
    names = []
    for schema in [None, "dim", "fact"]:
        try:
            names += [n for n in inspector.get_table_names(schema=schema) if "__stg_" in n.lower()]
        except Exception:  # a schema that does not exist (SQLite has none)
            continue
    return sorted(set(names))


@pytest.fixture
def staging_tables():
    return _staging_tables
