"""One known schema (composite keys, a multi-column foreign key, a view, quoted mixed-case names)
created on any of the test databases, and the catalog it must produce."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import Engine

ROWS = {"Region": 2, "Customer": 3, "orders": 5}


def create_known_schema(engine: Engine, schema: str | None) -> None:
    """Create the tables and view in `schema` (quoted as given) or unqualified."""
    q = engine.dialect.identifier_preparer.quote_identifier
    s = f"{q(schema)}." if schema else ""
    statements = [
        f'DROP VIEW IF EXISTS {s}"Big Orders"',
        f"DROP TABLE IF EXISTS {s}orders",
        f'DROP TABLE IF EXISTS {s}"Customer"',
        f'DROP TABLE IF EXISTS {s}"Region"',
        f'CREATE TABLE {s}"Region" ("RegionCode" VARCHAR(8) NOT NULL, country_code CHAR(2) NOT NULL, '
        f'label VARCHAR(40), PRIMARY KEY ("RegionCode", country_code))',
        f'CREATE TABLE {s}"Customer" (customer_id INTEGER NOT NULL PRIMARY KEY, "RegionCode" VARCHAR(8), '
        f'country_code CHAR(2), "Full Name" VARCHAR(60) NOT NULL, balance NUMERIC(12,2) DEFAULT 0, '
        f'FOREIGN KEY ("RegionCode", country_code) REFERENCES {s}"Region" ("RegionCode", country_code))',
        f"CREATE TABLE {s}orders (order_id INTEGER NOT NULL, line_no INTEGER NOT NULL, "
        f'customer_id INTEGER REFERENCES {s}"Customer" (customer_id), amount NUMERIC(10,2), '
        f"PRIMARY KEY (order_id, line_no))",
        f'CREATE VIEW {s}"Big Orders" AS SELECT order_id, amount FROM {s}orders WHERE amount > 100',
        f"INSERT INTO {s}\"Region\" VALUES ('NORTH', 'US', 'North'), ('SOUTH', 'US', 'South')",
        f"INSERT INTO {s}\"Customer\" VALUES (1, 'NORTH', 'US', 'Ann', 10.50), (2, 'SOUTH', 'US', 'Bob', 0), "
        f"(3, NULL, NULL, 'Cy', 7)",
        f"INSERT INTO {s}orders VALUES (1, 1, 1, 50.00), (1, 2, 1, 150.00), (2, 1, 2, 300.00), "
        f"(3, 1, 3, 20.00), (3, 2, 3, 99.99)",
    ]
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def check_known_catalog(
    catalog, schema: str, fold: Callable[[str], str] = str, exact: bool = False
) -> None:
    """Assert everything the known DDL declares; `fold` spells unquoted names (Snowflake: upper)."""
    names = {t.name: t for t in catalog.tables}
    orders = fold("orders")
    assert set(names) == {"Region", "Customer", orders, "Big Orders"}
    assert {t.schema_name for t in catalog.tables} == {schema}
    assert names["Big Orders"].type == "VIEW" and names["Customer"].type == "TABLE"

    region, customer, order = names["Region"], names["Customer"], names[orders]
    assert region.primary_key == ["RegionCode", fold("country_code")]
    assert order.primary_key == [fold("order_id"), fold("line_no")]
    assert customer.primary_key == [fold("customer_id")]

    assert len(customer.foreign_keys) == 1
    fk = customer.foreign_keys[0]
    assert fk.columns == ["RegionCode", fold("country_code")]
    assert (fk.referred_schema, fk.referred_table) == (schema, "Region")
    assert fk.referred_columns == ["RegionCode", fold("country_code")]
    assert [(f.columns, f.referred_table, f.referred_columns) for f in order.foreign_keys] == [
        ([fold("customer_id")], "Customer", [fold("customer_id")])
    ]

    cols = customer.columns
    assert [c.name for c in cols] == [
        fold("customer_id"),
        "RegionCode",
        fold("country_code"),
        "Full Name",
        fold("balance"),
    ]
    assert [c.ordinal for c in cols] == [1, 2, 3, 4, 5]
    by_name = {c.name: c for c in cols}
    assert by_name[fold("customer_id")].primary_key and not by_name["Full Name"].primary_key
    assert by_name[fold("customer_id")].nullable is False
    assert by_name["Full Name"].nullable is False and by_name["RegionCode"].nullable is True
    balance = by_name[fold("balance")]
    assert (balance.precision, balance.scale) == (12, 2)
    assert balance.default is not None and "0" in balance.default
    assert by_name[fold("customer_id")].default is None
    assert [c.name for c in names["Big Orders"].columns] == [fold("order_id"), fold("amount")]
    assert names["Big Orders"].primary_key == [] and names["Big Orders"].foreign_keys == []
    assert names["Big Orders"].row_count is None and not names["Big Orders"].row_count_exact
    if exact:
        assert {n: names[fold(n) if n == "orders" else n].row_count for n in ROWS} == ROWS
        assert all(names[n].row_count_exact for n in ("Region", "Customer", orders))
    else:
        assert not any(t.row_count_exact for t in catalog.tables)
