"""schema_constraints compares the primary key and the foreign keys of a table on both sides.

SQLite source, DuckDB target, each read through its metadata catalog. Planted on the target: a
missing foreign key, one pointing elsewhere, a different primary key, and an extra foreign key
(reported, not a failure: only what the source declares must be on the target, as in the Studio).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.validation import Side, parse_pipeline, run_pipeline

DIMS = [
    "CREATE TABLE dim_customer (customer_key INTEGER PRIMARY KEY, customer_id VARCHAR(10))",
    "CREATE TABLE dim_store (store_key INTEGER PRIMARY KEY, city VARCHAR(20))",
    "CREATE TABLE dim_date (date_key INTEGER PRIMARY KEY, day DATE)",
]
COLUMNS = "sales_key INTEGER NOT NULL, customer_key INTEGER, store_key INTEGER, date_key INTEGER"
CUSTOMER_FK = "FOREIGN KEY (customer_key) REFERENCES dim_customer (customer_key)"
STORE_FK = "FOREIGN KEY (store_key) REFERENCES dim_store (store_key)"
DATE_FK = "FOREIGN KEY (date_key) REFERENCES dim_date (date_key)"
SOURCE = f"CREATE TABLE fact_sales ({COLUMNS}, PRIMARY KEY (sales_key), {CUSTOMER_FK}, {STORE_FK})"
TARGETS = {
    "same": SOURCE,
    "missing_fk": f"CREATE TABLE fact_sales ({COLUMNS}, PRIMARY KEY (sales_key), {CUSTOMER_FK})",
    "fk_elsewhere": (
        f"CREATE TABLE fact_sales ({COLUMNS}, PRIMARY KEY (sales_key), {CUSTOMER_FK}, "
        "FOREIGN KEY (store_key) REFERENCES dim_date (date_key))"
    ),
    "other_pk": (
        f"CREATE TABLE fact_sales ({COLUMNS}, PRIMARY KEY (sales_key, customer_key), "
        f"{CUSTOMER_FK}, {STORE_FK})"
    ),
    "extra_fk": (
        f"CREATE TABLE fact_sales ({COLUMNS}, PRIMARY KEY (sales_key), {CUSTOMER_FK}, "
        f"{STORE_FK}, {DATE_FK})"
    ),
}
STORE = {"columns": ["STORE_KEY"], "referred_table": "DIM_STORE", "referred_columns": ["STORE_KEY"]}


def _run(tmp_path: Path, target_ddl: str, check_foreign_keys: bool = True) -> dict:
    src = get_engine(spec_from_url(f"sqlite:///{tmp_path / 's.db'}"))
    tgt = get_engine(spec_from_url(f"duckdb:///{tmp_path / 't.duckdb'}"))
    for engine, ddl in ((src, SOURCE), (tgt, target_ddl)):
        _create(engine, [*DIMS, ddl])
    text = (
        "steps:\n  - {name: keys, validator: schema_constraints, config: "
        f"{{table: fact_sales, check_foreign_keys: {str(check_foreign_keys).lower()}}}}}\n"
    )
    result = run_pipeline(
        parse_pipeline(text, pipeline_id="keys"), Side("source", src), Side("target", tgt)
    )
    return result["steps"][0]


def _create(engine: Engine, statements: list[str]) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def test_same_keys_pass_and_are_read_from_each_side(tmp_path: Path):
    step = _run(tmp_path, TARGETS["same"])
    assert step["status"] == "PASS", step["message"]
    details = step["details"]
    assert details["source_primary_key"] == details["target_primary_key"] == ["SALES_KEY"]
    assert len(details["source_foreign_keys"]) == len(details["target_foreign_keys"]) == 2
    assert STORE in details["source_foreign_keys"] and STORE in details["target_foreign_keys"]
    assert details["missing_in_target"] == details["extra_in_target"] == []


@pytest.mark.parametrize("planted", ["missing_fk", "fk_elsewhere"])
def test_a_foreign_key_not_on_the_target_fails(tmp_path: Path, planted: str):
    step = _run(tmp_path, TARGETS[planted])
    assert step["status"] == "FAIL" and step["severity"] == "HIGH"
    assert step["details"]["missing_in_target"] == [STORE]
    assert "1 foreign key(s) missing in target" in step["message"]


def test_a_different_primary_key_fails(tmp_path: Path):
    step = _run(tmp_path, TARGETS["other_pk"])
    assert step["status"] == "FAIL" and "primary key" in step["message"]
    assert step["details"]["target_primary_key"] == ["SALES_KEY", "CUSTOMER_KEY"]
    assert step["details"]["missing_in_target"] == []


def test_an_extra_foreign_key_on_the_target_is_reported_not_failed(tmp_path: Path):
    step = _run(tmp_path, TARGETS["extra_fk"])
    assert step["status"] == "PASS", step["message"]
    assert step["details"]["extra_in_target"] == [
        {"columns": ["DATE_KEY"], "referred_table": "DIM_DATE", "referred_columns": ["DATE_KEY"]}
    ]


def test_foreign_keys_are_ignored_when_not_checked(tmp_path: Path):
    step = _run(tmp_path, TARGETS["missing_fk"], check_foreign_keys=False)
    assert step["status"] == "PASS", step["message"]
    assert step["details"]["missing_in_target"] == []
