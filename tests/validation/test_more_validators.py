"""Distribution, outliers, dimension and time-series validators on planted differences (SQLite -> DuckDB)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_validators import sides_for

from prefect_ombudsman.validation import parse_pipeline, run_pipeline

PIPELINE = """
metadata:
  dim_customer: {business_key: customer_id, surrogate_key: customer_key, scd1_attributes: [email, segment],
                 effective_date: valid_from, end_date: valid_to, composite_keys: [customer_id, segment]}
  fact_sales: {date_columns: [sale_date]}
steps:
  - {name: distribution, config: {table: fact_sales, columns: [amount, quantity]}}
  - {name: outliers, config: {table: fact_sales, columns: [amount], z: 2}}
  - {name: business_keys, validator: dim_business_keys, config: {table: dim_customer}}
  - {name: surrogate_keys, validator: dim_surrogate_keys, config: {dim: dim_customer}}
  - {name: composite, validator: composite_keys, config: {dim: dim_customer}}
  - {name: scd1, config: {dim: dim_customer}}
  - {name: scd2, config: {dim: dim_customer}}
  - {name: continuity, validator: ts_continuity, config: {table: fact_sales}}
  - {name: ts_duplicates, config: {table: fact_sales, keys: [customer_key, sale_date]}}
  - {name: pop, validator: period_over_period, config: {table: fact_sales, metric_col: amount, grains: [week, month]}}
  - {name: rolling, validator: ts_rolling_drift, config: {table: fact_sales, metric_col: quantity, windows: [7]}}
"""

EXPECTED = {
    None: set(),
    "amount_factor": {"distribution", "outliers"},  # relative changes are unchanged by scaling
    "missing_sales": {"pop", "rolling"},
    "duplicate_sale": {"ts_duplicates", "pop", "rolling"},
    "duplicate_customer_id": {
        "business_keys",
        "surrogate_keys",
        "composite",
        "scd1",
        "scd2",
    },  # CUST0001 gains a second row
    "bad_segment": {"scd1", "composite"},
    "valid_from_shift": {"scd2"},
}
VALUES = {
    "amount_factor": 10,
    "missing_sales": 3,
    "duplicate_sale": True,
    "duplicate_customer_id": True,
    "bad_segment": True,
    "valid_from_shift": True,
}


@pytest.mark.parametrize("drift", list(EXPECTED))
def test_each_validator_finds_its_planted_difference(tmp_path: Path, drift):
    sides = sides_for(tmp_path, {drift: VALUES[drift]} if drift else None)
    result = run_pipeline(parse_pipeline(PIPELINE, pipeline_id="more"), *sides)
    statuses = {s["name"]: s["status"] for s in result["steps"]}
    assert "ERROR" not in statuses.values(), [
        (s["name"], s["message"]) for s in result["steps"] if s["status"] == "ERROR"
    ]
    assert {n for n, st in statuses.items() if st == "FAIL"} == EXPECTED[drift]


def test_distribution_reads_bucket_counts_not_rows(tmp_path: Path):
    sides = sides_for(tmp_path, None)
    text = "steps:\n  - {name: distribution, config: {table: fact_sales, columns: [amount], bins: 10}}\n"
    result = run_pipeline(parse_pipeline(text, pipeline_id="d"), *sides)
    step = result["steps"][0]
    assert step["status"] == "PASS"
    column = step["details"]["columns"][0]
    assert sum(column["source_histogram"]) == 400 and column["ks_distance"] == 0
    assert result["stats"]["source"]["rows_pulled"] == 0 and "GROUP BY" in step["sql"]["source"]


def test_dimension_samples_name_the_keys(tmp_path: Path):
    sides = sides_for(tmp_path, {"duplicate_customer_id": True, "bad_segment": True})
    steps = {
        s["name"]: s
        for s in run_pipeline(parse_pipeline(PIPELINE, pipeline_id="m"), *sides)["steps"]
    }
    assert steps["business_keys"]["details"]["samples"]["missing_in_target"] == ["CUST0002"]
    changed = {c["business_key"]: c["columns"] for c in steps["scd1"]["details"]["samples_changed"]}
    assert changed["CUST0003"] == ["segment"]
