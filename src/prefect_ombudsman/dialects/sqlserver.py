"""SQL Server through pyodbc (T-SQL)."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import func, literal_column

from prefect_ombudsman.dialects.base import Dialect
from prefect_ombudsman.dialects.engines import open_odbc
from prefect_ombudsman.dialects.registry import register


@register
class SQLServerDialect(Dialect):
    name = "sqlserver"
    backends = ("mssql",)
    driver_aliases = {"mssql": "mssql+pyodbc", "sqlserver": "mssql+pyodbc"}
    default_port = 1433

    def create_engine(self, spec: Any) -> Any:
        """pyodbc through the spec's full ODBC string (it holds the secret, never the URL)."""
        return sa_create_engine(
            "mssql+pyodbc://",
            creator=lambda: open_odbc(spec),
            fast_executemany=True,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=10,
        )

    # no read-only session: `sql_query` relies on statement classification and a read-only role
    sqlglot_dialect = "tsql"
    has_schemas = True
    default_schema = "dbo"

    # --- datagen: bulk load and types
    def datagen_type(
        self,
        kind: str,
        *,
        length: int | None = None,
        precision: int | None = None,
        scale: int | None = None,
    ) -> Any:
        import sqlalchemy as sa
        from sqlalchemy.dialects import mssql

        if kind == "string":
            return sa.NVARCHAR(length)
        if kind == "timestamp":
            return mssql.DATETIME2()
        return super().datagen_type(kind, length=length, precision=precision, scale=scale)

    def ensure_schema(self, connection: Any, schema: str) -> None:
        # CREATE SCHEMA must be alone in its batch, hence EXEC of a built statement
        connection.exec_driver_sql(
            "DECLARE @ddl nvarchar(400) = N'CREATE SCHEMA ' + QUOTENAME(?); IF SCHEMA_ID(?) IS NULL EXEC (@ddl)",
            (schema, schema),
        )

    def bulk_insert(self, connection: Any, table: Any, batch: Any) -> None:
        self.fast_executemany(connection.connection.driver_connection, table, batch)

    def fast_executemany(
        self, dbapi_connection: Any, table: Any, batch: Any, rows_per_call: int = 20_000
    ) -> None:
        """pyodbc `executemany` with `fast_executemany` (parameter arrays, one round trip per call).

        Never use it with the SQLite ODBC driver: that combination segfaults (db-infra.md §2)."""
        from prefect_ombudsman.dialects.base import python_columns

        columns = python_columns(batch, decimals="decimal", temporal="object")
        names = ", ".join(self.column_ref(name) for name in batch.column_names)
        sql = f"INSERT INTO {self.table_ref(table)} ({names}) VALUES ({', '.join('?' for _ in columns)})"
        rows = list(zip(*columns, strict=True))
        cursor = dbapi_connection.cursor()
        try:
            cursor.fast_executemany = True
            for start in range(0, len(rows), rows_per_call):
                cursor.executemany(sql, rows[start : start + rows_per_call])
        finally:
            cursor.close()

    def swap_table(self, connection: Any, staging: Any, final: Any, *, exists: bool) -> None:
        if exists:
            connection.exec_driver_sql(f"DROP TABLE {self.table_ref(final)}")
        connection.exec_driver_sql(
            "EXEC sp_rename ?, ?", (f"{staging.schema or 'dbo'}.{staging.name}", final.name)
        )

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

    # --- comparison: canonical row hash
    # T-SQL (compiled and checked in tests; no SQL Server runs here). Text is built as NVARCHAR(MAX)
    # and hashed as UTF-8 through a _UTF8 collation (SQL Server 2019+), so NVARCHAR text hashes like
    # everywhere else; DATETIME is rounded to DATETIME2(3) (its 1/300 s ticks), DATETIMEOFFSET taken
    # in UTC; HASHBYTES('MD5') bytes 9-16 cast to BIGINT; SUM over DECIMAL(38,0) cannot overflow.
    utf8_collation: ClassVar[str] = "Latin1_General_100_BIN2_UTF8"

    def canonical_text(self, expr: Any, field: Any) -> Any:
        from sqlalchemy import Integer, Numeric, cast
        from sqlalchemy.dialects.mssql import NVARCHAR, VARCHAR

        kind, own = field.kind, field.own
        if own == "bool":
            return cast(cast(expr, Integer), VARCHAR(1))
        if kind in ("decimal", "float"):
            return cast(cast(expr, Numeric(38, field.scale)), VARCHAR(48))
        if kind == "int":
            return cast(expr, VARCHAR(24))
        if kind == "date":
            return cast(self.canonical_integer(expr, field), VARCHAR(12))
        if kind in ("timestamp", "time"):
            return cast(self.canonical_integer(expr, field), VARCHAR(24))
        if kind == "binary":
            return func.lower(func.convert(literal_column("VARCHAR(MAX)"), expr, 2))
        if kind == "uuid":
            return func.lower(func.convert(literal_column("CHAR(36)"), expr))
        text = cast(expr, NVARCHAR(None))
        if kind == "char":
            return func.rtrim(text)
        return text

    arithmetic_hash = True

    def canonical_integer(self, expr: Any, field: Any) -> Any:
        from sqlalchemy import BigInteger, cast
        from sqlalchemy.dialects.mssql import DATETIME2

        kind, own = field.kind, field.own
        type_name = type(field.sa_type).__name__.upper()
        if own == "bool" or kind in ("int", "decimal", "float"):
            return self.canonical_scaled(expr, field)
        epoch_day = func.datediff(literal_column("day"), literal_column("'19700101'"), expr)
        if kind == "date":
            return epoch_day
        if kind == "timestamp":
            if own == "date":
                return cast(epoch_day, BigInteger) * 86400000000
            if type_name == "DATETIMEOFFSET":
                expr = cast(func.switchoffset(expr, "+00:00"), DATETIME2(7))
            elif type_name in ("DATETIME", "SMALLDATETIME"):
                expr = cast(expr, DATETIME2(3))
            return func.datediff_big(
                literal_column("microsecond"),
                cast(literal_column("'19700101'"), DATETIME2(7)),
                expr,
            )
        if kind == "time":
            return func.datediff_big(
                literal_column("microsecond"), literal_column("CAST('00:00:00' AS TIME)"), expr
            )
        return None

    def text_length(self, expr: Any) -> Any:
        from sqlalchemy import collate, literal
        from sqlalchemy.dialects.mssql import NVARCHAR

        # LEN ignores trailing spaces (hence the '.'), and counts code points under an _SC collation.
        return (
            func.len(collate(expr, "Latin1_General_100_CS_AS_SC") + literal(".", NVARCHAR(1))) - 1
        )

    def concat_text(self, parts: list[Any]) -> Any:
        from sqlalchemy import String, cast, type_coerce
        from sqlalchemy.dialects.mssql import NVARCHAR

        text: Any = cast(parts[0], NVARCHAR(None))
        for part in parts[1:]:
            text = text + type_coerce(part, String)
        return text

    def row_hash(self, fields: list[Any], build_text: Any) -> list[Any]:
        from sqlalchemy import BigInteger, cast, collate
        from sqlalchemy.dialects.mssql import VARCHAR

        utf8 = cast(collate(build_text().self_group(), self.utf8_collation), VARCHAR(None))
        return [cast(func.substring(func.hashbytes("MD5", utf8), 9, 8), BigInteger)]

    def native_row_hash(self, exprs: list[Any]) -> list[Any] | None:
        """No strong 64-bit native row hash (CHECKSUM is 32-bit and collides): use the canonical one."""
        return None

    def hash_sum(self, part: Any) -> Any:
        from sqlalchemy import Numeric, cast

        return func.sum(cast(part, Numeric(38, 0)))

    def estimated_rows(self, connection: Any, schema: str | None, name: str) -> int | None:
        """Row count of the heap or clustered index from sys.partitions (no scan)."""
        from sqlalchemy import table, text

        return connection.execute(
            text(
                "SELECT SUM(rows) FROM sys.partitions WHERE object_id = OBJECT_ID(:name) AND index_id IN (0, 1)"
            ),
            {"name": self.table_ref(table(name, schema=schema))},
        ).scalar()

    # --- validation: aggregates and expressions
    # T-SQL: SUM over INT/BIGINT overflows in the column's type, so integers are summed as
    # DECIMAL(38,0); AVG over integers truncates, so it runs in DECIMAL(38, max(6, scale)); STDEV is
    # the sample deviation; periods use DATEFROMPARTS / a Monday anchor (1900-01-01 was a Monday,
    # so @@DATEFIRST does not matter). REGEXP_LIKE exists from SQL Server 2025 (17.x) only; older
    # servers get None and regex_patterns checks the distinct values in Python instead.

    def validation_exact_sum(self, expr: Any, info: Any) -> Any:
        from sqlalchemy import Numeric, cast

        if info.family == "integer":
            return func.sum(cast(expr, Numeric(38, 0)))
        if info.family == "decimal":
            return cast(
                func.sum(expr), Numeric(38, min(info.scale if info.scale is not None else 6, 18))
            )
        return func.sum(expr)

    def validation_exact_avg(self, expr: Any, info: Any) -> Any:
        from sqlalchemy import Numeric, cast

        if info.family in ("integer", "decimal"):
            return func.avg(cast(expr, Numeric(38, max(6, info.scale or 0))))
        return func.avg(expr)

    def validation_stddev(self, expr: Any, info: Any) -> Any:
        from sqlalchemy import Float, cast

        return func.stdev(cast(expr, Float))

    def validation_period_start(self, expr: Any, grain: str) -> Any:
        from sqlalchemy import Date, cast, literal_column

        if grain == "day":
            return cast(expr, Date)
        if grain == "week":
            anchor: Any = literal_column("CAST('19000101' AS DATE)")
            days = func.datediff(literal_column("day"), anchor, expr)
            return cast(func.dateadd(literal_column("day"), (days / 7) * 7, anchor), Date)
        year = func.year(expr)
        if grain == "month":
            return func.datefromparts(year, func.month(expr), 1)
        if grain == "quarter":
            quarter = func.datepart(literal_column("quarter"), expr)
            return func.datefromparts(year, (quarter - 1) * 3 + 1, 1)
        return func.datefromparts(year, 1, 1)

    def validation_regex_full_match(self, expr: Any, pattern: str) -> Any:
        from sqlalchemy import NVARCHAR, cast, literal

        version = getattr(self.sa_dialect, "server_version_info", None) or (0,)
        if version[0] < 17:
            return None
        return func.regexp_like(cast(expr, NVARCHAR(None)), literal(f"^(?:{pattern})$"))

    # --- transient faults (pyodbc): ODBC SQLSTATEs and SQL Server / Azure SQL native codes

    #: communication link failure, cannot connect, timeout expired, connection timeout,
    #: serialization failure (deadlock victim)
    TRANSIENT_SQLSTATES: ClassVar[frozenset[str]] = frozenset(
        {"08S01", "08001", "08004", "HYT00", "HYT01", "40001"}
    )
    #: deadlock victim, lock request timeout, Azure SQL unavailable / reconfiguring / throttled
    #: / resource limits, cannot open database (failover), transport-level errors
    TRANSIENT_CODES: ClassVar[frozenset[int]] = frozenset(
        {1205, 1222, 40613, 40197, 40501, 49918, 49919, 49920, 10928, 10929, 4060, 233,
         64, 10053, 10054, 10060, 4221}
    )  # fmt: skip

    def transient_driver_error(self, err: BaseException) -> bool:
        import re

        if not type(err).__module__.startswith(("pyodbc", "pymssql", "_mssql")):
            return False
        args = [str(a) for a in getattr(err, "args", ())]
        if args and args[0].upper() in self.TRANSIENT_SQLSTATES:
            return True
        text = " ".join(args)
        # the native error number is in parentheses after the message: "... (1205) (SQLExecDirectW)"
        codes = {int(n) for n in re.findall(r"\((\d{2,5})\)", text)}
        if isinstance(getattr(err, "args", (None,))[0], int):
            codes.add(err.args[0])  # pymssql: (number, message)
        return bool(codes & self.TRANSIENT_CODES)
