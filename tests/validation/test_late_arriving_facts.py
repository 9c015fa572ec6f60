"""late_arriving_facts counts fact rows dated before their dimension member's first version.

SQLite source, DuckDB target. Planted: rows one day before the first version (late), on the
effective date itself (not late: the rule is strictly before), between a member's first and second
version (not late: only the earliest version counts), and without a dimension row (an orphan, which
is fact_dim_conformance's business, not this validator's).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Column, Date, Integer, MetaData, String, Table, insert
from sqlalchemy.engine import Engine

from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.validation import Side, parse_pipeline, run_pipeline

D = dt.date
VERSIONS = [  # (customer_key, customer_id, valid_from): C1 has two versions
    (1, "C1", D(2024, 1, 10)),
    (2, "C1", D(2024, 3, 1)),
    (3, "C2", D(2024, 2, 1)),
]
ON_TIME = [  # (sales_key, customer_id, sale_date)
    (1, "C1", D(2024, 1, 10)),  # on the first version's date
    (2, "C1", D(2024, 2, 15)),  # before C1's second version, after its first
    (3, "C2", D(2024, 2, 1)),
    (4, "C9", D(2020, 1, 1)),  # no dimension row at all
]
LATE = [(5, "C1", D(2024, 1, 9)), (6, "C2", D(2024, 1, 31))]

PIPELINE = """
metadata:
  dim_customer: {effective_date: valid_from}
  fact_sales: {date_columns: [sale_date]}
steps:
  - name: late
    validator: late_arriving_facts
    config: {fact: fact_sales, dim: dim_customer, fk_column: customer_id, business_key: customer_id}
"""


def _build(engine: Engine, sales: list[tuple]) -> None:
    md = MetaData()
    dim = Table(
        "dim_customer",
        md,
        Column("customer_key", Integer, primary_key=True, autoincrement=False),
        Column("customer_id", String(10)),
        Column("valid_from", Date),
    )
    fact = Table(
        "fact_sales",
        md,
        Column("sales_key", Integer, primary_key=True, autoincrement=False),
        Column("customer_id", String(10)),
        Column("sale_date", Date),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(dim), [dict(zip(dim.c.keys(), v, strict=True)) for v in VERSIONS])
        conn.execute(insert(fact), [dict(zip(fact.c.keys(), s, strict=True)) for s in sales])


def _run(
    tmp_path: Path, source_sales: list[tuple], target_sales: list[tuple], pipeline: str = PIPELINE
) -> dict:
    src = get_engine(spec_from_url(f"sqlite:///{tmp_path / 's.db'}"))
    tgt = get_engine(spec_from_url(f"duckdb:///{tmp_path / 't.duckdb'}"))
    _build(src, source_sales)
    _build(tgt, target_sales)
    result = run_pipeline(
        parse_pipeline(pipeline, pipeline_id="late"), Side("source", src), Side("target", tgt)
    )
    return result["steps"][0]


def test_no_late_facts_when_every_sale_is_on_or_after_the_first_version(tmp_path: Path):
    step = _run(tmp_path, ON_TIME, ON_TIME)
    assert step["status"] == "PASS", step["message"]
    assert (step["details"]["source_late_rows"], step["details"]["target_late_rows"]) == (0, 0)


@pytest.mark.parametrize("side", ["source", "target"])
def test_rows_dated_before_the_first_version_are_counted_on_their_side(tmp_path: Path, side):
    planted = ON_TIME + LATE
    step = _run(tmp_path, *((planted, ON_TIME) if side == "source" else (ON_TIME, planted)))
    assert step["status"] == "FAIL" and step["severity"] == "MEDIUM"
    other = "target" if side == "source" else "source"
    assert step["details"][f"{side}_late_rows"] == 2
    assert step["details"][f"{other}_late_rows"] == 0
    samples = step["details"]["samples"][side]
    got = {(s["key"], str(s["fact_date"])[:10], str(s["effective_date"])[:10]) for s in samples}
    assert got == {("C1", "2024-01-09", "2024-01-10"), ("C2", "2024-01-31", "2024-02-01")}


def test_skipped_without_the_dimensions_effective_date(tmp_path: Path):
    pipeline = PIPELINE.replace("dim_customer: {effective_date: valid_from}", "dim_customer: {}")
    step = _run(tmp_path, ON_TIME + LATE, ON_TIME + LATE, pipeline)
    assert step["status"] == "SKIPPED" and "effective_date" in step["message"]
