"""What every dialect shares about column types: the families, a column as a catalog
describes it (`ColumnInfo`), the constraints a table enforces (`TableFacts`), and the kinds a
row comparison renders values in.

Three readings of a type, each for its own use (all here, so a dialect can override them through
`Dialect.type_family` / `Dialect.column_kind` / `Dialect.catalog_family`):

- `type_family(data_type)`: the family validators aggregate by (integer, decimal, string ...);
- `column_kind(sa_type)`: the canonical-text kind of a reflected SQLAlchemy type (comparison);
- `catalog_family(data_type, scale)`: the coarse family catalogs are mapped by (metadata).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import types

INTEGER_TYPES = (
    "tinyint",
    "smallint",
    "mediumint",
    "bigint",
    "hugeint",
    "ubigint",
    "uinteger",
    "usmallint",
    "utinyint",
    "int2",
    "int4",
    "int8",
    "integer",
    "int",
    "serial",
    "bigserial",
    "long",
)
DECIMAL_TYPES = ("decimal", "numeric", "number", "money", "smallmoney", "dec", "fixed")
FLOAT_TYPES = (
    "double precision",
    "double",
    "float",
    "real",
    "float4",
    "float8",
    "binary_double",
    "binary_float",
)
STRING_TYPES = (
    "char",
    "varchar",
    "nvarchar",
    "nchar",
    "text",
    "ntext",
    "string",
    "character",
    "character varying",
    "clob",
    "uuid",
    "uniqueidentifier",
    "bpchar",
)
DATETIME_TYPES = (
    "timestamp",
    "datetime",
    "smalldatetime",
    "datetime2",
    "datetimeoffset",
    "timestamp_ntz",
    "timestamp_ltz",
    "timestamp_tz",
    "timestamp with time zone",
    "timestamp without time zone",
    "timestamptz",
)
BOOLEAN_TYPES = ("bool", "boolean", "bit")


def type_family(data_type: str, scale: int | None = None) -> str:
    """integer | decimal | float | string | date | datetime | time | boolean | other."""
    base = data_type.strip().lower().split("(")[0].strip()
    if base in DATETIME_TYPES or base.startswith("timestamp") or base.startswith("datetime"):
        return "datetime"
    if base == "date":
        return "date"
    if base.startswith("time"):
        return "time"
    if base in BOOLEAN_TYPES:
        return "boolean"
    if base in FLOAT_TYPES:
        return "float"
    if base in DECIMAL_TYPES:
        if base == "number" and (scale is None or scale == 0):
            return "integer"
        return "integer" if scale == 0 and base in ("decimal", "numeric") else "decimal"
    if base in INTEGER_TYPES or base.endswith("int") or base.endswith("integer"):
        return "integer"
    if base in STRING_TYPES or "char" in base or "text" in base or "string" in base:
        return "string"
    return "other"


@dataclass(frozen=True)
class ColumnInfo:
    """One column as the database's catalog describes it."""

    name: str
    data_type: str
    nullable: bool = True
    ordinal: int = 0
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None

    @property
    def family(self) -> str:
        return type_family(self.data_type, self.scale)

    @property
    def numeric(self) -> bool:
        return self.family in ("integer", "decimal", "float")

    @property
    def temporal(self) -> bool:
        return self.family in ("date", "datetime")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data_type": self.data_type,
            "nullable": self.nullable,
            "max_length": self.max_length,
            "precision": self.precision,
            "scale": self.scale,
        }


@dataclass(frozen=True)
class TableFacts:
    """What a database guarantees about a table's rows through constraints it enforces.

    `not_null`: lower-case names of columns that cannot hold NULL; `unique`: lower-case column
    sets no two rows share (a PRIMARY KEY, UNIQUE constraint or plain unique index). Only a
    dialect that knows its constraints are enforced fills these in (never Snowflake, whose
    PRIMARY KEY / UNIQUE are informational); the default knows nothing.
    """

    not_null: frozenset[str] = frozenset()
    unique: tuple[frozenset[str], ...] = ()

    def proves_unique(self, columns: list[str]) -> bool:
        """No two rows share a value of `columns` (NULLs included: every column must be NOT NULL
        for a multi-column key, as a unique index lets rows with NULLs repeat)."""
        wanted = frozenset(c.lower() for c in columns)
        if wanted not in self.unique:
            return False
        return len(wanted) == 1 or wanted <= self.not_null


CATALOG_FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "timestamp_tz",
        ("TIMESTAMPTZ", "TIMESTAMP_TZ", "TIMESTAMP_LTZ", "WITH TIME ZONE", "DATETIMEOFFSET"),
    ),
    ("timestamp", ("TIMESTAMP", "DATETIME", "SMALLDATETIME")),
    ("interval", ("INTERVAL",)),
    ("time", ("TIME",)),
    ("date", ("DATE",)),
    ("boolean", ("BOOL", "BIT")),
    ("uuid", ("UUID", "UNIQUEIDENTIFIER")),
    ("json", ("JSON", "VARIANT", "OBJECT", "ARRAY", "STRUCT", "MAP", "[]")),
    ("binary", ("BINARY", "BLOB", "BYTEA", "IMAGE")),
    ("string", ("CHAR", "TEXT", "STRING", "CLOB", "XML")),
    ("float", ("FLOAT", "REAL", "DOUBLE")),
    ("decimal", ("DECIMAL", "NUMERIC", "NUMBER", "MONEY")),
    ("integer", ("INT", "SERIAL")),
)


def catalog_family(data_type: str | None, scale: int | None = None) -> str:
    """A coarse family (integer, decimal, string, timestamp ...) that compares across databases."""
    name = (data_type or "").upper()
    for family, needles in CATALOG_FAMILIES:
        if any(n in name for n in needles):
            if family == "decimal" and scale == 0:
                return "integer"  # NUMBER(38,0) is how Snowflake spells INTEGER
            return family
    return "other" if name else "unknown"


def column_kind(sa_type: Any) -> tuple[str, int]:
    """(kind, scale) of a reflected SQLAlchemy type."""
    name = type(sa_type).__name__.upper()
    if isinstance(sa_type, types.Boolean) or name == "BIT":
        return "bool", 0
    if isinstance(sa_type, types.Integer):
        return "int", 0
    if isinstance(sa_type, types.Float) or name in ("REAL", "DOUBLE", "DOUBLE_PRECISION", "FLOAT"):
        return "float", -1
    if isinstance(sa_type, types.Numeric):
        scale = getattr(sa_type, "scale", None)
        return "decimal", -1 if scale is None else scale
    if name in (
        "DATETIMEOFFSET",
        "TIMESTAMP_TZ",
        "TIMESTAMP_LTZ",
        "TIMESTAMP_NTZ",
        "TIMESTAMPTZ",
        "SMALLDATETIME",
    ):
        return "timestamp", 0
    if isinstance(sa_type, types.DateTime):
        return "timestamp", 0
    if isinstance(sa_type, types.Date):
        return "date", 0
    if isinstance(sa_type, types.Time):
        return "time", 0
    if isinstance(sa_type, types.Uuid) or name in ("UNIQUEIDENTIFIER", "UUID"):
        return "uuid", 0
    if isinstance(sa_type, types._Binary) or name in (
        "BINARY",
        "VARBINARY",
        "BLOB",
        "BYTEA",
        "IMAGE",
    ):
        return "binary", 0
    if isinstance(sa_type, types.String):
        return ("char" if name in ("CHAR", "NCHAR", "CHARACTER", "BPCHAR") else "text"), 0
    return "other", 0


def merge_kinds(
    source: tuple[str, int], target: tuple[str, int], float_scale: int
) -> tuple[str, int]:
    """The kind (and decimal scale) both sides render a column pair in."""
    (a, sa), (b, sb) = source, target
    pair = {a, b}
    if "float" in pair and pair <= {"float", "decimal", "int", "bool"}:
        return "float", max(float_scale, sa, sb)
    if "decimal" in pair and pair <= {"decimal", "int", "bool"}:
        scale = max(sa, sb)
        return "decimal", float_scale if scale < 0 else scale
    if pair <= {"int", "bool"}:
        return ("bool" if pair == {"bool"} else "int"), 0
    if pair == {"date"}:
        return "date", 0
    if pair <= {"date", "timestamp"}:
        return "timestamp", 0
    if "uuid" in pair and pair <= {"uuid", "text", "char"}:
        return "uuid", 0
    if "char" in pair and pair <= {"char", "text"}:
        return "char", 0
    if a == b:
        return a, 0
    return "other", 0
