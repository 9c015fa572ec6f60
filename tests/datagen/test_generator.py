"""The generator: determinism, chunk-size independence, valid keys, realistic values."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from prefect_ombudsman.datagen import CHUNK_ROWS, build_plan, content_digest, iter_chunks
from prefect_ombudsman.datagen.generator import rebatch
from prefect_ombudsman.errors import ConfigurationError


def _digests(schema_type: str, rows: int, seed: int) -> dict[str, str]:
    plan = build_plan(schema_type, rows, seed)
    return {t.name: content_digest(iter_chunks(plan, t)) for t in plan.tables}


def _table(schema_type: str, table: str, rows: int, seed: int) -> pa.Table:
    plan = build_plan(schema_type, rows, seed)
    return pa.concat_tables(iter_chunks(plan, plan.schema.table(table)))


def test_same_seed_same_content_in_another_process():
    here = {s: _digests(s, 3000, 7) for s in ("Retail", "Finance", "Healthcare")}
    code = (
        "import json; from prefect_ombudsman.datagen import build_plan, content_digest, iter_chunks\n"
        "out = {}\n"
        "for s in ('Retail', 'Finance', 'Healthcare'):\n"
        "    plan = build_plan(s, 3000, 7)\n"
        "    out[s] = {t.name: content_digest(iter_chunks(plan, t)) for t in plan.tables}\n"
        "print(json.dumps(out))\n"
    )
    there = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    assert there == here


def test_different_seed_different_content_except_the_calendar():
    a, b = _digests("Retail", 2000, 1), _digests("Retail", 2000, 2)
    assert a["dim_date"] == b["dim_date"]
    assert all(a[t] != b[t] for t in a if t != "dim_date")


def test_content_does_not_depend_on_the_load_batch_size():
    plan = build_plan("Finance", CHUNK_ROWS + 23_456, 11)
    table = plan.schema.table("fact_transactions")
    whole = content_digest(iter_chunks(plan, table))
    for batch in (1_000, 7_777, 250_000):
        batches = list(rebatch(iter_chunks(plan, table), batch))
        assert sum(b.num_rows for b in batches) == CHUNK_ROWS + 23_456
        assert content_digest(iter(batches)) == whole


def test_one_table_alone_equals_the_same_table_of_the_whole_schema():
    alone = build_plan("Healthcare", 5000, 3, table_name="fact_visits")
    assert [t.name for t in alone.tables] == ["fact_visits"]
    full = build_plan("Healthcare", 5000, 3)
    spec = full.schema.table("fact_visits")
    assert content_digest(iter_chunks(alone, spec)) == content_digest(iter_chunks(full, spec))


def test_no_seed_draws_a_random_one():
    assert build_plan("Retail", 10).seed != build_plan("Retail", 10).seed


@pytest.mark.parametrize("schema_type", ["Retail", "Finance", "Healthcare"])
def test_every_fact_key_exists_in_its_dimension(schema_type: str):
    plan = build_plan(schema_type, 20_000, 5)
    keys = {
        t.name: set(pa.concat_tables(iter_chunks(plan, t)).column(t.key.name).to_pylist())
        for t in plan.tables
        if t.schema == "dim"
    }
    for fact in (t for t in plan.tables if t.schema == "fact"):
        data = pa.concat_tables(iter_chunks(plan, fact))
        assert data.num_rows == 20_000
        assert data.column(fact.key.name).to_pylist() == list(range(1, 20_001))
        for column in fact.foreign_keys:
            ref = column.references.partition(".")[0]
            assert set(data.column(column.name).to_pylist()) <= keys[ref], (fact.name, column.name)


def test_sizes_scale_with_row_count_and_tables_override():
    plan = build_plan("Retail", 1_000_000, 1, tables={"dim_store": 42, "dim_date": 366})
    assert plan.sizes["fact_sales"] == plan.sizes["fact_inventory"] == 1_000_000
    assert plan.sizes["dim_customer"] == 50_000 and plan.sizes["dim_product"] == 5_000
    assert plan.sizes["dim_store"] == 42 and plan.sizes["dim_date"] == 366
    assert plan.calendar.end.isoformat() == "2020-12-31"


def test_bad_sizes_and_names_are_refused_with_the_valid_values():
    with pytest.raises(
        ConfigurationError, match="row_count must be an integer from 1 to 1,000,000,000"
    ):
        build_plan("Retail", 0)
    with pytest.raises(ConfigurationError, match="row_count"):
        build_plan("Retail", 2_000_000_000)
    with pytest.raises(ConfigurationError, match="valid tables: dim_date, dim_account"):
        build_plan("Finance", 10, tables={"dim_customer": 5})
    with pytest.raises(ConfigurationError, match="tables.dim_account"):
        build_plan("Finance", 10, tables={"dim_account": -1})
    with pytest.raises(ConfigurationError, match="valid tables"):
        build_plan("Healthcare", 10, table_name="fact_sales")


def test_retail_values_look_real():
    customers = _table("Retail", "dim_customer", 40_000, 9)
    emails = customers.column("email").to_pylist()
    assert len(set(emails)) == len(emails)
    assert all(re.fullmatch(r"[a-z\-]+\.[a-z\-]+\d+@[a-z]+\.com", e) for e in emails[:500])
    assert set(customers.column("segment").to_pylist()) == {"Gold", "Silver", "Bronze"}
    assert customers.column("customer_id")[0].as_py() == "CUST00000001"
    sales = _table("Retail", "fact_sales", 40_000, 9)
    quantity = sales.column("quantity").to_numpy()
    assert quantity.min() >= 1 and quantity.max() <= 10
    expected = pc.subtract(
        pc.multiply(
            sales.column("unit_price"), pc.cast(sales.column("quantity"), pa.decimal128(10, 0))
        ),
        sales.column("discount_amount"),
    )
    assert pc.all(
        pc.equal(
            pc.cast(expected, pa.decimal128(14, 2)),
            pc.cast(sales.column("sales_amount"), pa.decimal128(14, 2)),
        )
    ).as_py()
    # weekend and December peaks: Saturday sales beat Tuesday's, December beats February
    days = pa.array(sales.column("dim_date_key").to_numpy().astype(str))
    dates = pc.strptime(days, format="%Y%m%d", unit="s")
    weekday = pc.day_of_week(dates).to_numpy()
    month = pc.month(dates).to_numpy()
    assert (weekday == 5).sum() > 1.3 * (weekday == 1).sum()
    assert (month == 12).sum() > 1.6 * (month == 2).sum()


def test_finance_and_healthcare_values_look_real():
    accounts = _table("Finance", "dim_account", 50_000, 4)
    types = accounts.column("account_type").to_pylist()
    limits = accounts.column("credit_limit").to_pylist()
    assert {"Checking", "Savings", "Investment"} <= set(types)
    assert all(
        (limit is not None) == (kind == "Credit Card")
        for kind, limit in zip(types, limits, strict=True)
    )
    transactions = _table("Finance", "fact_transactions", 30_000, 4)
    amounts = np.array([float(a) for a in transactions.column("amount").to_pylist()])
    assert amounts.min() > 0 and 20 < np.median(amounts) < 200
    diagnoses = _table("Healthcare", "dim_diagnosis", 1000, 4).column("diagnosis_code").to_pylist()
    assert {"E11.9", "I10", "J45.909"} <= set(diagnoses)
    assert all(re.fullmatch(r"[A-Z]\d{2}(\.[0-9A-Z]{1,4})?", code) for code in diagnoses)
    patients = _table("Healthcare", "dim_patient", 10_000, 4)
    assert set(patients.column("gender").to_pylist()) <= {"F", "M", "U"}
    visits = _table("Healthcare", "fact_visits", 20_000, 4)
    hours = pc.hour(visits.column("visit_date")).to_numpy()
    office = np.array(visits.column("visit_type").to_pylist()) == "Office Visit"
    assert hours[office].min() >= 8 and hours[office].max() <= 17
