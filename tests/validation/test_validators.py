"""Each core validator finds exactly the difference planted for it (SQLite source, DuckDB target)."""

from __future__ import annotations

from pathlib import Path

import pytest
import warehouse

from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.validation import Side, parse_pipeline, run_pipeline

PIPELINE = """
mapping:
  sales: {sql: fact_sales, snow: fact_sales}
  customers: {sql: dim_customer, snow: dim_customer}
metadata:
  customers:
    business_key: customer_key
    unique_keys: [customer_id]
    domain_values: {segment: [Gold, Silver, Bronze]}
    regex_patterns: {email: '[a-z0-9.]+@[a-z0-9.]+'}
  sales:
    foreign_keys: {customers: {column: customer_key, references: customers.customer_key}}
steps:
  - {name: counts, validator: record_counts, config: {table: sales}}
  - {name: nulls, config: {table: sales}}
  - {name: sums, validator: metric_sums, config: {table: sales, metric_cols: [amount, quantity]}}
  - {name: monthly, validator: metric_sums, config: {table: sales, metric_cols: [amount], date_col: sale_date, group_by: month}}
  - {name: averages, validator: metric_averages, config: {table: sales, metric_cols: [amount, quantity]}}
  - {name: stats, validator: statistics, config: {table: sales, columns: [amount, quantity]}}
  - {name: ratio, validator: ratios, config: {table: sales, ratio_defs: [{numerator: amount, denominator: quantity}]}}
  - {name: unique_customer_id, validator: uniqueness, config: {table: customers}}
  - {name: unique_pair, validator: uniqueness, config: {table: sales, columns: [sales_key, customer_key]}}
  - {name: fks, validator: foreign_keys, config: {table: sales}}
  - {name: conformance, validator: fact_dim_conformance, config: {fact: sales, dim: customers}}
  - {name: domains, validator: domain_values, config: {table: customers}}
  - {name: emails, validator: regex_patterns, config: {table: customers}}
  - {name: columns, validator: schema_columns, config: {table: sales}}
  - {name: types, validator: schema_datatypes, config: {table: sales}}
  - {name: nullability, validator: schema_nullability, config: {table: customers}}
  - {name: query, validator: custom_sql, config: {sql_query: "select segment, count(*) as n from dim_customer group by segment", compare_mode: result_set, ignore_row_order: true}}
  - {name: structure, validator: schema_structure}
"""

EXPECTED = {
    None: set(),
    "missing_sales": {
        "counts",
        "nulls",
        "sums",
        "monthly",
        "averages",
        "stats",
    },  # amount/quantity is constant per row
    "amount_delta": {"sums", "monthly", "averages", "stats", "ratio"},
    "null_notes": {"nulls"},
    "orphans": {"fks", "conformance"},
    "duplicate_customer_id": {"unique_customer_id"},
    "bad_segment": {"domains", "query"},
    "bad_email": {"emails"},
}
DRIFT_VALUES = {
    "missing_sales": 3,
    "amount_delta": "0.01",
    "null_notes": 2,
    "orphans": 2,
    "duplicate_customer_id": True,
    "bad_segment": True,
    "bad_email": True,
}


def sides_for(tmp_path: Path, drift: dict | None) -> tuple[Side, Side]:
    src = get_engine(spec_from_url(f"sqlite:///{tmp_path / 's.db'}"))
    tgt = get_engine(spec_from_url(f"duckdb:///{tmp_path / 't.duckdb'}"))
    warehouse.build(src)
    warehouse.build(tgt, drift=drift)
    return Side("source", src), Side("target", tgt)


@pytest.mark.parametrize("drift", list(EXPECTED))
def test_validators_report_exactly_the_planted_difference(tmp_path: Path, drift: str | None):
    sides = sides_for(tmp_path, {drift: DRIFT_VALUES[drift]} if drift else None)
    result = run_pipeline(parse_pipeline(PIPELINE, pipeline_id="all"), *sides)
    statuses = {s["name"]: s["status"] for s in result["steps"]}
    assert "ERROR" not in statuses.values(), [
        s["message"] for s in result["steps"] if s["status"] == "ERROR"
    ]
    assert {n for n, st in statuses.items() if st == "FAIL"} == EXPECTED[drift]


def test_failure_details_carry_numbers_and_samples(tmp_path: Path):
    sides = sides_for(
        tmp_path, {"orphans": 2, "amount_delta": "0.01", "null_notes": 2, "bad_segment": True}
    )
    steps = {
        s["name"]: s
        for s in run_pipeline(parse_pipeline(PIPELINE, pipeline_id="all"), *sides)["steps"]
    }
    fk = steps["fks"]["details"]["foreign_keys"][0]
    assert (fk["source_orphan_rows"], fk["target_orphan_rows"], fk["target_orphan_keys"]) == (
        0,
        2,
        2,
    )
    assert sorted(s["key"] for s in fk["samples"]["target"]) == [9011, 9012]
    total = steps["sums"]["details"]["totals"][0]
    assert total["column"] == "amount" and total["difference"] == pytest.approx(0.01)
    nulls = {c["column"]: c for c in steps["nulls"]["details"]["columns"]}
    assert nulls["note"]["target_nulls"] - nulls["note"]["source_nulls"] == 2
    assert all(
        row["note"] is None for row in steps["nulls"]["details"]["samples"]["note"]["target"]
    )
    assert steps["domains"]["details"]["samples"]["segment"]["target"] == [
        {"value": "Platinum", "rows": 1}
    ]
    assert steps["conformance"]["details"]["snow_orphans"]["total_affected_rows"] == 2


def test_steps_on_one_table_share_one_scan_per_side(tmp_path: Path):
    sides = sides_for(tmp_path, None)
    text = """
steps:
  - {name: record_counts, config: {table: fact_sales}}
  - {name: nulls, config: {table: fact_sales}}
  - {name: statistics, config: {table: fact_sales, columns: [amount, quantity]}}
  - {name: metric_sums, config: {table: fact_sales, metric_cols: [amount]}}
  - {name: uniqueness, config: {table: fact_sales, columns: [sales_key]}}
  - {name: foreign_keys, config: {table: fact_sales, fk_column: customer_key, ref_table: dim_customer, ref_column: customer_key}}
"""
    result = run_pipeline(parse_pipeline(text, pipeline_id="fused"), *sides)
    assert result["status"] == "passed"
    source, target = result["stats"]["source"], result["stats"]["target"]
    # SQLite: one SELECT per table (the fact's aggregates, the dimension key's profile)
    assert source == {
        "queries": 2,
        "table_scans": {"fact_sales": 1, "dim_customer": 1},
        "rows_pulled": 0,
    }
    # DuckDB: a MIN/MAX probe of each integer key first, so its distinct count is a bitmap
    assert target["table_scans"] == {"main.fact_sales": 2, "main.dim_customer": 2}, target
    assert target["queries"] == 4 and target["rows_pulled"] == 0
    sql = result["steps"][0]["sql"]["target"]
    assert sql == result["steps"][4]["sql"]["target"] and "bitstring_agg" in sql
    assert "JOIN" not in sql  # no orphan possible: the dense dimension key covers the fact's range
    fk = result["steps"][5]["details"]["foreign_keys"][0]
    assert (fk["source_check"], fk["target_check"]) == ("key ranges", "key ranges")


def test_sums_compare_exactly_and_tolerance_relaxes_them(tmp_path: Path):
    sides = sides_for(tmp_path, {"amount_delta": "0.01"})
    exact = "steps:\n  - {name: metric_sums, config: {table: fact_sales, metric_cols: [amount]}}\n"
    loose = "steps:\n  - {name: metric_sums, tolerance: 0.05, config: {table: fact_sales, metric_cols: [amount]}}\n"
    assert run_pipeline(parse_pipeline(exact, pipeline_id="e"), *sides)["status"] == "failed"
    assert run_pipeline(parse_pipeline(loose, pipeline_id="l"), *sides)["status"] == "passed"


def test_orphans_need_the_anti_join_when_the_dimension_key_has_gaps(tmp_path: Path):
    import statistics as py_stats

    import duckdb

    paths = {}
    for side, extra in (("s", ""), ("t", ", (3, 9)")):
        paths[side] = tmp_path / f"{side}.duckdb"
        con = duckdb.connect(str(paths[side]))
        con.execute("CREATE TABLE dim (k INTEGER)")
        con.execute("INSERT INTO dim VALUES (1), (2), (4)")  # 3 is missing: no proof from ranges
        con.execute("CREATE TABLE fact (fk INTEGER, q INTEGER)")
        con.execute(f"INSERT INTO fact VALUES (1, 5), (2, 7), (4, 11), (NULL, 2){extra}")
        con.close()
    sides = [
        Side(label, get_engine(spec_from_url(f"duckdb:///{paths[s]}")))
        for label, s in (("source", "s"), ("target", "t"))
    ]
    text = """
steps:
  - {name: foreign_keys, config: {table: fact, fk_column: fk, ref_table: dim, ref_column: k}}
  - {name: statistics, config: {table: fact, columns: [q], statistics: [stddev]}}
"""
    fk_step, stats_step = run_pipeline(parse_pipeline(text, pipeline_id="gaps"), *sides)["steps"]
    fk = fk_step["details"]["foreign_keys"][0]
    assert (fk["source_check"], fk["target_check"]) == ("anti-join", "anti-join")
    assert (fk["source_orphan_rows"], fk["target_orphan_rows"]) == (0, 1)
    assert fk["samples"]["target"] == [{"key": 3, "rows": 1}]
    assert fk_step["status"] == "FAIL"
    # STDDEV folded from exact moments on DuckDB equals the textbook sample standard deviation
    std = stats_step["details"]["columns"][0]["stddev"]
    assert abs(std["source"] - py_stats.stdev([5, 7, 11, 2])) < 1e-12
    assert abs(std["target"] - py_stats.stdev([5, 7, 11, 2, 9])) < 1e-12
