"""PostgreSQL."""

from __future__ import annotations

from typing import ClassVar

from prefect_ombudsman.dialects.base import Dialect


class PostgreSQLDialect(Dialect):
    name = "postgresql"
    has_schemas = True
    default_schema = "public"

    # --- metadata: catalog queries
    # One statement per kind for the whole database (pg_catalog: faster than information_schema
    # and it also lists tables the user may not read). Row shapes: metadata/extract.py.
    catalog_sql: ClassVar[dict[str, str]] = {
        "database": "SELECT current_database() AS database_name",
        "schemas": (
            "SELECT n.nspname AS schema_name FROM pg_catalog.pg_namespace n "
            "WHERE left(n.nspname, 3) <> 'pg_' AND n.nspname <> 'information_schema'"
        ),
        "tables": """
            SELECT n.nspname AS table_schema, c.relname AS table_name,
                   CASE WHEN c.relkind IN ('v', 'm') THEN 'VIEW' ELSE 'TABLE' END AS table_type,
                   CASE WHEN c.relkind IN ('v', 'm') THEN NULL
                        WHEN c.reltuples >= 0 THEN c.reltuples::bigint
                        ELSE pg_catalog.pg_stat_get_live_tuples(c.oid) END AS row_count,
                   pg_catalog.has_table_privilege(c.oid, 'SELECT') AS selectable
            FROM pg_catalog.pg_class c
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
              AND n.nspname IN :schemas""",
        "columns": """
            SELECT n.nspname AS table_schema, c.relname AS table_name, a.attname AS column_name,
                   a.attnum AS ordinal_position,
                   pg_catalog.format_type(a.atttypid, NULL) AS data_type,
                   CASE WHEN a.atttypid IN (1042, 1043) AND a.atttypmod > 0 THEN a.atttypmod - 4 END AS max_length,
                   CASE WHEN a.atttypid = 1700 AND a.atttypmod > 0 THEN ((a.atttypmod - 4) >> 16) & 65535 END
                       AS numeric_precision,
                   CASE WHEN a.atttypid = 1700 AND a.atttypmod > 0 THEN (a.atttypmod - 4) & 65535 END
                       AS numeric_scale,
                   NOT a.attnotnull AS is_nullable,
                   pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS column_default
            FROM pg_catalog.pg_attribute a
            JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attnum > 0 AND NOT a.attisdropped
              AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
              AND n.nspname IN :schemas""",
        "primary_keys": """
            SELECT n.nspname AS table_schema, c.relname AS table_name, con.conname AS constraint_name,
                   a.attname AS column_name, k.ord AS key_position
            FROM pg_catalog.pg_constraint con
            JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
            WHERE con.contype = 'p' AND NOT c.relispartition AND n.nspname IN :schemas""",
        "foreign_keys": """
            SELECT n.nspname AS table_schema, c.relname AS table_name, con.conname AS constraint_name,
                   a.attname AS column_name, k.ord AS key_position,
                   rn.nspname AS referred_schema, rc.relname AS referred_table, ra.attname AS referred_column
            FROM pg_catalog.pg_constraint con
            JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid
            JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
            CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(attnum, refnum, ord)
            JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
            JOIN pg_catalog.pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = k.refnum
            WHERE con.contype = 'f' AND con.conparentid = 0 AND NOT c.relispartition
              AND n.nspname IN :schemas""",
    }
