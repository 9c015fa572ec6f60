"""Connections: every dialect connects and runs a query; secrets never leak."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path

import pyodbc
import pytest
from pydantic import SecretStr
from sqlalchemy import column, func, select, table, text
from sqlalchemy.dialects import mssql

from prefect_ombudsman.blocks import DatabaseConnection, SnowflakeConnection, SqlServerConnection
from prefect_ombudsman.connections import engine_for, resolve_connection
from prefect_ombudsman.dialects import engines as dc
from prefect_ombudsman.dialects.base import is_transient
from prefect_ombudsman.errors import ConnectionReferenceError
from prefect_ombudsman.projects import load_project
from support import free_port

CANARY = "CANARY-s3cr3t-9f8e7d"


def _scalar(engine, sql: str):
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def test_sqlite_url_connects_and_queries(tmp_path: Path):
    engine = engine_for(f"sqlite:///{tmp_path / 'a.db'}")
    assert _scalar(engine, "select 40 + 2") == 42


def test_relative_sqlite_path_resolves_against_project_folder(tmp_projects: Path):
    folder = tmp_projects / "p1"
    folder.mkdir()
    (folder / "project.yaml").write_text(
        "name: P1\nsource: sqlite:///data/src.db\ntarget: duckdb:///data/tgt.duckdb\n"
    )
    (folder / "data").mkdir()
    project = load_project("p1", tmp_projects)
    spec = resolve_connection("source", project=project)
    assert spec.url == f"sqlite:///{folder / 'data' / 'src.db'}"
    assert _scalar(engine_for(spec), "select 1") == 1
    target = resolve_connection("snowflake", project=project)  # legacy word -> the project's target
    assert target.kind == "duckdb" and target.url.endswith("data/tgt.duckdb")


def test_duckdb_url_connects_and_queries(tmp_path: Path):
    engine = engine_for(f"duckdb:///{tmp_path / 'a.duckdb'}")
    assert _scalar(engine, "select 6 * 7") == 42


def test_postgresql_connects_and_queries(postgres_url: str):
    engine = engine_for(postgres_url)
    assert _scalar(engine, "select 42") == 42
    assert resolve_connection(postgres_url).kind == "postgresql"


def test_postgres_plain_scheme_uses_psycopg(postgres_port: int):
    spec = resolve_connection(f"postgresql://postgres@127.0.0.1:{postgres_port}/postgres")
    assert spec.url.startswith("postgresql+psycopg://")
    assert _scalar(engine_for(spec), "select 1") == 1


def test_snowflake_block_through_fakesnow_server(fakesnow_server):
    block = SnowflakeConnection(
        account="fakesnow",
        user="fake",
        password=SecretStr(CANARY),
        database="DB1",
        schema="S1",
        warehouse="WH",
        host=fakesnow_server["host"],
        port=fakesnow_server["port"],
        protocol="http",
    )
    engine = block.get_engine()
    with engine.begin() as conn:
        conn.execute(text("create database if not exists db1"))
        conn.execute(text("create schema if not exists db1.s1"))
        conn.execute(text("create or replace table db1.s1.t (id number(10,0), name varchar(20))"))
        conn.execute(text("insert into db1.s1.t values (1, 'a'), (2, 'b')"))
    assert _scalar(engine, "select count(*) from db1.s1.t") == 2
    assert CANARY not in repr(engine) and CANARY not in str(engine.url)


def test_sqlserver_pyodbc_path_runs_through_unixodbc_sqlite_driver(tmp_path: Path):
    assert "SQLite3" in pyodbc.drivers(), "libsqliteodbc must be installed (see .ci/run)"
    block = SqlServerConnection(
        odbc_connect=SecretStr(f"DRIVER={{SQLite3}};Database={tmp_path / 'odbc.db'}")
    )
    conn = dc.open_odbc(block.to_spec())
    try:
        cur = conn.cursor()
        cur.execute("create table t (id integer primary key, name varchar(20))")
        cur.executemany("insert into t values (?, ?)", [(i, f"n{i}") for i in range(100)])
        conn.commit()
        assert tuple(cur.execute("select count(*), sum(id) from t").fetchone()) == (100, 4950)
    finally:
        conn.close()


def test_sqlserver_fields_build_odbc_string_that_connects_to_postgres_driver(postgres_port: int):
    block = SqlServerConnection(
        host="127.0.0.1",
        port=postgres_port,
        database="postgres",
        username="postgres",
        password=SecretStr(CANARY),
        driver="PostgreSQL Unicode",
    )
    spec = block.to_spec()
    assert CANARY not in spec.url and CANARY not in repr(spec)
    odbc = spec.odbc_connect.get_secret_value()
    assert odbc.startswith(
        f"DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1,{postgres_port};DATABASE=postgres;UID=postgres;"
    )
    assert "Encrypt=yes;TrustServerCertificate=no;" in odbc
    # psqlODBC wants SERVER and PORT apart, where Driver 18 wants "host,port": so the real round trip
    # uses an explicit ODBC string (with a password that needs escaping) through the same pyodbc path.
    raw = SqlServerConnection(
        odbc_connect=SecretStr(
            f"DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT={postgres_port};DATABASE=postgres;"
            f"UID=postgres;PWD={dc.odbc_escape(CANARY + ';x')}"
        )
    )
    conn = dc.open_odbc(raw.to_spec())
    try:
        cur = conn.cursor()
        cur.fast_executemany = True
        cur.execute("create temporary table t (id int, amount numeric(12,2), name varchar(30))")
        cur.executemany(
            "insert into t values (?, ?, ?)", [(i, i * 1.5, f"name {i}") for i in range(500)]
        )
        row = cur.execute("select count(*), sum(amount) from t").fetchone()
        assert row[0] == 500 and float(row[1]) == pytest.approx(sum(i * 1.5 for i in range(500)))
    finally:
        conn.close()


def test_freetds_connection_failure_is_transient_and_hides_password(
    caplog: pytest.LogCaptureFixture,
):
    block = SqlServerConnection(
        host="127.0.0.1",
        port=free_port(),
        username="sa",
        password=SecretStr(CANARY),
        driver="FreeTDS",
        login_timeout=2,
    )
    engine = block.get_engine()
    with caplog.at_level(logging.DEBUG), pytest.raises(Exception) as info:
        with engine.connect():
            pass
    assert is_transient(info.value)
    assert CANARY not in str(info.value)
    assert CANARY not in caplog.text


def test_tsql_compiles_with_brackets_and_top():
    t = table("fact_sales", column("amount"), column("store_key"), schema="dbo")
    stmt = (
        select(func.count(), func.sum(t.c.amount), func.count(t.c.store_key.distinct()))
        .select_from(t)
        .limit(5)
    )
    dialect = mssql.dialect()
    dialect.server_version_info = (16, 0, 1000)
    sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    assert "TOP 5" in sql and "dbo.fact_sales" in sql and "count(DISTINCT" in sql
    weird = table("we]ird;drop", column("x"), schema="dbo")
    sql = str(select(weird.c.x).compile(dialect=dialect))
    assert "[we]]ird;drop]" in sql


def test_engine_cache_is_per_resolved_configuration(tmp_path: Path):
    a1 = engine_for(f"sqlite:///{tmp_path / 'a.db'}")
    a2 = engine_for(DatabaseConnection(url=f"sqlite:///{tmp_path / 'a.db'}").to_spec())
    b = engine_for(f"sqlite:///{tmp_path / 'b.db'}")
    assert a1 is a2
    assert a1 is not b
    p1 = dc.spec_from_url("postgresql://u@h/db", password="pw-number-one")
    p2 = dc.spec_from_url("postgresql://u@h/db", password="pw-number-two")
    assert p1.cache_key() != p2.cache_key()


def test_legacy_environment_connections():
    env = {
        "MSSQL_HOST": "sql.example",
        "MSSQL_PORT": "14330",
        "MSSQL_USER": "sa",
        "MSSQL_PASSWORD": CANARY,
        "MSSQL_DATABASE": "SampleDW",
    }
    spec = resolve_connection("sqlserver", env=env)
    odbc = spec.odbc_connect.get_secret_value()
    assert (
        "SERVER=sql.example,14330" in odbc
        and "DATABASE=SampleDW" in odbc
        and "DRIVER={ODBC Driver 18 for SQL Server}" in odbc
    )
    assert CANARY not in spec.url and CANARY not in repr(spec)
    spec = resolve_connection(
        "sqlserver", env={"SQLSERVER_CONN_STR": f"DRIVER={{FreeTDS}};SERVER=x;PWD={CANARY};"}
    )
    assert spec.kind == "sqlserver" and CANARY not in spec.display()
    snow = resolve_connection(
        "snowflake",
        env={
            "SNOWFLAKE_ACCOUNT": "abc.us-east-1",
            "SNOWFLAKE_USER": "u",
            "SNOWFLAKE_PASSWORD": CANARY,
        },
    )
    assert (
        snow.kind == "snowflake"
        and snow.url == "snowflake://u@abc.us-east-1/SAMPLEDW/PUBLIC?warehouse=COMPUTE_WH"
    )
    with pytest.raises(ConnectionReferenceError, match="SNOWFLAKE_ACCOUNT"):
        resolve_connection("snowflake", env={})
    with pytest.raises(ConnectionReferenceError, match="MSSQL_HOST"):
        resolve_connection("sqlserver", env={})


def test_bad_references_give_clear_errors(tmp_projects: Path):
    with pytest.raises(ConnectionReferenceError, match="not a valid database URL"):
        resolve_connection("nota://:::")
    with pytest.raises(ConnectionReferenceError, match="needs a project"):
        resolve_connection("source")
    with pytest.raises(ConnectionReferenceError, match="kind"):
        resolve_connection({"database": "x"})


def test_inline_mapping_reference_builds_the_right_block(tmp_path: Path):
    spec = resolve_connection({"kind": "database", "url": f"sqlite:///{tmp_path / 'm.db'}"})
    assert spec.kind == "sqlite"
    spec = resolve_connection(
        {"account": "a", "user": "u", "password": CANARY, "database": "D", "schema": "S"}
    )
    assert spec.kind == "snowflake" and CANARY not in spec.model_dump_json()


def test_secrets_never_in_repr_or_serialized_blocks():
    for block in (
        SqlServerConnection(host="h", password=SecretStr(CANARY)),
        SnowflakeConnection(account="a", user="u", token=SecretStr(CANARY)),
        DatabaseConnection(url="postgresql://u@h/db", password=SecretStr(CANARY)),
    ):
        assert CANARY not in repr(block)
        assert CANARY not in block.model_dump_json()
        spec = block.to_spec()
        assert (
            CANARY not in repr(spec)
            and CANARY not in spec.model_dump_json()
            and CANARY not in spec.url
        )


def test_url_password_moves_into_secret():
    spec = dc.spec_from_url(f"postgresql://u:{CANARY}@h:5432/db")
    assert CANARY not in spec.url and spec.password.get_secret_value() == CANARY


def test_blocks_register_through_prefect_collections_entry_point():
    names = {ep.value for ep in entry_points(group="prefect.collections")}
    assert "prefect_ombudsman.blocks" in names


def test_saved_block_resolves_by_name_and_api_masks_password(prefect_api, tmp_path: Path):
    from prefect.client.orchestration import get_client

    DatabaseConnection(url=f"sqlite:///{tmp_path / 'blk.db'}", password=SecretStr(CANARY)).save(
        "warehouse-a", overwrite=True
    )
    spec = resolve_connection("warehouse-a")
    assert spec.kind == "sqlite" and _scalar(engine_for(spec), "select 7") == 7
    spec = resolve_connection("database-connection/warehouse-a")
    assert spec.kind == "sqlite"
    with get_client(sync_client=True) as client:
        doc = client.read_block_document_by_name(
            "warehouse-a", "database-connection", include_secrets=False
        )
    assert CANARY not in str(doc.data)
    with pytest.raises(ConnectionReferenceError, match="looked for blocks"):
        resolve_connection("no-such-block")


def test_duckdb_connections_have_external_access_off_whatever_the_url_asks(tmp_path: Path):
    url = f"duckdb:///{tmp_path / 'w.duckdb'}?enable_external_access=true"
    engine = dc.get_engine(dc.spec_from_url(url, connect_args={"preload_extensions": ["httpfs"]}))
    assert _scalar(engine, "SELECT current_setting('enable_external_access')") is False
    (tmp_path / "other.txt").write_text("another file")
    with pytest.raises(Exception, match="disabled by config"):
        _scalar(engine, f"SELECT content FROM read_text('{tmp_path}/other.txt')")


def test_sqlite_connections_cannot_attach_other_files(tmp_path: Path):
    engine = dc.get_engine(dc.spec_from_url(f"sqlite:///{tmp_path / 'a.db'}"))
    with pytest.raises(Exception, match="not authorized"):
        with engine.connect() as conn:
            conn.exec_driver_sql(f"ATTACH '{tmp_path / 'b.db'}' AS b")
    assert not (tmp_path / "b.db").exists()


def test_relative_file_urls_resolve_inside_the_root_and_outside_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from prefect_ombudsman.confinement import PathNotAllowed

    monkeypatch.delenv("OMBUDSMAN_ALLOWED_PATHS", raising=False)  # the tests' allow-list
    root = tmp_path / "root"
    root.mkdir()
    inside = resolve_connection("sqlite:///sub/x.db", root=root)
    assert inside.url.endswith(str(root / "sub" / "x.db"))
    with pytest.raises(PathNotAllowed, match=r"connection: path .* is outside the projects root"):
        resolve_connection("sqlite:///../x.db", root=root)
