"""A small star schema written through SQLAlchemy Core into any test database, with optional drift."""

from __future__ import annotations

import datetime as dt
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Date, Integer, MetaData, Numeric, String, Table, insert
from sqlalchemy.engine import Engine

from prefect_ombudsman.dialects.engines import get_engine, spec_from_url

CUSTOMERS = 50
SALES = 400


def customer_rows() -> list[dict[str, Any]]:
    segments = ["Gold", "Silver", "Bronze"]
    return [
        {
            "customer_key": i,
            "customer_id": f"CUST{i:04d}",
            "email": f"user{i}@example.com",
            "segment": segments[i % 3],
            "valid_from": dt.date(2019, 1, 1),
            "valid_to": None,
        }
        for i in range(1, CUSTOMERS + 1)
    ]


def sales_rows() -> list[dict[str, Any]]:
    rows = []
    for i in range(1, SALES + 1):
        qty = i % 7 + 1
        rows.append(
            {
                "sales_key": i,
                "customer_key": i % CUSTOMERS + 1,
                "sale_date": dt.date(2023, 1, 1) + dt.timedelta(days=i % 90),
                "quantity": qty,
                "amount": Decimal(qty * 1999) / 100,
                "note": None if i % 5 == 0 else f"n{i}",
            }
        )
    return rows


def tables(schema: str | None = None) -> tuple[MetaData, Table, Table]:
    md = MetaData(schema=schema)
    customer = Table(
        "dim_customer",
        md,
        Column("customer_key", Integer, primary_key=True, autoincrement=False),
        Column("customer_id", String(20), nullable=False),
        Column("email", String(100)),
        Column("segment", String(10)),
        Column("valid_from", Date),
        Column("valid_to", Date),
    )
    sales = Table(
        "fact_sales",
        md,
        Column("sales_key", Integer, primary_key=True, autoincrement=False),
        Column("customer_key", Integer),
        Column("sale_date", Date),
        Column("quantity", Integer),
        Column("amount", Numeric(12, 2)),
        Column("note", String(20)),
    )
    return md, customer, sales


def build(
    engine: Engine, *, schema: str | None = None, drift: dict[str, Any] | None = None
) -> None:
    """Create and fill the two tables; `drift` plants differences (see keys below)."""
    drift = drift or {}
    md, customer, sales = tables(schema)
    customers = customer_rows()
    facts = sales_rows()
    if drift.get("missing_sales"):
        facts = facts[: -drift["missing_sales"]]
    if drift.get("amount_delta"):
        facts[0]["amount"] += Decimal(str(drift["amount_delta"]))
    if drift.get("null_notes"):
        for row in facts[1 : 1 + drift["null_notes"]]:
            if row["note"] is not None:
                row["note"] = None
    if drift.get("orphans"):
        for row in facts[10 : 10 + drift["orphans"]]:
            row["customer_key"] = 9000 + row["sales_key"]
    if drift.get("duplicate_customer_id"):
        customers[1]["customer_id"] = customers[0]["customer_id"]
    if drift.get("bad_segment"):
        customers[2]["segment"] = "Platinum"
    if drift.get("amount_factor"):
        for row in facts:
            row["amount"] *= drift["amount_factor"]
    if drift.get("duplicate_sale"):
        facts.append({**facts[5], "sales_key": 10_000})
    if drift.get("valid_from_shift"):
        customers[4]["valid_from"] = dt.date(2019, 6, 1)
    if drift.get("bad_email"):
        customers[3]["email"] = "not-an-email"
    with engine.begin() as conn:
        if schema:
            from sqlalchemy import text

            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        md.drop_all(conn)
        md.create_all(conn)
        conn.execute(insert(customer), customers)
        conn.execute(insert(sales), facts)


SALES_PIPELINE = """
pipeline:
  name: Sales checks
  source: {table: fact_sales}
  target: {table: fact_sales}
  steps:
    - name: validate_record_counts
    - name: nulls
    - name: metric_sums
      config: {metric_cols: [amount, quantity]}
    - name: foreign_keys
      config: {fk_column: customer_key, ref_table: dim_customer, ref_column: customer_key}
"""

CUSTOMER_PIPELINE = """
steps:
  - name: record_counts
    config: {table: dim_customer}
  - name: uniqueness
    config: {table: dim_customer, columns: [customer_id]}
"""


def make_project(
    root: Path,
    project_id: str,
    *,
    drift: dict[str, Any] | None = None,
    pipelines: dict[str, str] | None = None,
) -> Path:
    """A project folder whose source and target hold the warehouse (target with `drift`)."""
    folder = root / project_id
    (folder / "pipelines").mkdir(parents=True)
    (folder / "project.yaml").write_text(
        f"name: {project_id}\nsource: sqlite:///data/source.db\ntarget: duckdb:///data/target.duckdb\n"
    )
    (folder / "data").mkdir()
    build(get_engine(spec_from_url(f"sqlite:///{folder / 'data' / 'source.db'}")))
    build(get_engine(spec_from_url(f"duckdb:///{folder / 'data' / 'target.duckdb'}")), drift=drift)
    for name, text in (
        pipelines
        if pipelines is not None
        else {"sales": SALES_PIPELINE, "customers": CUSTOMER_PIPELINE}
    ).items():
        (folder / "pipelines" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return folder
