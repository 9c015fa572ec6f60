"""DuckDB (embedded)."""

from __future__ import annotations

from typing import ClassVar

from prefect_ombudsman.dialects.base import Dialect


class DuckDBDialect(Dialect):
    name = "duckdb"
    has_schemas = True
    default_schema = "main"

    # --- metadata: catalog queries
    # duckdb_*() functions: one statement per kind (duckdb-engine's inspector fails on REGCLASS).
    # Foreign keys cannot cross schemas in DuckDB, so the referred schema is the table's own.
    catalog_sql: ClassVar[dict[str, str]] = {
        "database": "SELECT current_database() AS database_name",
        "schemas": """
            SELECT schema_name FROM duckdb_schemas()
            WHERE database_name = current_database()
              AND schema_name NOT IN ('information_schema', 'pg_catalog')""",
        "tables": """
            SELECT schema_name AS table_schema, table_name, 'TABLE' AS table_type,
                   estimated_size AS row_count
            FROM duckdb_tables()
            WHERE database_name = current_database() AND NOT internal AND NOT temporary
              AND schema_name IN :schemas
            UNION ALL
            SELECT schema_name, view_name, 'VIEW', NULL
            FROM duckdb_views()
            WHERE database_name = current_database() AND NOT internal AND NOT temporary
              AND schema_name IN :schemas""",
        "columns": """
            SELECT schema_name AS table_schema, table_name, column_name,
                   column_index AS ordinal_position, data_type,
                   character_maximum_length AS max_length,
                   CASE WHEN starts_with(data_type, 'DECIMAL') THEN numeric_precision END AS numeric_precision,
                   CASE WHEN starts_with(data_type, 'DECIMAL') THEN numeric_scale END AS numeric_scale,
                   is_nullable, column_default
            FROM duckdb_columns()
            WHERE database_name = current_database() AND NOT internal AND schema_name IN :schemas""",
        "primary_keys": """
            SELECT schema_name AS table_schema, table_name, constraint_name,
                   unnest(constraint_column_names) AS column_name,
                   generate_subscripts(constraint_column_names, 1) AS key_position
            FROM duckdb_constraints()
            WHERE constraint_type = 'PRIMARY KEY' AND database_name = current_database()
              AND schema_name IN :schemas""",
        "foreign_keys": """
            SELECT schema_name AS table_schema, table_name, constraint_name,
                   unnest(constraint_column_names) AS column_name,
                   generate_subscripts(constraint_column_names, 1) AS key_position,
                   schema_name AS referred_schema, referenced_table AS referred_table,
                   unnest(referenced_column_names) AS referred_column
            FROM duckdb_constraints()
            WHERE constraint_type = 'FOREIGN KEY' AND database_name = current_database()
              AND schema_name IN :schemas""",
    }
