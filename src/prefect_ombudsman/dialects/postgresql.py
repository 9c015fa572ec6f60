"""PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from sqlalchemy import create_engine as sa_create_engine

from prefect_ombudsman.dialects.base import Dialect
from prefect_ombudsman.dialects.registry import register
from prefect_ombudsman.dialects.types import TableFacts


@register
class PostgreSQLDialect(Dialect):
    name = "postgresql"
    backends = ("postgresql",)
    driver_aliases = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
    default_port = 5432

    def create_engine(self, spec: Any) -> Any:
        args = spec.connect_args
        args.setdefault("connect_timeout", spec.login_timeout)
        return sa_create_engine(
            self.engine_url(spec),
            connect_args=args,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=10,
        )

    def interrupt(self, dbapi_connection: Any, cursor: Any | None) -> None:
        """psycopg 3: `cancel_safe()` (psycopg2: `cancel()`)."""
        raw = self.driver_connection(dbapi_connection)
        if callable(getattr(raw, "cancel_safe", None)):
            raw.cancel_safe(timeout=5.0)
        else:
            raw.cancel()

    sqlglot_dialect = "postgres"

    @contextmanager
    def read_only(self, dbapi_connection: Any) -> Iterator[None]:
        """`SET TRANSACTION READ ONLY` first in a fresh transaction: any write fails (SQLSTATE 25006)."""
        dbapi_connection.rollback()
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET TRANSACTION READ ONLY")
            yield
        finally:
            cursor.close()
            dbapi_connection.rollback()

    has_schemas = True
    default_schema = "public"

    # --- datagen: bulk load and types
    def bulk_insert(self, connection: Any, table: Any, batch: Any) -> None:
        """COPY ... FROM STDIN of CSV written by Arrow (NULL unquoted, empty strings quoted)."""
        import pyarrow as pa
        import pyarrow.csv as pa_csv

        sink = pa.BufferOutputStream()
        pa_csv.write_csv(
            batch, sink, pa_csv.WriteOptions(include_header=False, quoting_style="needed")
        )
        names = ", ".join(self.column_ref(name) for name in batch.column_names)
        driver = connection.connection.driver_connection
        with driver.cursor() as cursor:
            with cursor.copy(
                f"COPY {self.table_ref(table)} ({names}) FROM STDIN (FORMAT csv)"
            ) as copy:
                copy.write(memoryview(sink.getvalue()))

    def swap_table(self, connection: Any, staging: Any, final: Any, *, exists: bool) -> None:
        super().swap_table(connection, staging, final, exists=exists)
        # the primary key keeps the staging name otherwise; give it the name CREATE TABLE would have
        if any(column.primary_key for column in final.columns):
            connection.exec_driver_sql(
                f"ALTER TABLE {self.table_ref(final)} RENAME CONSTRAINT "
                f"{self.column_ref(staging.name + '_pkey')} TO {self.column_ref(final.name + '_pkey')}"
            )

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

    # --- comparison: canonical row hash
    # Recipes of reference/peers-validation.md §8: canonical text per value (field.kind is the kind
    # both sides agreed on, field.own this side's own kind), MD5, its last 8 bytes as a signed
    # BIGINT (through bit(64)); SUM(bigint) is NUMERIC in PostgreSQL, so it never overflows.

    def canonical_text(self, expr: Any, field: Any) -> Any:
        from sqlalchemy import (
            Integer,
            Numeric,
            Text,
            cast,
            func,
        )

        kind, own = field.kind, field.own
        if own == "bool":
            return cast(cast(expr, Integer), Text)
        if kind in ("decimal", "float"):
            return cast(cast(expr, Numeric(38, field.scale)), Text)
        if kind in ("int", "date", "timestamp", "time"):
            return cast(self.canonical_integer(expr, field), Text)
        if kind == "binary":
            return func.encode(expr, "hex")
        if kind == "uuid":
            return func.lower(cast(expr, Text))
        if kind == "char":
            return func.rtrim(cast(expr, Text), " ")
        return cast(expr, Text)

    arithmetic_hash = True
    # Measured (1M rows, 10 columns, 2 cores): the arithmetic lanes' NUMERIC/BIGINT chains cost
    # more than one MD5 of the row text here (level 1 4.5 s against 3.6 s), so pairs with a
    # PostgreSQL side hash by MD5 unless `hash_mode: arithmetic` asks otherwise
    arithmetic_hash_preferred = False

    def canonical_integer(self, expr: Any, field: Any) -> Any:
        from sqlalchemy import BigInteger, cast, extract, literal_column

        kind, own = field.kind, field.own
        if own == "bool" or kind in ("int", "decimal", "float"):
            return self.canonical_scaled(expr, field)
        if kind == "date":
            return expr - literal_column("DATE '1970-01-01'")
        if kind == "timestamp":
            if own == "date":
                return cast(expr - literal_column("DATE '1970-01-01'"), BigInteger) * 86400000000
            return cast(extract("epoch", expr) * 1000000, BigInteger)
        if kind == "time":
            return cast(extract("epoch", expr) * 1000000, BigInteger)
        return None

    def canonical_text_hash(self, text: Any) -> Any:
        """The last 15 hex digits of md5() through bit(64) (the low 60 bits)."""
        from sqlalchemy import BigInteger, cast, func, literal
        from sqlalchemy.dialects.postgresql import BIT

        return cast(cast(literal("x0") + func.right(func.md5(text), 15), BIT(64)), BigInteger)

    def row_hash(self, fields: list[Any], build_text: Any) -> list[Any]:
        from sqlalchemy import BigInteger, cast, func, literal
        from sqlalchemy.dialects.postgresql import BIT

        digest = func.right(func.md5(build_text()), 16)
        return [cast(cast(literal("x") + digest, BIT(64)), BigInteger)]

    def native_row_hash(self, exprs: list[Any]) -> list[Any] | None:
        """hash_record_extended: the 64-bit hash PostgreSQL's hash partitioning uses (PG 14+)."""
        from sqlalchemy import func

        return [func.hash_record_extended(func.row(*exprs), 0)]

    def fence(self, query: Any) -> Any:
        """OFFSET 0 keeps the planner from inlining the subquery (and hashing each row twice)."""
        return query.offset(0)

    def estimated_rows(self, connection: Any, schema: str | None, name: str) -> int | None:
        """The planner's row estimate (also sized from the pages of a never-analyzed table)."""
        from sqlalchemy import table

        plan = connection.exec_driver_sql(
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {self.table_ref(table(name, schema=schema))}"
        ).scalar()
        return int(plan[0]["Plan"]["Plan Rows"])

    def prepare_comparison(self, connection: Any, *, memory_limit_mb: int | None = None) -> None:
        """For this transaction only: no JIT (compiling the hash expression costs more than it
        saves), and work_mem enough for the bucket aggregate never to spill."""
        connection.exec_driver_sql("SET LOCAL jit = off")
        connection.exec_driver_sql("SET LOCAL work_mem = '64MB'")

    # --- validation: aggregates and expressions
    # Every validation query runs in its own short transaction; SET LOCAL ends with it.
    # work_mem 64MB: COUNT(DISTINCT) sorts inside the aggregate, and at the default 4MB a
    # 1M-row key spills to disk (~130 ms instead of ~70 ms).
    VALIDATION_WORK_MEM = "64MB"

    def validation_prepare_connection(self, conn: Any) -> None:
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{self.VALIDATION_WORK_MEM}'")

    def validation_distinct_alone(self, info: Any, bounds: Any) -> bool:
        """COUNT(DISTINCT) cannot run in parallel workers: kept out of the shared scan so that scan can."""
        return True

    def validation_avg_from_sum(self, info: Any) -> bool:
        """AVG(numeric) runs a second NUMERIC accumulator beside SUM's: fold SUM / COUNT instead."""
        return bool(info.family in ("integer", "decimal"))

    # PostgreSQL enforces NOT NULL on tables (not on foreign tables, whose constraints are
    # declarations only) and uniqueness through valid, non-partial unique indexes on plain
    # columns (PRIMARY KEY and UNIQUE constraints are such indexes; INCLUDE columns are not key).
    # A SELECT from a table with inheritance children reads their rows too, which its own index
    # does not cover and which may hold NULLs (a child may DROP NOT NULL); a partitioned table's
    # unique indexes and NOT NULL do cover its partitions.
    _FACTS_SQL = """
        SELECT 0 AS index_oid, a.attname::text AS column_name
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = :schema AND c.relname = :name
          AND (c.relkind = 'p' OR (c.relkind = 'r' AND NOT c.relhassubclass))
          AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull
        UNION ALL
        SELECT i.indexrelid::bigint, a.attname::text
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE n.nspname = :schema AND c.relname = :name
          AND (c.relkind IN ('p', 'm') OR (c.relkind = 'r' AND NOT c.relhassubclass))
          AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
          AND k.ord <= i.indnkeyatts"""

    reads_enforced_facts = True

    def validation_enforced_facts(self, conn: Any, schema: str | None, name: str) -> Any:
        from sqlalchemy import text

        rows = conn.execute(
            text(self._FACTS_SQL), {"schema": schema or self.default_schema, "name": name}
        ).all()
        not_null = frozenset(str(col).lower() for oid, col in rows if oid == 0)
        keys: dict[int, set[str]] = {}
        for oid, col in rows:
            if oid != 0:
                keys.setdefault(int(oid), set()).add(str(col).lower())
        return TableFacts(not_null, tuple(dict.fromkeys(frozenset(k) for k in keys.values())))

    # POSIX regex with `~` (anchored, so the whole value must match); the rest is the default.

    def validation_regex_full_match(self, expr: Any, pattern: str) -> Any:
        from sqlalchemy import Text, cast, literal

        return cast(expr, Text).op("~")(literal(f"^(?:{pattern})$"))

    # --- transient faults (psycopg 3 / psycopg2): SQLSTATE classes and connect-time failures

    #: connection exception (08), serialization failure, deadlock, lock not available, admin /
    #: crash shutdown, cannot connect now (starting up), too many connections
    TRANSIENT_SQLSTATES: ClassVar[frozenset[str]] = frozenset(
        {"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"}
    )
    #: a server-side refusal at connect time that passes (psycopg gives no SQLSTATE there)
    TRANSIENT_FATAL: ClassVar[tuple[str, ...]] = (
        "the database system is starting up",
        "the database system is shutting down",
        "the database system is in recovery mode",
        "the database system is not yet accepting connections",
        "sorry, too many clients already",
        "terminating connection due to administrator command",
    )

    def transient_driver_error(self, err: BaseException) -> bool:
        if not type(err).__module__.startswith(("psycopg", "psycopg2")):
            return False
        code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if code:
            return str(code).startswith("08") or code in self.TRANSIENT_SQLSTATES
        if type(err).__name__ != "OperationalError":
            return False
        # no SQLSTATE: a client-side connection failure (refused, timed out, closed) is
        # transient; a FATAL the server sent while refusing (no such database, bad password) is
        # not, unless it says the server is starting, stopping or full
        text = str(err)
        return "FATAL:" not in text or any(phrase in text for phrase in self.TRANSIENT_FATAL)
