"""Loading one table into one target: a staging table, the fastest bulk path, one swap.

Where DDL is transactional (SQLite, DuckDB, PostgreSQL, SQL Server) the staging table is
created, filled and renamed over the old table inside ONE transaction: a failure, a cancel or a
killed process leaves the old table exactly as it was. On Snowflake (DDL commits implicitly),
and on DuckDB for tables above `max_rows_per_transaction` (DuckDB keeps uncommitted rows in
memory), the staging table is filled and committed batch by batch, then swapped in at the end
(`ALTER TABLE ... SWAP WITH` on Snowflake, DROP + RENAME in one transaction on DuckDB). The
target table is never partial; a failed load drops its staging table, and the next load of the
same table sweeps one left by a killed process.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from prefect_ombudsman.datagen.catalog import TableSpec, sa_table
from prefect_ombudsman.dialects.base import Dialect, dialect_for
from prefect_ombudsman.errors import ConfigurationError

STAGING_MARK = "__stg_"
IF_EXISTS = ("replace", "append", "fail")

# One load per (database, schema, table) at a time in this process: two operations that both
# write dim_date into the same database would otherwise race on the swap.
_TABLE_LOCKS: dict[tuple[str, str, str], threading.Lock] = {}
_TABLE_LOCKS_GUARD = threading.Lock()


def _table_lock(key: tuple[str, str, str]) -> threading.Lock:
    with _TABLE_LOCKS_GUARD:
        return _TABLE_LOCKS.setdefault(key, threading.Lock())


@dataclass
class Target:
    """A database to load: how the request named it, and its engine."""

    label: str
    engine: Engine
    dialect: Dialect = field(init=False)

    def __post_init__(self) -> None:
        self.dialect = dialect_for(self.engine)

    @property
    def identity(self) -> str:
        return self.engine.url.render_as_string(hide_password=True) + f"#{id(self.engine)}"


def prepare_target(target: Target, tables: tuple[TableSpec, ...], if_exists: str) -> None:
    """Reach the target, create the `dim`/`fact` schemas it needs, refuse existing tables for if_exists=fail."""
    dialect = target.dialect
    # Two operations creating the same schema at once conflict on DuckDB ("Catalog write-write
    # conflict"): one schema set-up per database at a time.
    with _table_lock((target.identity, "", "")), target.engine.connect() as connection:
        if dialect.has_schemas:
            for schema in sorted({t.schema for t in tables}):
                name = dialect.datagen_schema(schema)
                if name:
                    dialect.ensure_schema(connection, name)
            connection.commit()
        if if_exists == "fail":
            inspector = sa.inspect(connection)
            for table in tables:
                in_schema = dialect.datagen_schema(table.schema)
                if inspector.has_table(table.name, schema=in_schema):
                    where = f"{in_schema}.{table.name}" if in_schema else table.name
                    raise ConfigurationError(
                        f"table {where} already exists in target {target.label!r} (if_exists=fail)"
                    )


class TableLoad:
    """One table into one target; `open`, then `write` batches, then `finish` (or `abort`)."""

    def __init__(
        self, target: Target, spec: TableSpec, if_exists: str = "replace", rows: int | None = None
    ) -> None:
        if if_exists not in IF_EXISTS:
            raise ConfigurationError(
                f"if_exists must be one of {', '.join(IF_EXISTS)}, got {if_exists!r}"
            )
        self.target = target
        self.spec = spec
        self.if_exists = if_exists
        self.dialect = target.dialect
        metadata = sa.MetaData()
        self.final = sa_table(spec, self.dialect, metadata)
        self.staging = sa_table(
            spec, self.dialect, metadata, name=f"{spec.name}{STAGING_MARK}{secrets.token_hex(4)}"
        )
        self.connection: sa.Connection | None = None
        self.transaction: sa.RootTransaction | None = None
        self.exists = False
        self.rows = 0
        self.seconds = 0.0
        self._lock = _table_lock((target.identity, self.final.schema or "", spec.name))
        self._locked = False
        limit = self.dialect.max_rows_per_transaction
        #: create, fill and swap in one transaction (else: committed staging batches + one swap)
        self.single_transaction = self.dialect.transactional_ddl and (
            limit is None or rows is None or rows <= limit
        )

    @property
    def lock_key(self) -> tuple[str, str, str]:
        return (self.target.identity, self.final.schema or "", self.spec.name)

    def open(self) -> None:
        started = time.perf_counter()
        self._lock.acquire()
        self._locked = True
        try:
            self.connection = self.target.engine.connect()
            inspector = sa.inspect(self.connection)
            self.exists = inspector.has_table(self.final.name, schema=self.final.schema)
            if self.exists and self.if_exists == "fail":
                raise ConfigurationError(
                    f"table {self.where} already exists in target {self.target.label!r} (if_exists=fail)"
                )
            # whatever mode this load runs in, a staging table of this table that a killed
            # load committed earlier (DuckDB above max_rows_per_transaction, Snowflake) goes
            self._sweep_stale_staging()
            self.connection.commit()
            self.transaction = self.connection.begin()
            self.dialect.begin_load(self.connection)
            self.staging.create(self.connection)
            if not self.single_transaction:
                self.transaction.commit()
                self.transaction = self.connection.begin()
        except BaseException:
            self.abort()
            raise
        finally:
            self.seconds += time.perf_counter() - started

    @property
    def where(self) -> str:
        return f"{self.final.schema}.{self.final.name}" if self.final.schema else self.final.name

    def write(self, batch: pa.Table) -> None:
        if batch.num_rows == 0:
            return
        assert self.connection is not None, "open() first"
        started = time.perf_counter()
        self.dialect.bulk_insert(self.connection, self.staging, batch)
        if not self.single_transaction and self.transaction is not None:
            self.transaction.commit()  # bounded memory: the staging table is not the target
            self.transaction = self.connection.begin()
        self.rows += batch.num_rows
        self.seconds += time.perf_counter() - started

    def finish(self) -> None:
        """Swap the staging table in (or append it) and commit."""
        assert self.connection is not None and self.transaction is not None, "open() first"
        started = time.perf_counter()
        try:
            if self.if_exists == "append" and self.exists:
                columns = [c.name for c in self.final.columns]
                self.connection.execute(
                    self.final.insert().from_select(columns, sa.select(*self.staging.columns))
                )
                self.dialect.drop_table(self.connection, self.staging)
            else:
                self.dialect.swap_table(
                    self.connection, self.staging, self.final, exists=self.exists
                )
            self.transaction.commit()
        except BaseException:
            self.abort()
            raise
        finally:
            self.seconds += time.perf_counter() - started
        self._close()

    def abort(self) -> None:
        """Roll back; drop a committed staging table. Never raises."""
        if self.connection is not None:
            try:
                if self.transaction is not None and self.transaction.is_active:
                    self.transaction.rollback()
            except Exception:
                pass
            if not self.single_transaction:
                try:
                    with self.target.engine.begin() as connection:
                        self.dialect.drop_table(connection, self.staging)
                except Exception:
                    pass
        self._close()

    def _close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:
                pass
            self.connection = None
        self.transaction = None
        if self._locked:
            self._locked = False
            self._lock.release()

    def _sweep_stale_staging(self) -> None:
        """Drop staging tables of this table left by a killed load (`<table>__stg_<8 hex>`).

        Another load of the same table in this process waits on `_lock`; an uncommitted staging
        table of a running load elsewhere is invisible here (transactional DDL)."""
        assert self.connection is not None
        for name in self.dialect.leftover_staging_tables(
            self.connection, self.final.schema, self.spec.name, STAGING_MARK
        ):
            stale = sa.Table(name, sa.MetaData(), schema=self.final.schema)
            self.dialect.drop_table(self.connection, stale)
