"""Snowflake (real accounts; fakesnow in tests)."""

from __future__ import annotations

from typing import ClassVar

from prefect_ombudsman.dialects.base import Dialect


class SnowflakeDialect(Dialect):
    name = "snowflake"
    has_schemas = True
    default_schema = "PUBLIC"

    # --- metadata: catalog queries
    # INFORMATION_SCHEMA of the current database plus SHOW ... IN DATABASE for keys (Snowflake
    # has no KEY_COLUMN_USAGE view). A tuple lists alternatives tried in order: fakesnow lacks
    # SHOW ... IN DATABASE but has KEY_COLUMN_USAGE, and lists views only in VIEWS.
    catalog_sql: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "database": "SELECT current_database() AS database_name",
        "schemas": (
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name <> 'INFORMATION_SCHEMA'"
        ),
        "tables": """
            SELECT table_schema, table_name, 'TABLE' AS table_type, row_count
            FROM information_schema.tables
            WHERE table_type NOT LIKE '%VIEW' AND table_schema IN :schemas
            UNION ALL
            SELECT table_schema, table_name, 'VIEW' AS table_type, NULL AS row_count
            FROM information_schema.views
            WHERE table_schema IN :schemas""",
        "columns": """
            SELECT table_schema, table_name, column_name, ordinal_position, data_type,
                   character_maximum_length AS max_length,
                   CASE WHEN data_type IN ('NUMBER', 'DECIMAL', 'NUMERIC') THEN numeric_precision END
                       AS numeric_precision,
                   CASE WHEN data_type IN ('NUMBER', 'DECIMAL', 'NUMERIC') THEN numeric_scale END
                       AS numeric_scale,
                   is_nullable, column_default
            FROM information_schema.columns
            WHERE table_schema IN :schemas""",
        "primary_keys": (
            "SHOW PRIMARY KEYS IN DATABASE",
            """
            SELECT tc.table_schema, tc.table_name, tc.constraint_name, kcu.column_name,
                   kcu.ordinal_position AS key_position
            FROM information_schema.table_constraints tc
            JOIN information_schema.key_column_usage kcu
              ON kcu.constraint_schema = tc.constraint_schema
             AND kcu.constraint_name = tc.constraint_name AND kcu.table_name = tc.table_name
            WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema IN :schemas""",
        ),
        "foreign_keys": (
            "SHOW IMPORTED KEYS IN DATABASE",
            """
            SELECT fk.table_schema, fk.table_name, rc.constraint_name, fk.column_name,
                   fk.ordinal_position AS key_position, pk.table_schema AS referred_schema,
                   pk.table_name AS referred_table, pk.column_name AS referred_column
            FROM information_schema.referential_constraints rc
            JOIN information_schema.key_column_usage fk
              ON fk.constraint_schema = rc.constraint_schema AND fk.constraint_name = rc.constraint_name
            JOIN information_schema.key_column_usage pk
              ON pk.constraint_schema = rc.unique_constraint_schema
             AND pk.constraint_name = rc.unique_constraint_name
             AND pk.ordinal_position = fk.position_in_unique_constraint
            WHERE fk.table_schema IN :schemas""",
        ),
    }
    #: SHOW output column names -> the row shape of metadata/extract.py, per kind
    catalog_row_aliases: ClassVar[dict[str, dict[str, str]]] = {
        "primary_keys": {"schema_name": "table_schema", "key_sequence": "key_position"},
        "foreign_keys": {
            "fk_schema_name": "table_schema",
            "fk_table_name": "table_name",
            "fk_column_name": "column_name",
            "fk_name": "constraint_name",
            "key_sequence": "key_position",
            "pk_schema_name": "referred_schema",
            "pk_table_name": "referred_table",
            "pk_column_name": "referred_column",
        },
    }
