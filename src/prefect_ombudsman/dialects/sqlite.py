"""SQLite (embedded; no schemas: tables live in `main`)."""

from __future__ import annotations

from typing import ClassVar

from prefect_ombudsman.dialects.base import Dialect


class SQLiteDialect(Dialect):
    name = "sqlite"
    has_schemas = False
    default_schema = "main"

    # --- metadata: catalog queries
    # pragma table-valued functions joined to pragma_table_list: one statement per kind.
    # SQLite keeps no row statistics (row_count stays null unless exact counts are asked for),
    # names no foreign keys (constraint_id tells them apart), and lets a foreign key omit the
    # referred columns (meaning the referred table's primary key). Primary-key columns are
    # reported NOT NULL, as SQL defines them.
    catalog_sql: ClassVar[dict[str, str]] = {
        "database": "SELECT file AS database_name FROM pragma_database_list WHERE name = 'main'",
        "schemas": "SELECT name AS schema_name FROM pragma_database_list WHERE name <> 'temp'",
        "tables": r"""
            SELECT t.schema AS table_schema, t.name AS table_name, upper(t.type) AS table_type,
                   NULL AS row_count
            FROM pragma_table_list t
            WHERE t.type IN ('table', 'view') AND t.name NOT LIKE 'sqlite\_%' ESCAPE '\'
              AND t.schema IN :schemas""",
        "columns": r"""
            SELECT t.schema AS table_schema, t.name AS table_name, p.name AS column_name,
                   p.cid + 1 AS ordinal_position, p.type AS data_type, NULL AS max_length,
                   NULL AS numeric_precision, NULL AS numeric_scale,
                   (p."notnull" = 0 AND p.pk = 0) AS is_nullable, p.dflt_value AS column_default
            FROM pragma_table_list t JOIN pragma_table_info(t.name, t.schema) p
            WHERE t.type IN ('table', 'view') AND t.name NOT LIKE 'sqlite\_%' ESCAPE '\'
              AND t.schema IN :schemas""",
        "primary_keys": r"""
            SELECT t.schema AS table_schema, t.name AS table_name, NULL AS constraint_name,
                   p.name AS column_name, p.pk AS key_position
            FROM pragma_table_list t JOIN pragma_table_info(t.name, t.schema) p
            WHERE t.type = 'table' AND p.pk > 0 AND t.name NOT LIKE 'sqlite\_%' ESCAPE '\'
              AND t.schema IN :schemas""",
        "foreign_keys": r"""
            SELECT t.schema AS table_schema, t.name AS table_name, NULL AS constraint_name,
                   f.id AS constraint_id, f."from" AS column_name, f.seq + 1 AS key_position,
                   t.schema AS referred_schema, f."table" AS referred_table, f."to" AS referred_column
            FROM pragma_table_list t JOIN pragma_foreign_key_list(t.name, t.schema) f
            WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite\_%' ESCAPE '\'
              AND t.schema IN :schemas""",
    }
