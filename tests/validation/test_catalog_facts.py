"""PostgreSQL: constraints the database enforces replace aggregates (exact either way).

A PRIMARY KEY / UNIQUE constraint / valid, non-partial unique index makes COUNT(DISTINCT) the
non-null count; NOT NULL makes COUNT(col) the row count; AVG is SUM / COUNT folded in Python.
What the catalog does not guarantee (a partial unique index, nullable multi-column unique keys,
views) is still counted, so duplicates and NULLs there are still found.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine

from prefect_ombudsman.dialects.base import dialect_for
from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.validation import Side, parse_pipeline, run_pipeline
from prefect_ombudsman.validation.sql import SqlPieces, TableFacts

SETUP = """
CREATE SCHEMA {s};
CREATE TABLE {s}.keyed (id BIGINT PRIMARY KEY, code TEXT NOT NULL, a INT, b INT,
                        amount NUMERIC(12, 2) NOT NULL, note TEXT, UNIQUE (code));
CREATE UNIQUE INDEX ON {s}.keyed (a, b);
CREATE UNIQUE INDEX ON {s}.keyed (b) INCLUDE (note);
INSERT INTO {s}.keyed SELECT i, 'c' || i, mod(i, 3), CASE WHEN mod(i, 3) = 0 THEN NULL ELSE i END,
                             (mod(i, 1000)) / 7.0, CASE WHEN mod(i, 4) = 0 THEN NULL ELSE 'n' END
                      FROM generate_series(1, 300) i;
CREATE TABLE {s}.loose (id BIGINT, a INT, b INT, amount NUMERIC(12, 2));
CREATE UNIQUE INDEX ON {s}.loose (id) WHERE id > 0;
CREATE UNIQUE INDEX ON {s}.loose ((a + 0));
INSERT INTO {s}.loose SELECT i - 2, i, NULL, i / 3.0 FROM generate_series(1, 50) i;
INSERT INTO {s}.loose VALUES (0, 100, NULL, 1), (-1, 101, NULL, 2);
CREATE VIEW {s}.keyed_view AS SELECT * FROM {s}.keyed;
CREATE TABLE {s}.parent (id INT PRIMARY KEY);
CREATE TABLE {s}.child (extra INT) INHERITS ({s}.parent);
INSERT INTO {s}.parent VALUES (1), (2);
ALTER TABLE {s}.child ALTER COLUMN id DROP NOT NULL;
INSERT INTO {s}.child VALUES (2, 0), (3, 0), (NULL, 0);
"""


@pytest.fixture(scope="module")
def pg(postgres_url):
    schema = f"facts_{uuid.uuid4().hex[:8]}"
    raw = create_engine(postgres_url)
    with raw.begin() as conn:
        for statement in SETUP.format(s=schema).split(";\n"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    raw.dispose()
    yield get_engine(spec_from_url(postgres_url)), schema
    raw = create_engine(postgres_url)
    with raw.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    raw.dispose()


def _run(pg, steps: str) -> dict:
    engine, schema = pg
    pipeline = parse_pipeline(f"steps:\n{steps.replace('S.', schema + '.')}", pipeline_id="facts")
    return run_pipeline(
        pipeline,
        Side("source", engine, default_schema=schema),
        Side("target", engine, default_schema=schema),
    )


def _sql(step: dict) -> str:
    sql = step["sql"]
    return "\n".join(sql.values()) if isinstance(sql, dict) else str(sql)


def test_the_catalog_names_enforced_keys_and_not_null_columns_only(pg):
    engine, schema = pg
    side = Side("source", engine, default_schema=schema)
    keyed = side.resolve(f"{schema}.keyed").facts
    assert keyed.not_null == {"id", "code", "amount"}
    assert set(keyed.unique) == {
        frozenset({"id"}),
        frozenset({"code"}),
        frozenset({"a", "b"}),
        frozenset({"b"}),  # INCLUDE (note) is no part of the key
    }
    assert keyed.proves_unique(["ID"]) and keyed.proves_unique(["b"])
    assert not keyed.proves_unique(["a", "b"])  # nullable: rows (0, NULL) may repeat
    assert not keyed.proves_unique(["note"])
    # a partial or expression index proves nothing; a view has no constraints
    assert side.resolve(f"{schema}.loose").facts == TableFacts()
    assert side.resolve(f"{schema}.keyed_view").facts == TableFacts()
    # the parent's key and NOT NULL do not cover the rows its inheritance children add to a SELECT
    assert side.resolve(f"{schema}.parent").facts == TableFacts()


def test_a_proven_key_runs_no_distinct_and_an_unproven_one_finds_duplicates(pg):
    result = _run(
        pg,
        """
  - {name: uniqueness, config: {table: S.keyed, columns: [id]}}
  - {name: uniqueness, config: {table: S.keyed, unique_keys: [[a, b]]}}
  - {name: uniqueness, config: {table: S.loose, columns: [id]}}
  - {name: uniqueness, config: {table: S.loose, unique_keys: [[id, b]]}}
  - {name: uniqueness, config: {table: S.parent, columns: [id]}}
""",
    )
    keyed_id, keyed_ab, loose_id, loose_idb, inherited = result["steps"]
    assert inherited["status"] == "FAIL"  # id 2 is in the parent and in its child
    assert inherited["details"]["keys"][0]["source_duplicates"] == 1
    nulls = _run(pg, "  - {name: nulls, config: {table: S.parent}}")["steps"][0]
    assert nulls["details"]["columns"][0]["source_nulls"] == 1  # the child's NULL id
    assert keyed_id["status"] == "PASS"
    assert "DISTINCT" not in _sql(keyed_id).upper()
    assert keyed_id["details"]["keys"][0]["source_proof"].startswith("enforced")
    # (a, b) is a unique index over nullable columns: it lets the 100 rows (0, NULL) repeat, and
    # the GROUP BY that still runs counts them
    assert keyed_ab["status"] == "FAIL" and "GROUP BY" in _sql(keyed_ab).upper()
    assert keyed_ab["details"]["keys"][0]["source_duplicates"] == 99
    assert "source_proof" not in keyed_ab["details"]["keys"][0]
    # id is unique only WHERE id > 0: values 0 and -1 repeat, and the check sees them
    assert loose_id["status"] == "FAIL"
    assert loose_id["details"]["keys"][0]["source_duplicates"] == 2
    assert "count(DISTINCT" in _sql(loose_id)
    assert loose_idb["status"] == "FAIL"
    assert loose_idb["details"]["keys"][0]["target_duplicates"] == 2


def test_not_null_columns_and_averages_come_from_the_scan_exactly(pg):
    result = _run(
        pg,
        """
  - {name: nulls, config: {table: S.keyed}}
  - {name: statistics, config: {table: S.keyed, columns: [amount, a]}}
""",
    )
    nulls, stats = result["steps"]
    assert nulls["status"] == "PASS" and stats["status"] == "PASS"
    engine, schema = pg
    sql = _sql(nulls)
    for proven in ("id", "code", "amount"):  # NOT NULL: no COUNT(col)
        assert f"count({schema}.keyed.{proven})" not in sql
    assert f"count({schema}.keyed.note)" in sql and "avg(" not in _sql(stats)
    with engine.connect() as conn:
        exact = conn.exec_driver_sql(
            f"SELECT avg(amount), avg(a), count(*) - count(note) FROM {schema}.keyed"
        ).one()
    nulls_by_column = {r["column"]: r for r in nulls["details"]["columns"]}
    assert nulls_by_column["note"]["source_nulls"] == exact[2] == 75
    assert nulls_by_column["amount"]["source_nulls"] == 0
    columns = {c["column"]: c for c in stats["details"]["columns"]}
    assert columns["amount"]["avg"]["source"] == pytest.approx(float(exact[0]), rel=1e-15)
    assert columns["a"]["avg"]["source"] == pytest.approx(float(exact[1]), rel=1e-15)


def test_declared_constraints_are_not_read_where_they_are_not_enforced():
    """Snowflake's PRIMARY KEY / UNIQUE are informational: its keys are always counted."""
    snowflake = SqlPieces(dialect_for("snowflake"))
    assert not snowflake.reads_facts
    assert snowflake.enforced_facts(None, "S1", "FACT_SALES") == TableFacts()  # type: ignore[arg-type]
    assert SqlPieces(dialect_for("postgresql")).reads_facts
