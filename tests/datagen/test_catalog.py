"""The schema catalog: the tables of SPEC §8, the Studio's names kept, DDL per dialect."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from snowflake.sqlalchemy import snowdialect
from sqlalchemy.dialects import mssql, postgresql, sqlite
from sqlalchemy.schema import CreateTable

from prefect_ombudsman.datagen import get_schema, sa_table, schema_types
from prefect_ombudsman.dialects.base import dialect_for
from prefect_ombudsman.dialects.postgresql import PostgreSQLDialect
from prefect_ombudsman.dialects.snowflake import SnowflakeDialect
from prefect_ombudsman.dialects.sqlite import SQLiteDialect
from prefect_ombudsman.dialects.sqlserver import SQLServerDialect
from prefect_ombudsman.errors import ConfigurationError

SPEC_TABLES = {
    "Retail": [
        "dim_date",
        "dim_customer",
        "dim_product",
        "dim_store",
        "fact_sales",
        "fact_inventory",
    ],
    "Finance": [
        "dim_date",
        "dim_account",
        "dim_transaction_type",
        "dim_merchant",
        "fact_transactions",
        "fact_balances",
    ],
    "Healthcare": [
        "dim_date",
        "dim_patient",
        "dim_provider",
        "dim_diagnosis",
        "fact_visits",
        "fact_medications",
    ],
}

# reference/studio-today.md §4.2 (Retail) and §4.4 (Finance / Healthcare, in snake_case)
STUDIO_COLUMNS = {
    (
        "Retail",
        "dim_date",
    ): "date_key date year quarter month month_name week day_of_month day_of_week day_name "
    "is_weekend is_holiday fiscal_year fiscal_quarter",
    ("Retail", "dim_customer"): "customer_key customer_id customer_name email segment region",
    (
        "Retail",
        "dim_product",
    ): "product_key product_id product_name category subcategory unit_price",
    ("Retail", "dim_store"): "store_key store_id store_name city state store_type",
    (
        "Retail",
        "fact_sales",
    ): "sales_key dim_customer_key dim_product_key dim_store_key dim_date_key quantity "
    "unit_price discount_amount sales_amount cost_amount",
    ("Finance", "dim_account"): "account_id account_number account_type account_status",
    ("Finance", "dim_transaction_type"): "type_id type_name",
    ("Finance", "dim_merchant"): "merchant_id merchant_name category",
    (
        "Finance",
        "fact_transactions",
    ): "account_id type_id merchant_id amount transaction_date description",
    ("Finance", "fact_balances"): "account_id current_balance available_balance",
    ("Healthcare", "dim_patient"): "patient_id patient_name gender date_of_birth email",
    ("Healthcare", "dim_provider"): "provider_id provider_name specialty",
    ("Healthcare", "dim_diagnosis"): "diagnosis_id diagnosis_code diagnosis_name",
    ("Healthcare", "fact_visits"): "patient_id provider_id diagnosis_id visit_date visit_duration",
    ("Healthcare", "fact_medications"): "patient_id medication_name dosage prescribed_date",
}


def test_three_schemas_with_the_tables_of_spec_section_8():
    assert schema_types() == ["Retail", "Finance", "Healthcare"]
    for name, tables in SPEC_TABLES.items():
        schema = get_schema(name)
        assert schema.table_names == tables
        assert [t.schema for t in schema.tables] == ["dim"] * 4 + ["fact"] * 2


@pytest.mark.parametrize(("schema_type", "table"), sorted(STUDIO_COLUMNS))
def test_studio_table_and_column_names_are_kept(schema_type: str, table: str):
    columns = get_schema(schema_type).table(table).column_names
    missing = [c for c in STUDIO_COLUMNS[(schema_type, table)].split() if c not in columns]
    assert not missing
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", c) for c in columns)


def test_every_foreign_key_points_at_a_dimension_key_of_its_schema():
    for name in SPEC_TABLES:
        schema = get_schema(name)
        for table in schema.tables:
            assert sum(c.primary_key for c in table.columns) == 1
            for column in table.foreign_keys:
                ref_table, _, ref_column = column.references.partition(".")
                assert schema.table(ref_table).key.name == ref_column
                assert table.schema == "fact" and not column.nullable


def test_unknown_schema_type_and_table_list_the_valid_ones():
    with pytest.raises(ConfigurationError, match="valid schema types: Retail, Finance, Healthcare"):
        get_schema("Insurance")
    with pytest.raises(ConfigurationError, match="valid tables: dim_date, dim_customer"):
        get_schema("retail").table("fact_returns")


def _ddl(dialect_obj, sa_dialect, schema_type: str, table: str) -> str:
    return str(
        CreateTable(sa_table(get_schema(schema_type).table(table), dialect_obj)).compile(
            dialect=sa_dialect
        )
    )


def test_sqlserver_ddl_uses_nvarchar_date_and_datetime2():
    d = mssql.dialect()
    d.server_version_info = (16, 0, 1000)
    d._setup_version_attributes()
    ddl = _ddl(SQLServerDialect(d), d, "Retail", "dim_customer")
    assert "CREATE TABLE dim.dim_customer" in ddl
    assert "customer_name NVARCHAR(100) NULL" in ddl and "state NVARCHAR(2) NULL" in ddl
    assert "birth_date DATE NULL" in ddl and "created_at DATETIME2 NULL" in ddl
    assert "customer_key INTEGER NOT NULL" in ddl and "PRIMARY KEY (customer_key)" in ddl
    assert "IDENTITY" not in ddl and "VARCHAR(" not in ddl.replace("NVARCHAR(", "")
    fact = _ddl(SQLServerDialect(d), d, "Finance", "fact_transactions")
    assert "transaction_id BIGINT NOT NULL" in fact and "amount NUMERIC(12, 2) NULL" in fact


def test_snowflake_ddl_uses_number_varchar_and_timestamp_ntz():
    d = snowdialect.dialect()
    ddl = _ddl(SnowflakeDialect(d), d, "Healthcare", "fact_visits")
    assert "charge_amount NUMBER(10, 2)" in ddl and "visit_type VARCHAR(20)" in ddl
    assert "visit_date TIMESTAMP_NTZ" in ddl and "AUTOINCREMENT" not in ddl
    assert ddl.startswith("\nCREATE TABLE fact.fact_visits")


def test_sqlite_ddl_has_no_schema_and_postgres_has_dim_fact():
    lite = _ddl(SQLiteDialect(sqlite.dialect()), sqlite.dialect(), "Retail", "fact_sales")
    assert "CREATE TABLE fact_sales" in lite and "NUMERIC(12, 2)" in lite
    pg = _ddl(PostgreSQLDialect(postgresql.dialect()), postgresql.dialect(), "Retail", "fact_sales")
    assert "CREATE TABLE fact.fact_sales" in pg and "sales_key BIGINT NOT NULL" in pg


def test_dialect_for_kind_names_gives_datagen_types():
    assert isinstance(dialect_for("sqlserver").datagen_type("string", length=5), sa.NVARCHAR)
    assert dialect_for("sqlite").datagen_schema("dim") is None
    assert dialect_for("duckdb").datagen_schema("fact") == "fact"


class _RecordingConnection:
    """Collects the statements a dialect issues (T-SQL cannot run on this machine)."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, object]] = []

    def exec_driver_sql(self, sql: str, parameters: object = None) -> None:
        self.statements.append((sql, parameters))


def test_sqlserver_schema_and_swap_statements():
    d = mssql.dialect()
    d.server_version_info = (16, 0, 1000)
    d._setup_version_attributes()
    sqlserver = SQLServerDialect(d)
    spec = get_schema("Retail").table("fact_sales")
    final, staging = (
        sa_table(spec, sqlserver),
        sa_table(spec, sqlserver, name="fact_sales__stg_ab12"),
    )
    connection = _RecordingConnection()
    sqlserver.ensure_schema(connection, "fact")
    sqlserver.swap_table(connection, staging, final, exists=True)
    assert connection.statements == [
        (
            "DECLARE @ddl nvarchar(400) = N'CREATE SCHEMA ' + QUOTENAME(?); IF SCHEMA_ID(?) IS NULL EXEC (@ddl)",
            ("fact", "fact"),
        ),
        ("DROP TABLE fact.fact_sales", None),
        ("EXEC sp_rename ?, ?", ("fact.fact_sales__stg_ab12", "fact_sales")),
    ]
