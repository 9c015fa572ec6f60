"""The schema catalog: each star-schema table declared once and rendered per dialect.

A table declares its columns (logical types, keys, foreign keys), how its size follows the
item's `row_count`, and a vectorised builder that produces one chunk of rows. `sa_table` turns
a declaration into a SQLAlchemy `Table` with the types the target's dialect asks for
(NVARCHAR on SQL Server, NUMBER / VARCHAR on Snowflake ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from prefect_ombudsman.errors import ConfigurationError

if TYPE_CHECKING:
    from prefect_ombudsman.datagen.chunks import ChunkContext
    from prefect_ombudsman.dialects.base import Dialect

TypeKind = Literal["int32", "int64", "decimal", "string", "date", "timestamp"]


@dataclass(frozen=True)
class ColumnType:
    """A logical column type; each dialect maps it to its own SQL type."""

    kind: TypeKind
    length: int | None = None
    precision: int | None = None
    scale: int | None = None

    def __str__(self) -> str:
        if self.kind == "decimal":
            return f"decimal({self.precision},{self.scale})"
        if self.kind == "string":
            return f"string({self.length})"
        return self.kind


INT = ColumnType("int32")
BIGINT = ColumnType("int64")
DATE = ColumnType("date")
TIMESTAMP = ColumnType("timestamp")


def DECIMAL(precision: int, scale: int) -> ColumnType:  # noqa: N802 - reads like the SQL type
    return ColumnType("decimal", precision=precision, scale=scale)


def VARCHAR(length: int) -> ColumnType:  # noqa: N802
    return ColumnType("string", length=length)


@dataclass(frozen=True)
class Column:
    """One column. `references` names the referred key as `table.column` (a star-schema FK)."""

    name: str
    type: ColumnType
    nullable: bool = True
    primary_key: bool = False
    references: str | None = None

    @property
    def is_measure(self) -> bool:
        return (
            self.type.kind in ("int32", "int64", "decimal")
            and not self.primary_key
            and not self.references
        )


Builder = Callable[["ChunkContext"], Mapping[str, Any]]


@dataclass(frozen=True)
class TableSpec:
    """A table of a star schema: columns, size rule and the builder of its rows."""

    name: str
    schema: Literal["dim", "fact"]
    columns: tuple[Column, ...]
    size: Callable[[int], int]
    build: Builder
    description: str = ""
    #: columns whose values are business keys (unique, like `customer_id`), for validators
    business_key: str | None = None
    #: a fact's main date column (for per-period metric checks)
    date_column: str | None = None

    @property
    def key(self) -> Column:
        return next(c for c in self.columns if c.primary_key)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def foreign_keys(self) -> list[Column]:
        return [c for c in self.columns if c.references]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise ConfigurationError(
            f"table {self.name!r} has no column {name!r}; its columns are: {', '.join(self.column_names)}"
        )


@dataclass(frozen=True)
class StarSchema:
    """One `schema_type`: its tables in load order (dimensions first)."""

    name: str
    tables: tuple[TableSpec, ...]
    description: str = ""
    #: the seasonal/weekday profile facts draw their dates from
    date_profile: str = "retail"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def table_names(self) -> list[str]:
        return [t.name for t in self.tables]

    def table(self, name: str) -> TableSpec:
        for t in self.tables:
            if t.name == name.strip().lower():
                return t
        raise ConfigurationError(
            f"schema {self.name!r} has no table {name!r}; valid tables: {', '.join(self.table_names)}"
        )

    def sizes(self, row_count: int, overrides: Mapping[str, int] | None = None) -> dict[str, int]:
        """Rows per table: facts get `row_count`, dimensions scale with it, `overrides` win."""
        sizes = {t.name: max(1, int(t.size(row_count))) for t in self.tables}
        for name, rows in (overrides or {}).items():
            sizes[self.table(name).name] = int(rows)
        return sizes


def sa_table(
    spec: TableSpec,
    dialect: Dialect,
    metadata: sa.MetaData | None = None,
    *,
    name: str | None = None,
) -> sa.Table:
    """The SQLAlchemy table for `spec` on `dialect` (schema `dim`/`fact` where it has schemas)."""
    columns = [
        sa.Column(
            c.name,
            dialect.datagen_type(
                c.type.kind, length=c.type.length, precision=c.type.precision, scale=c.type.scale
            ),
            nullable=c.nullable and not c.primary_key,
            primary_key=c.primary_key,
            autoincrement=False,
        )
        for c in spec.columns
    ]
    return sa.Table(
        name or spec.name,
        metadata if metadata is not None else sa.MetaData(),
        *columns,
        schema=dialect.datagen_schema(spec.schema),
    )
