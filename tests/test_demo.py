"""The demo's accounting of planted differences can fail: misses and false alarms are reported."""

from __future__ import annotations

from prefect_ombudsman.demo import account_for_drift

MANIFEST = {
    "tables": {
        "fact_sales": {
            "counts": {"missing_rows": 2, "nulls": 1},
            "missing_rows": [5, 9],
            "nulls": [{"key": 3, "column": "discount_amount", "source": "1.00", "target": None}],
        },
        "dim_store": {"counts": {}},
    }
}


def _summary(
    missing: list[int], changed: list[dict], extra_failures: list[dict] | None = None
) -> dict:
    checksum = {
        "name": "fact_sales_rows",
        "validator": "row_checksum",
        "status": "FAIL",
        "table": "fact_sales",
        "details": {
            "missing_in_target": len(missing),
            "extra_in_target": 0,
            "changed": len(changed),
            "samples": {"missing_in_target": missing, "extra_in_target": [], "changed": changed},
        },
    }
    nulls = {
        "name": "fact_sales_nulls",
        "validator": "nulls",
        "status": "FAIL",
        "table": "fact_sales",
        "details": {},
    }
    ok = {
        "name": "dim_store_rows",
        "validator": "row_checksum",
        "status": "PASS",
        "table": "dim_store",
        "details": {},
    }
    return {"operations": [{"result": {"steps": [checksum, nulls, ok, *(extra_failures or [])]}}]}


def test_everything_found_exactly():
    account = account_for_drift(
        MANIFEST, _summary([5, 9], [{"key": 3, "columns": ["discount_amount"]}])
    )
    assert account.ok
    assert {f.kind: f.found_by for f in account.findings} == {
        "missing_rows": ["row_checksum"],
        "nulls": ["nulls", "row_checksum"],
    }
    assert account.untouched_tables == ["dim_store"] and account.untouched_checks == 1


def test_a_missed_key_or_wrong_column_is_a_miss():
    account = account_for_drift(MANIFEST, _summary([5], [{"key": 3, "columns": ["sales_amount"]}]))
    assert not account.ok
    assert [f.found for f in account.findings] == [False, False]


def test_failure_on_an_untouched_table_is_a_false_alarm():
    alarm = {
        "name": "dim_store_counts",
        "validator": "record_counts",
        "status": "FAIL",
        "table": "dim_store",
        "message": "1 row differs",
    }
    account = account_for_drift(
        MANIFEST, _summary([5, 9], [{"key": 3, "columns": ["discount_amount"]}], [alarm])
    )
    assert not account.ok
    assert account.false_alarms == ["dim_store_counts (record_counts) on dim_store: 1 row differs"]
