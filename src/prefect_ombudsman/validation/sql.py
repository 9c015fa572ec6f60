"""The SQL pieces validators need, asked of the dialect (never `if dialect == ...`).

Each piece has a portable default here; a database that differs defines a method named
`validation_<piece>` in its `dialects/<db>.py` class (section "validation: aggregates and
expressions"), and that method wins. Everything is SQLAlchemy Core: identifiers quoted by the
dialect, values bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Double, Numeric, case, cast, column, func, literal, select, table
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from prefect_ombudsman.dialects.base import Dialect

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


_COLUMNS = table(
    "columns",
    column("table_schema"),
    column("table_name"),
    column("column_name"),
    column("data_type"),
    column("is_nullable"),
    column("character_maximum_length"),
    column("numeric_precision"),
    column("numeric_scale"),
    column("ordinal_position"),
    schema="information_schema",
).alias("c")  # aliased: fakesnow rewrites the table name but not column qualifiers
_TABLES = table(
    "tables",
    column("table_schema"),
    column("table_name"),
    column("table_type"),
    schema="information_schema",
).alias("t")


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


class SqlPieces:
    """Validation SQL for one dialect; `validation_<name>` methods on the dialect override a piece."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def _own(self, name: str) -> Any:
        return getattr(self.dialect, f"validation_{name}", None)

    # --- connection set-up (SQLite registers Python functions here)
    def prepare_connection(self, conn: Connection) -> None:
        own = self._own("prepare_connection")
        if own is not None:
            own(conn)

    # --- cancellation
    def interrupt(self, dbapi_connection: Any, cursor: Any | None) -> None:
        """Stop the statement running on this DBAPI connection (called from another thread).

        sqlite3 and DuckDB: `connection.interrupt()`; psycopg: `connection.cancel_safe()` /
        `cancel()`; pyodbc: `cursor.cancel()`; Snowflake: `cursor.abort_query(sfqid)`.
        """
        own = self._own("interrupt")
        if own is not None:
            own(dbapi_connection, cursor)
            return
        raw = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
        if cursor is not None and getattr(cursor, "sfqid", None) and hasattr(cursor, "abort_query"):
            cursor.abort_query(cursor.sfqid)
        elif callable(getattr(raw, "interrupt", None)):
            raw.interrupt()
        elif callable(getattr(raw, "cancel_safe", None)):
            raw.cancel_safe(timeout=5.0)
        elif callable(getattr(raw, "cancel", None)):
            raw.cancel()
        elif cursor is not None and callable(getattr(cursor, "cancel", None)):
            cursor.cancel()

    # --- catalog
    def columns(
        self, conn: Connection, schema: str | None, name: str
    ) -> tuple[str | None, str, list[ColumnInfo]] | None:
        """(schema, table, columns) of a table matched case-insensitively, exact case preferred; None if absent."""
        own = self._own("columns")
        if own is not None:
            return own(conn, schema, name)
        c = _COLUMNS.c
        query = select(
            c.table_schema, c.table_name, c.column_name, c.data_type, c.is_nullable,
            c.character_maximum_length, c.numeric_precision, c.numeric_scale, c.ordinal_position,
        ).where(func.upper(c.table_name) == literal(name.upper()))  # fmt: skip
        if schema is not None:
            query = query.where(func.upper(c.table_schema) == literal(schema.upper()))
        rows = conn.execute(query).all()
        if not rows:
            return None
        owners = sorted({(r[0], r[1]) for r in rows}, key=lambda o: (o[1] != name, o[0] != schema))
        owner = owners[0]
        infos = [
            ColumnInfo(
                name=r[2],
                data_type=str(r[3]),
                nullable=str(r[4]).upper() in ("YES", "Y", "TRUE", "1"),
                max_length=_int(r[5]),
                precision=_int(r[6]),
                scale=_int(r[7]),
                ordinal=_int(r[8]) or 0,
            )
            for r in rows
            if (r[0], r[1]) == owner
        ]
        infos.sort(key=lambda i: i.ordinal)
        return owner[0], owner[1], infos

    def table_names(self, conn: Connection, schema: str | None) -> list[str]:
        """Base tables and views of a schema (for 'did you mean' and schema_structure)."""
        own = self._own("table_names")
        if own is not None:
            return own(conn, schema)
        t = _TABLES.c
        query = select(t.table_name)
        if schema is not None:
            query = query.where(func.upper(t.table_schema) == literal(schema.upper()))
        return sorted({str(r[0]) for r in conn.execute(query)})

    @property
    def reads_facts(self) -> bool:
        """Whether `enforced_facts` asks the database (else it is empty without a query)."""
        return self._own("enforced_facts") is not None

    def enforced_facts(self, conn: Connection, schema: str | None, name: str) -> TableFacts:
        """NOT NULL columns and unique column sets the database enforces on this table."""
        own = self._own("enforced_facts")
        if own is not None:
            return own(conn, schema, name)
        return TableFacts()

    # --- aggregates
    def exact_sum(self, expr: ColumnElement[Any], info: ColumnInfo) -> ColumnElement[Any]:
        """SUM that never loses digits: DECIMAL(38, scale) for exact types, plain for floats."""
        own = self._own("exact_sum")
        if own is not None:
            return own(expr, info)
        if info.family == "integer":
            return cast(func.sum(expr), Numeric(38, 0))
        if info.family == "decimal":
            return cast(
                func.sum(expr), Numeric(38, min(info.scale if info.scale is not None else 6, 18))
            )
        return func.sum(expr)

    def exact_avg(self, expr: ColumnElement[Any], info: ColumnInfo) -> ColumnElement[Any]:
        own = self._own("exact_avg")
        if own is not None:
            return own(expr, info)
        return func.avg(expr)

    def avg_from_sum(self, info: ColumnInfo) -> bool:
        """Whether AVG is folded in Python from the exact SUM and COUNT the scan already has
        (exact Decimal division) instead of an AVG aggregate of its own."""
        own = self._own("avg_from_sum")
        return bool(own(info)) if own is not None else False

    def stddev(self, expr: ColumnElement[Any], info: ColumnInfo) -> ColumnElement[Any]:
        """Sample standard deviation."""
        own = self._own("stddev")
        if own is not None:
            return own(expr, info)
        return func.stddev_samp(expr)

    def distinct_bounds(self, info: ColumnInfo) -> bool:
        """Whether COUNT(DISTINCT) of this column gets cheaper once its MIN/MAX are known (a probe first)."""
        own = self._own("distinct_bounds")
        return bool(own(info)) if own is not None else False

    def count_distinct(
        self, expr: ColumnElement[Any], info: ColumnInfo, bounds: tuple[Any, Any] | None = None
    ) -> ColumnElement[Any]:
        """Exact number of distinct non-null values (`bounds`: the column's MIN and MAX when probed)."""
        own = self._own("count_distinct")
        found = own(expr, info, bounds) if own is not None else None
        return found if found is not None else func.count(expr.distinct())

    def distinct_alone(self, info: ColumnInfo, bounds: tuple[Any, Any] | None = None) -> bool:
        """Whether the distinct count runs in a SELECT of its own rather than in the shared scan."""
        own = self._own("distinct_alone")
        return bool(own(info, bounds)) if own is not None else False

    def stddev_from_moments(self, info: ColumnInfo) -> bool:
        """Whether sample STDDEV is cheaper from exact moments (COUNT, SUM, SUM of squares, folded
        in Python with Decimal arithmetic) than from the database's STDDEV_SAMP."""
        own = self._own("stddev_from_moments")
        return bool(own(info)) if own is not None else False

    def square_sum(self, expr: ColumnElement[Any], info: ColumnInfo) -> ColumnElement[Any]:
        """Exact SUM(x * x) (asked only where `stddev_from_moments` said yes)."""
        own = self._own("square_sum")
        if own is not None:
            return own(expr, info)
        return func.sum(expr * expr)

    def count_if(self, condition: ColumnElement[bool]) -> ColumnElement[Any]:
        return func.sum(case((condition, 1), else_=0))

    def as_float(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """A 64-bit float (FLOAT is 32-bit on DuckDB, which moves values across bucket edges)."""
        return cast(expr, Double())

    def floor(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """FLOOR of a non-negative number."""
        own = self._own("floor")
        if own is not None:
            return own(expr)
        return func.floor(expr)

    def regex_full_match(
        self, expr: ColumnElement[Any], pattern: str
    ) -> ColumnElement[bool] | None:
        """True when the whole value matches; None when the database has no regex (values are checked in Python)."""
        own = self._own("regex_full_match")
        if own is not None:
            return own(expr, pattern)
        return None

    def period_start(self, expr: ColumnElement[Any], grain: str) -> ColumnElement[Any]:
        """The first day of the day/week (Monday)/month/quarter/year holding `expr`, as a date."""
        own = self._own("period_start")
        if own is not None:
            return own(expr, grain)
        if grain == "day":
            return cast(expr, _date_type())
        return cast(func.date_trunc(grain, expr), _date_type())

    def day(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        return self.period_start(expr, "day")


def _date_type() -> Any:
    from sqlalchemy import Date

    return Date()
