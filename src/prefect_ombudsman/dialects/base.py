"""The SQL pieces that differ per database, behind one small interface.

Engine code asks `dialect_for(engine)` for the piece it needs (catalog queries, bulk-load path,
type mapping, row-hash expression ...) and never asks which database it is on. Each database
module subclasses `Dialect` and overrides only what differs (sqlglot-style).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, ClassVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect
from sqlalchemy.engine import Dialect as SADialect
from sqlalchemy.engine import Engine

from prefect_ombudsman.errors import (
    ConfigurationError,
    OperationCancelled,
    OperationFailed,
    TransientError,
)
from prefect_ombudsman.redaction import scrub


class Dialect:
    """Defaults shared by every database; subclasses override what differs."""

    name: ClassVar[str] = "generic"
    #: whether tables live in schemas we can create (`dim`, `fact`)
    has_schemas: ClassVar[bool] = True
    #: the schema a table without one lands in
    default_schema: ClassVar[str | None] = None

    def __init__(self, sa_dialect: SADialect | None = None) -> None:
        self.sa_dialect = sa_dialect

    # --- connections: how processes share the database
    def exclusive_use(self, url: str) -> AbstractContextManager[None]:
        """Held by each connection from before it opens until after it closes. A database only
        one process may open at a time (an embedded file) waits here for other processes."""
        return nullcontext()

    def idle_release_seconds(self, url: str) -> float | None:
        """Seconds an unused pooled connection stays open (None: until the engine is disposed).
        An embedded file closes soon after its last use, so other processes get their turn."""
        return None

    def quote(self, identifier: str) -> str:
        """Quote one identifier the way this database wants it."""
        if self.sa_dialect is None:
            return '"' + identifier.replace('"', '""') + '"'
        return self.sa_dialect.identifier_preparer.quote_identifier(identifier)

    def qualified(self, schema: str | None, table: str) -> str:
        return f"{self.quote(schema)}.{self.quote(table)}" if schema else self.quote(table)

    # --- datagen: bulk load and types
    #: whether CREATE / load / swap run inside one transaction (transactional DDL)
    transactional_ddl: ClassVar[bool] = True
    #: tables above this many rows load through a committed staging table instead of one
    #: transaction (a database that keeps uncommitted rows in memory); None: no limit
    max_rows_per_transaction: ClassVar[int | None] = None

    def datagen_schema(self, schema: str) -> str | None:
        """Where a `dim` / `fact` table lands (None: the default schema)."""
        return schema if self.has_schemas else None

    def datagen_type(
        self,
        kind: str,
        *,
        length: int | None = None,
        precision: int | None = None,
        scale: int | None = None,
    ) -> Any:
        """The SQLAlchemy type of a generated column (kinds: int32 int64 decimal string date timestamp)."""
        import sqlalchemy as sa

        types: dict[str, Any] = {
            "int32": sa.Integer(),
            "int64": sa.BigInteger(),
            "decimal": sa.Numeric(precision, scale),
            "string": sa.String(length),
            "date": sa.Date(),
            "timestamp": sa.DateTime(),
        }
        return types[kind]

    def table_ref(self, table: Any) -> str:
        """`schema.table` of a SQLAlchemy table, quoted only where this database needs it."""
        if self.sa_dialect is None:
            return self.qualified(table.schema, table.name)
        return self.sa_dialect.identifier_preparer.format_table(table)

    def column_ref(self, name: str) -> str:
        if self.sa_dialect is None:
            return self.quote(name)
        return self.sa_dialect.identifier_preparer.quote(name)

    def ensure_schema(self, connection: Any, schema: str) -> None:
        connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {self.column_ref(schema)}")

    def begin_load(self, connection: Any) -> None:
        """Called right after the load's transaction began (SQLite takes its write lock here)."""

    def bulk_insert(self, connection: Any, table: Any, batch: Any) -> None:
        """Insert an Arrow table into `table` (portable fallback: executemany of dicts)."""
        connection.execute(table.insert(), batch.to_pylist())

    def swap_table(self, connection: Any, staging: Any, final: Any, *, exists: bool) -> None:
        """Put the loaded staging table in place of `final` (same transaction where possible)."""
        if exists:
            connection.exec_driver_sql(f"DROP TABLE {self.table_ref(final)}")
        connection.exec_driver_sql(
            f"ALTER TABLE {self.table_ref(staging)} RENAME TO {self.column_ref(final.name)}"
        )

    def drop_table(self, connection: Any, table: Any) -> None:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {self.table_ref(table)}")

    def leftover_staging_tables(
        self, connection: Any, schema: str | None, table: str, mark: str
    ) -> list[str]:
        """Staging tables of `table` in `schema` that loads left behind: `<table><mark><8 hex>`."""
        pattern = re.compile(re.escape(table + mark) + r"[0-9a-f]{8}", re.IGNORECASE)
        names = inspect(connection).get_table_names(schema=schema)
        return [name for name in names if pattern.fullmatch(name)]

    # --- comparison: canonical row hash (ANSI defaults; engines override where they differ)

    def text_length(self, expr: Any) -> Any:
        """Characters of a text expression."""
        from sqlalchemy import func

        return func.length(expr)

    def concat_text(self, parts: list[Any]) -> Any:
        """The parts joined with `||` (the caller has already turned NULLs into text)."""
        from sqlalchemy import String, type_coerce

        text: Any = type_coerce(parts[0], String)
        for part in parts[1:]:
            text = text + type_coerce(part, String)
        return text

    # --- confinement (SPEC §11): what a connection may reach, and SQL that comes from outside
    #: the sqlglot dialect that parses this database's SQL (None: sqlglot's generic dialect)
    sqlglot_dialect: ClassVar[str | None] = None

    def confine_connect(self, params: dict[str, Any]) -> None:
        """Adjust the DBAPI `connect()` keyword arguments before every new connection so the
        database cannot read or write files on its own (DuckDB: external access off). Default:
        the database has no such door to close."""

    def on_connect(self, dbapi_connection: Any) -> None:
        """Session settings and guards of every new DBAPI connection (SQLite: no ATTACH)."""

    @contextmanager
    def read_only(self, dbapi_connection: Any) -> Iterator[None]:
        """Run the block in a read-only transaction of `dbapi_connection`, rolled back at the end.

        Default (SQL Server, Snowflake): these databases have no read-only transaction for a
        session, so statement classification (`dialects.statements.check_read_query`) and a
        login whose role can only read are the guards; the transaction is still rolled back.
        """
        try:
            yield
        finally:
            dbapi_connection.rollback()

    # --- transient faults: errors a later retry may get past (connection loss, restart, locks)

    def is_transient(self, exc: BaseException) -> bool:
        """True when retrying after `exc` may succeed.

        The rule every database shares: SQLAlchemy saw a disconnect (`connection_invalidated`),
        the pool timed out, or the OS reported a network error or timeout; each dialect adds
        its driver's codes in `transient_driver_error`. Errors of ours that are verdicts
        (a failed outcome, bad configuration, a cancel) are never transient."""
        for err in causes(exc):
            if isinstance(err, TransientError):
                return True
            if isinstance(err, (OperationFailed, ConfigurationError, OperationCancelled)):
                return False
            if isinstance(err, sa_exc.DBAPIError) and err.connection_invalidated:
                return True
            if isinstance(err, sa_exc.PendingRollbackError) and "invalid transaction" in str(err):
                return True  # the connection was invalidated (lost) inside a transaction
            if isinstance(err, (sa_exc.TimeoutError, ConnectionError, TimeoutError)):
                return True
            if self.transient_driver_error(err):
                return True
        return False

    def transient_driver_error(self, err: BaseException) -> bool:
        """This database's driver error that means "try again later" (codes per dialect)."""
        return False

    # --- sections added by the engines (datagen, metadata, validation, comparison) follow in subclasses


def python_columns(
    batch: Any, *, decimals: str = "decimal", temporal: str = "object"
) -> list[list[Any]]:
    """An Arrow table as Python column lists for DBAPI executemany.

    decimals: "decimal" (decimal.Decimal) or "float"; temporal: "object" (date/datetime) or
    "iso" (`YYYY-MM-DD` / `YYYY-MM-DD HH:MM:SS[.ffffff]`, the text SQLite stores).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    columns: list[list[Any]] = []
    for array in batch.columns:
        array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
        kind = array.type
        if pa.types.is_decimal(kind) and decimals == "float":
            array = array.cast(pa.float64())
        elif (
            temporal == "iso"
            and array.null_count == 0
            and (pa.types.is_date(kind) or pa.types.is_timestamp(kind))
        ):
            # numpy formats ISO text about 3x faster than Arrow's strftime
            values = array.to_numpy(zero_copy_only=False)
            if pa.types.is_date(kind):
                columns.append(np.datetime_as_string(values, unit="D").tolist())
                continue
            whole = not (values.astype("datetime64[us]").astype(np.int64) % 1_000_000).any()
            text = np.datetime_as_string(values, unit="s" if whole else "us")
            columns.append(np.char.replace(text, "T", " ").tolist())
            continue
        elif pa.types.is_date(kind) and temporal == "iso":
            array = pc.strftime(array, format="%Y-%m-%d")
        elif pa.types.is_timestamp(kind) and temporal == "iso":
            whole = pc.equal(pc.microsecond(array), 0)
            seconds = pc.strftime(array.cast(pa.timestamp("s")), format="%Y-%m-%d %H:%M:%S")
            array = (
                seconds
                if pc.all(whole).as_py() is not False
                else pc.strftime(array, format="%Y-%m-%d %H:%M:%S.%f")
            )
        if array.null_count == 0 and (
            pa.types.is_integer(kind) or pa.types.is_floating(array.type)
        ):
            columns.append(np.asarray(array).tolist())
        else:
            columns.append(array.to_pylist())
    return columns


def _dialect_classes() -> dict[str, type[Dialect]]:
    from prefect_ombudsman.dialects import duckdb, postgresql, snowflake, sqlite, sqlserver

    return {
        "sqlite": sqlite.SQLiteDialect,
        "duckdb": duckdb.DuckDBDialect,
        "postgresql": postgresql.PostgreSQLDialect,
        "snowflake": snowflake.SnowflakeDialect,
        "sqlserver": sqlserver.SQLServerDialect,
        "mssql": sqlserver.SQLServerDialect,
    }


def dialect_for(engine_or_kind: Engine | str) -> Dialect:
    """The `Dialect` for an engine or a kind name (sqlite, duckdb, postgresql, snowflake, sqlserver)."""
    classes = _dialect_classes()
    if isinstance(engine_or_kind, str):
        cls = classes.get(engine_or_kind, Dialect)
        return cls(None)
    name = engine_or_kind.dialect.name
    cls = classes.get(name, Dialect)
    return cls(engine_or_kind.dialect)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the driver error SQLAlchemy wraps (`.orig`), then its causes and contexts (no loops)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        err = todo.pop(0)
        if id(err) in seen:
            continue
        seen.add(id(err))
        yield err
        for nxt in (getattr(err, "orig", None), err.__cause__, err.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def is_transient(exc: BaseException) -> bool:
    """Whether any database's rule calls `exc` transient (for code that does not know which
    database raised it, like the batch runner; each dialect only claims its own driver's errors)."""
    classes = {*_dialect_classes().values(), Dialect}
    return any(cls(None).is_transient(exc) for cls in classes)


def driver_cause(exc: BaseException) -> str:
    """The real cause of a database error, one line: the driver's error, not SQLAlchemy's wrapper
    (`AdminShutdown: terminating connection due to administrator command`)."""
    chain = list(causes(exc))
    drivers = [e for e in chain if not isinstance(e, (sa_exc.SQLAlchemyError, TransientError))]
    err = drivers[0] if drivers else exc
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return scrub(f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": "))[:500]
