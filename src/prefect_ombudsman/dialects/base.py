"""The SQL pieces that differ per database, behind one small interface.

Engine code asks `dialect_for(engine)` for the piece it needs (catalog queries, bulk-load path,
type mapping, row-hash expression ...) and never asks which database it is on. Each database
module subclasses `Dialect` and overrides only what differs (sqlglot-style).
"""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy.engine import Dialect as SADialect
from sqlalchemy.engine import Engine


class Dialect:
    """Defaults shared by every database; subclasses override what differs."""

    name: ClassVar[str] = "generic"
    #: whether tables live in schemas we can create (`dim`, `fact`)
    has_schemas: ClassVar[bool] = True
    #: the schema a table without one lands in
    default_schema: ClassVar[str | None] = None

    def __init__(self, sa_dialect: SADialect | None = None) -> None:
        self.sa_dialect = sa_dialect

    def quote(self, identifier: str) -> str:
        """Quote one identifier the way this database wants it."""
        if self.sa_dialect is None:
            return '"' + identifier.replace('"', '""') + '"'
        return self.sa_dialect.identifier_preparer.quote_identifier(identifier)

    def qualified(self, schema: str | None, table: str) -> str:
        return f"{self.quote(schema)}.{self.quote(table)}" if schema else self.quote(table)

    # --- sections added by the engines (datagen, metadata, validation, comparison) follow in subclasses


def dialect_for(engine_or_kind: Engine | str) -> Dialect:
    """The `Dialect` for an engine or a kind name (sqlite, duckdb, postgresql, snowflake, sqlserver)."""
    from prefect_ombudsman.dialects import duckdb, postgresql, snowflake, sqlite, sqlserver

    classes: dict[str, type[Dialect]] = {
        "sqlite": sqlite.SQLiteDialect,
        "duckdb": duckdb.DuckDBDialect,
        "postgresql": postgresql.PostgreSQLDialect,
        "snowflake": snowflake.SnowflakeDialect,
        "sqlserver": sqlserver.SQLServerDialect,
        "mssql": sqlserver.SQLServerDialect,
    }
    if isinstance(engine_or_kind, str):
        cls = classes.get(engine_or_kind, Dialect)
        return cls(None)
    name = engine_or_kind.dialect.name
    cls = classes.get(name, Dialect)
    return cls(engine_or_kind.dialect)
