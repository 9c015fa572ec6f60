"""SQL Server through pyodbc (T-SQL)."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import func, literal_column

from prefect_ombudsman.dialects.base import Dialect


class SQLServerDialect(Dialect):
    name = "sqlserver"
    has_schemas = True
    default_schema = "dbo"

    # --- metadata: catalog queries
    # INFORMATION_SCHEMA where it is complete and portable (schemas, columns, primary keys: these
    # run unchanged through pyodbc on other drivers in the tests), sys.* where it is not: row
    # counts from sys.partitions, foreign keys from sys.foreign_key_columns (INFORMATION_SCHEMA
    # misses keys that reference a unique index instead of a constraint).
    catalog_sql: ClassVar[dict[str, str]] = {
        "database": "SELECT DB_NAME() AS database_name",
        "schemas": """
            SELECT SCHEMA_NAME AS schema_name FROM INFORMATION_SCHEMA.SCHEMATA
            WHERE SCHEMA_NAME NOT IN ('sys', 'INFORMATION_SCHEMA', 'guest')
              AND SCHEMA_NAME NOT LIKE 'db[_]%'""",
        "tables": """
            SELECT s.name AS table_schema, o.name AS table_name,
                   CASE WHEN o.type = 'V' THEN 'VIEW' ELSE 'TABLE' END AS table_type,
                   rc.row_count AS row_count,
                   CAST(HAS_PERMS_BY_NAME(QUOTENAME(s.name) + '.' + QUOTENAME(o.name), 'OBJECT', 'SELECT')
                        AS BIT) AS selectable
            FROM sys.objects o
            JOIN sys.schemas s ON s.schema_id = o.schema_id
            LEFT JOIN (SELECT object_id, SUM(rows) AS row_count FROM sys.partitions
                       WHERE index_id IN (0, 1) GROUP BY object_id) rc ON rc.object_id = o.object_id
            WHERE o.type IN ('U', 'V') AND o.is_ms_shipped = 0 AND s.name IN :schemas""",
        "columns": """
            SELECT TABLE_SCHEMA AS table_schema, TABLE_NAME AS table_name, COLUMN_NAME AS column_name,
                   ORDINAL_POSITION AS ordinal_position, DATA_TYPE AS data_type,
                   CHARACTER_MAXIMUM_LENGTH AS max_length,
                   CASE WHEN DATA_TYPE IN ('decimal', 'numeric') THEN NUMERIC_PRECISION END AS numeric_precision,
                   CASE WHEN DATA_TYPE IN ('decimal', 'numeric') THEN NUMERIC_SCALE END AS numeric_scale,
                   IS_NULLABLE AS is_nullable, COLUMN_DEFAULT AS column_default
            FROM INFORMATION_SCHEMA.COLUMNS
            WHERE TABLE_SCHEMA IN :schemas""",
        "primary_keys": """
            SELECT tc.TABLE_SCHEMA AS table_schema, tc.TABLE_NAME AS table_name,
                   tc.CONSTRAINT_NAME AS constraint_name, kcu.COLUMN_NAME AS column_name,
                   kcu.ORDINAL_POSITION AS key_position
            FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS tc
            JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE kcu
              ON kcu.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND kcu.CONSTRAINT_NAME = tc.CONSTRAINT_NAME
             AND kcu.TABLE_NAME = tc.TABLE_NAME
            WHERE tc.CONSTRAINT_TYPE = 'PRIMARY KEY' AND tc.TABLE_SCHEMA IN :schemas""",
        "foreign_keys": """
            SELECT s.name AS table_schema, t.name AS table_name, fk.name AS constraint_name,
                   pc.name AS column_name, fkc.constraint_column_id AS key_position,
                   rs.name AS referred_schema, rt.name AS referred_table, rcol.name AS referred_column
            FROM sys.foreign_key_columns fkc
            JOIN sys.foreign_keys fk ON fk.object_id = fkc.constraint_object_id
            JOIN sys.tables t ON t.object_id = fkc.parent_object_id
            JOIN sys.schemas s ON s.schema_id = t.schema_id
            JOIN sys.columns pc ON pc.object_id = fkc.parent_object_id AND pc.column_id = fkc.parent_column_id
            JOIN sys.tables rt ON rt.object_id = fkc.referenced_object_id
            JOIN sys.schemas rs ON rs.schema_id = rt.schema_id
            JOIN sys.columns rcol ON rcol.object_id = fkc.referenced_object_id
             AND rcol.column_id = fkc.referenced_column_id
            WHERE s.name IN :schemas""",
    }

    def catalog_count(self) -> Any:
        """COUNT_BIG: COUNT(*) overflows at 2^31 rows on SQL Server."""
        return func.count_big(literal_column("*"))
