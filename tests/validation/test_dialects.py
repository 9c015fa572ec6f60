"""The same pipeline on PostgreSQL -> Snowflake (fakesnow), T-SQL compiled and run through pyodbc where portable."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyodbc
import pytest
import warehouse
from sqlalchemy import create_engine, select
from test_validators import PIPELINE, sides_for

from prefect_ombudsman.dialects.engines import get_engine, snowflake_spec, spec_from_url
from prefect_ombudsman.dialects.sqlite import SQLiteDialect
from prefect_ombudsman.validation import Side, parse_pipeline, run_pipeline
from prefect_ombudsman.validation.sql import ColumnInfo
from prefect_ombudsman.validation.tables import ResolvedTable
from prefect_ombudsman.validation.validators import aggregates as A
from prefect_ombudsman.validation.validators.integrity import orphan_statement

MAPPED = (
    PIPELINE.replace(
        "{sql: fact_sales, snow: fact_sales}", "{sql: wh.fact_sales, snow: S1.FACT_SALES}"
    )
    .replace(
        "{sql: dim_customer, snow: dim_customer}", "{sql: wh.dim_customer, snow: S1.DIM_CUSTOMER}"
    )
    .replace("from dim_customer", "from ${SCHEMA}.dim_customer")
    .replace("  - {name: structure, validator: schema_structure}\n", "")
)


@pytest.fixture(scope="module")
def snowflake_engine(fakesnow_server):
    spec = snowflake_spec(
        name="snow",
        account="fakesnow",
        user="fake",
        password="snow",
        database="DB1",
        schema="S1",
        host=fakesnow_server["host"],
        port=fakesnow_server["port"],
        protocol="http",
    )
    engine = get_engine(spec)
    with engine.begin() as conn:
        conn.exec_driver_sql("create database if not exists db1")
        conn.exec_driver_sql("create schema if not exists db1.s1")
    return engine, spec


def test_postgresql_to_snowflake_finds_the_planted_differences(
    postgres_url, snowflake_engine, monkeypatch
):
    engine, spec = snowflake_engine
    pg = get_engine(spec_from_url(postgres_url))
    warehouse.build(pg, schema="wh")
    warehouse.build(
        engine, drift={"orphans": 2, "amount_delta": "0.01", "null_notes": 2, "bad_segment": True}
    )
    monkeypatch.setenv("SCHEMA", "wh")
    source = Side("source", pg)
    text = MAPPED.replace(
        "custom_sql, config: {sql_query:",
        "custom_sql, config: {snow_query: 'select segment, count(*) as n from S1.DIM_CUSTOMER group by segment', sql_query:",
    )
    result = run_pipeline(
        parse_pipeline(text, pipeline_id="pg_snow"),
        source,
        Side("target", engine, default_schema=spec.default_schema),
    )
    statuses = {s["name"]: s["status"] for s in result["steps"]}
    assert "ERROR" not in statuses.values(), [
        (s["name"], s["message"]) for s in result["steps"] if s["status"] == "ERROR"
    ]
    assert {n for n, st in statuses.items() if st == "FAIL"} == {
        "nulls", "sums", "monthly", "averages", "stats", "ratio", "fks", "conformance", "domains", "query",
    }  # fmt: skip
    sums = next(s for s in result["steps"] if s["name"] == "sums")
    assert sums["details"]["totals"][1] == {
        "column": "quantity",
        "source": 1598,
        "target": 1598,
        "difference": 0,
        "pct_difference": 0.0,
        "match": True,
    }
    assert '"FACT_SALES"' in sums["sql"]["target"] and "wh.fact_sales" in sums["sql"]["source"]


def test_identical_postgresql_and_snowflake_tables_pass(
    postgres_url, snowflake_engine, monkeypatch
):
    engine, spec = snowflake_engine
    pg = get_engine(spec_from_url(postgres_url))
    warehouse.build(pg, schema="wh")
    warehouse.build(engine)
    monkeypatch.setenv("SCHEMA", "wh")
    text = MAPPED.replace(
        "custom_sql, config: {sql_query:",
        "custom_sql, config: {snow_query: 'select segment, count(*) as n from S1.DIM_CUSTOMER group by segment', sql_query:",
    )
    result = run_pipeline(
        parse_pipeline(text, pipeline_id="same"),
        Side("source", pg, default_schema="wh"),
        Side("target", engine, default_schema="S1"),
    )
    bad = [(s["name"], s["status"], s["message"]) for s in result["steps"] if s["status"] != "PASS"]
    assert bad == []


def _tsql_table(schema: str | None) -> ResolvedTable:
    engine = create_engine("mssql+pyodbc://", module=pyodbc)
    engine.dialect.server_version_info = (16, 0, 1000)
    engine.dialect._setup_version_attributes()
    side = Side("source", engine, default_schema="dbo")
    cols = [
        ColumnInfo("sales_key", "int"), ColumnInfo("customer_key", "int"), ColumnInfo("quantity", "int"),
        ColumnInfo("amount", "decimal", precision=12, scale=2), ColumnInfo("sale_date", "date"),
    ]  # fmt: skip
    dim = ResolvedTable(
        side, schema, "dim_customer", [ColumnInfo("customer_key", "int")], "dim_customer"
    )
    fact = ResolvedTable(side, schema, "fact_sales", cols, "fact_sales")
    fact.dim = dim  # type: ignore[attr-defined]
    return fact


def _fused(fact: ResolvedTable, with_std: bool) -> dict:
    aggs = A.combine(
        A.row_count(fact), A.non_null(fact, "amount"), A.total(fact, "quantity"), A.total(fact, "amount"),
        A.average(fact, "quantity"), A.distinct(fact, "sales_key"),
        A.stddev(fact, "amount") if with_std else None,
    )  # fmt: skip
    return aggs


def _fused_statement(fact: ResolvedTable, aggs: dict) -> Any:
    return select(
        *[a.expression({}).label(f"a{i}") for i, a in enumerate(aggs.values())]
    ).select_from(fact.sa)


def _run_odbc(db: Path, stmt: Any, dialect: Any) -> Any:
    compiled = stmt.compile(dialect=dialect)
    params = [compiled.params[name] for name in compiled.positiontup]
    conn = pyodbc.connect(f"DRIVER={{SQLite3}};Database={db}")
    try:
        return conn.cursor().execute(str(compiled), params).fetchone()
    finally:
        conn.close()


def test_tsql_aggregates_are_decimal_safe_and_quoted():
    fact = _tsql_table("dbo")
    aggs = _fused(fact, with_std=True)
    assert not any(
        a.alone({}) or a.needs for a in aggs.values()
    )  # SQL Server: all in the shared scan
    sql = str(_fused_statement(fact, aggs).compile(dialect=fact.side.engine.dialect))
    assert "sum(CAST(dbo.fact_sales.quantity AS NUMERIC(38, 0)))" in sql
    assert "avg(CAST(dbo.fact_sales.quantity AS NUMERIC(38, 6)))" in sql
    assert "stdev(CAST(dbo.fact_sales.amount AS FLOAT))" in sql
    assert "count(DISTINCT dbo.fact_sales.sales_key)" in sql
    assert "LIMIT" not in sql
    anti = str(
        orphan_statement(fact, "customer_key", fact.dim, "customer_key").compile(
            dialect=fact.side.engine.dialect
        )
    )  # type: ignore[attr-defined]
    assert "LEFT OUTER JOIN (SELECT DISTINCT dbo.dim_customer.customer_key AS k" in anti
    period = fact.side.pieces.period_start(fact.col("sale_date"), "week")
    week_sql = str(period.compile(dialect=fact.side.engine.dialect))
    assert "dateadd(day" in week_sql and "CAST('19000101' AS DATE)" in week_sql
    assert (
        fact.side.pieces.regex_full_match(fact.col("amount"), "x") is None
    )  # regex checked in Python before 2025
    sample = select(fact.sa).limit(5)
    assert re.search(
        r"SELECT TOP __\[POSTCOMPILE_param_1\]|SELECT TOP 5",
        str(sample.compile(dialect=fact.side.engine.dialect)),
    )


def test_tsql_fused_scan_runs_through_pyodbc(tmp_path: Path):
    """The compiled T-SQL text (brackets, CAST AS NUMERIC, qmark binds) runs unchanged on the SQLite ODBC driver."""
    db = tmp_path / "w.db"
    warehouse.build(get_engine(spec_from_url(f"sqlite:///{db}")), drift={"orphans": 3})
    fact = _tsql_table(None)
    aggs = _fused(fact, with_std=False)
    row = _run_odbc(db, _fused_statement(fact, aggs), fact.side.engine.dialect)
    values = dict(zip(aggs, row, strict=True))
    assert values["count"] == warehouse.SALES
    assert int(values["sum:quantity"]) == sum(r["quantity"] for r in warehouse.sales_rows())
    assert values["distinct:sales_key"] == warehouse.SALES
    anti = orphan_statement(fact, "customer_key", fact.dim, "customer_key")  # type: ignore[attr-defined]
    orphan_rows, orphan_keys = _run_odbc(db, anti, fact.side.engine.dialect)
    assert orphan_rows == 3 and orphan_keys >= 1


def test_regex_falls_back_to_distinct_values_in_python(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(
        SQLiteDialect, "validation_regex_full_match", lambda self, expr, pattern: None
    )
    sides = sides_for(tmp_path, {"bad_email": True})
    text = "steps:\n  - {name: regex_patterns, config: {table: dim_customer, regex_patterns: {email: '[a-z0-9.]+@[a-z0-9.]+'}}}\n"
    step = run_pipeline(parse_pipeline(text, pipeline_id="r"), *sides)["steps"][0]
    assert step["status"] == "FAIL"
    column = step["details"]["columns"][0]
    assert column["source_method"] == "distinct values checked in Python"
    assert (column["source_invalid"], column["target_invalid"]) == (0, 1)
    assert step["details"]["samples"]["email"]["target"] == ["not-an-email"]
