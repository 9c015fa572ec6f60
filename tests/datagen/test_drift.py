"""Drift: the manifest lists exactly the differences a row-by-row diff of the two targets finds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from prefect_ombudsman.datagen import (
    Target,
    build_plan,
    generate_warehouse,
    get_schema,
    parse_drift,
    sa_table,
)
from prefect_ombudsman.datagen.drift import check_drift
from prefect_ombudsman.datagen.verify import read_rows, stored_digest
from prefect_ombudsman.dialects.base import dialect_for
from prefect_ombudsman.errors import ConfigurationError

RETAIL_DRIFT = {
    "target": "target",
    "seed": 99,
    "tables": {
        "fact_sales": {
            "missing_rows": 7,
            "extra_rows": 4,
            "changed_values": {"count": 9, "columns": ["quantity", "discount_amount"]},
            "nulls": {"count": 5, "columns": ["cost_amount"]},
            "orphan_fks": {"count": 3, "columns": ["dim_product_key"]},
            "rounding": {"count": 6},
        },
        "dim_customer": {
            "missing_rows": 2,
            "truncated_strings": {"count": 4, "columns": ["email"]},
            "shifted_timestamps": {"count": 3, "seconds": 7200},
            "changed_values": {"count": 3, "columns": ["segment", "birth_date"]},
        },
        "dim_store": {"extra_rows": 2, "shifted_timestamps": {"count": 2, "days": 3}},
    },
}


def _diff(source, target, schema_type: str, table: str) -> dict:
    """What a direct comparison of the two tables finds (every row, every column)."""
    left, right = read_rows(source, schema_type, table), read_rows(target, schema_type, table)
    changed = []
    for key in sorted(left.keys() & right.keys()):
        columns = sorted(c for c in left[key] if left[key][c] != right[key][c])
        if columns:
            changed.append({"key": key, "columns": columns})
    return {
        "missing_in_target": sorted(left.keys() - right.keys()),
        "extra_in_target": sorted(right.keys() - left.keys()),
        "changed": changed,
    }


def test_manifest_matches_a_direct_diff_of_source_and_target(
    sqlite_engine, duckdb_engine, tmp_path: Path
):
    plan = build_plan("Retail", 4000, 17)
    manifest_file = tmp_path / "drift.json"
    result = generate_warehouse(
        plan,
        [Target("source", sqlite_engine), Target("target", duckdb_engine)],
        drift=parse_drift(RETAIL_DRIFT),
        manifest_path=manifest_file,
    )
    manifest = json.loads(manifest_file.read_text())
    assert result["drift"]["manifest_path"] == str(manifest_file)
    assert (
        manifest["target"] == "target" and manifest["drift_seed"] == 99 and manifest["seed"] == 17
    )
    for table in get_schema("Retail").table_names:
        found = _diff(sqlite_engine, duckdb_engine, "Retail", table)
        expected = manifest["expected"].get(
            table, {"missing_in_target": [], "extra_in_target": [], "changed": []}
        )
        assert found == expected, table
    sales = manifest["tables"]["fact_sales"]
    assert sales["counts"] == {
        "missing_rows": 7,
        "extra_rows": 4,
        "changed_values": 9,
        "nulls": 5,
        "orphan_fks": 3,
        "rounding": sales["counts"]["rounding"],
    }
    assert (
        1 <= sales["counts"]["rounding"] <= 6
    )  # prices ending in .00 cannot be rounded: not planted, not listed
    assert sales["extra_rows"] == [4001, 4002, 4003, 4004]
    assert sales["rows_in_target"] == 4000 - 7 + 4
    assert {e["column"] for e in sales["nulls"]} == {"cost_amount"} and all(
        e["target"] is None for e in sales["nulls"]
    )
    assert all(int(e["target"]) > plan.sizes["dim_product"] for e in sales["orphan_fks"])
    shifted = manifest["tables"]["dim_customer"]["shifted_timestamps"]
    assert {e["column"] for e in shifted} <= {"birth_date", "created_at"}
    # fact rows whose customer this target does not have are listed as implied orphans
    implied = sales.get("implied_orphans", {}).get("dim_customer_key")
    missing_customers = set(manifest["tables"]["dim_customer"]["missing_rows"])
    dialect = dialect_for(duckdb_engine)
    facts = sa_table(get_schema("Retail").table("fact_sales"), dialect)
    with duckdb_engine.connect() as connection:
        rows = (
            connection.execute(
                sa.select(facts.c.sales_key)
                .where(facts.c.dim_customer_key.in_(missing_customers))
                .order_by(facts.c.sales_key)
            )
            .scalars()
            .all()
        )
    assert rows, "with 2 of 200 customers missing some sales point at them"
    assert implied == {"count": len(rows), "keys": rows}


def test_drift_is_deterministic_and_leaves_other_targets_untouched(
    sqlite_engine, duckdb_engine, tmp_path: Path
):
    spec = {
        "tables": {"fact_balances": {"missing_rows": 0.01, "changed_values": 5}}
    }  # default target: the last one
    first = generate_warehouse(
        build_plan("Finance", 2000, 5),
        [Target("a", sqlite_engine), Target("b", duckdb_engine)],
        drift=parse_drift(spec),
        manifest_path=tmp_path / "one.json",
    )
    generate_warehouse(
        build_plan("Finance", 2000, 5, table_name="fact_balances"),
        [Target("b", duckdb_engine)],
        drift=parse_drift(spec),
        manifest_path=tmp_path / "two.json",
    )
    assert (
        first["drift"]["target"] == "b"
        and first["targets"][1]["drift"]
        and not first["targets"][0]["drift"]
    )
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert one["tables"]["fact_balances"] == two["tables"]["fact_balances"]
    assert one["tables"]["fact_balances"]["counts"]["missing_rows"] == 20
    clean = build_plan("Finance", 2000, 5)
    untouched = [t.name for t in clean.tables if t.name != "fact_balances"]
    for table in untouched:
        assert stored_digest(sqlite_engine, "Finance", table) == stored_digest(
            duckdb_engine, "Finance", table
        )


def test_bad_drift_specs_name_the_field_and_the_allowed_values():
    retail = get_schema("Retail")
    with pytest.raises(ConfigurationError, match=r"drift: tables.fact_sales.missing_rows: .*count"):
        parse_drift({"tables": {"fact_sales": {"missing_rows": {"columns": ["x"]}}}})
    with pytest.raises(ConfigurationError, match=r"tables.fact_sales.typo: Extra inputs"):
        parse_drift({"tables": {"fact_sales": {"typo": 3}}})
    with pytest.raises(ConfigurationError, match="valid tables: dim_date, dim_customer"):
        check_drift(parse_drift({"tables": {"fact_returns": {"missing_rows": 1}}}), retail)
    with pytest.raises(
        ConfigurationError,
        match=r"rounding.columns: quantity cannot be used; allowed columns: unit_price, discount_amount",
    ):
        check_drift(
            parse_drift(
                {"tables": {"fact_sales": {"rounding": {"count": 1, "columns": ["quantity"]}}}}
            ),
            retail,
        )
    with pytest.raises(ConfigurationError, match="has no column this kind can change"):
        check_drift(parse_drift({"tables": {"dim_date": {"rounding": 1}}}), retail)
    with pytest.raises(
        ConfigurationError,
        match="drift.target 'elsewhere' is not one of the targets: 0: source, 1: target",
    ):
        from prefect_ombudsman.datagen.warehouse import resolve_drift_target

        resolve_drift_target(parse_drift({"target": "elsewhere"}), ["source", "target"])
    with pytest.raises(ConfigurationError, match="rows asked for .* but the table has 10"):
        from prefect_ombudsman.datagen.drift import DriftPlan

        DriftPlan(
            parse_drift({"tables": {"fact_sales": {"missing_rows": 8, "changed_values": 5}}}),
            build_plan("Retail", 10, 1),
            "t",
        )
