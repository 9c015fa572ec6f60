"""The SQL pieces validators need, asked of the dialect (never `if dialect == ...`).

`SqlPieces` is the validators' view of a dialect's validation section
(`dialects/validation.py`: declared `validation_<piece>` methods with portable defaults, which a
database overrides in its `dialects/<db>.py` class). Everything is SQLAlchemy Core: identifiers
quoted by the dialect, values bound.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Double, case, cast, func
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from prefect_ombudsman.dialects.base import Dialect
from prefect_ombudsman.dialects.types import (  # noqa: F401  (the validators' names for them)
    BOOLEAN_TYPES,
    DATETIME_TYPES,
    DECIMAL_TYPES,
    FLOAT_TYPES,
    INTEGER_TYPES,
    STRING_TYPES,
    ColumnInfo,
    TableFacts,
    type_family,
)


class SqlPieces:
    """Validation SQL for one dialect: each piece is the dialect's declared `validation_<piece>`."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    # --- connection set-up (SQLite registers Python functions here)
    def prepare_connection(self, conn: Connection) -> None:
        self.dialect.validation_prepare_connection(conn)

    # --- cancellation
    def interrupt(self, dbapi_connection: Any, cursor: Any | None) -> None:
        """Stop the statement running on this DBAPI connection (called from another thread)."""
        self.dialect.interrupt(dbapi_connection, cursor)

    # --- catalog
    def columns(
        self, conn: Connection, schema: str | None, name: str
    ) -> tuple[str | None, str, list[ColumnInfo]] | None:
        """(schema, table, columns) of a table matched case-insensitively, exact case preferred; None if absent."""
        return self.dialect.validation_columns(conn, schema, name)

    def table_names(self, conn: Connection, schema: str | None) -> list[str]:
        """Base tables and views of a schema (for 'did you mean' and schema_structure)."""
        return self.dialect.validation_table_names(conn, schema)

    @property
    def reads_facts(self) -> bool:
        """Whether `enforced_facts` asks the database (else it is empty without a query)."""
        return self.dialect.reads_enforced_facts

    def enforced_facts(self, conn: Connection, schema: str | None, name: str) -> TableFacts:
        """NOT NULL columns and unique column sets the database enforces on this table."""
        return self.dialect.validation_enforced_facts(conn, schema, name)

    # --- aggregates
    def exact_sum(self, expr: ColumnElement[Any], info: ColumnInfo) -> ColumnElement[Any]:
        """SUM that never loses digits: DECIMAL(38, scale) for exact types, plain for floats."""
        return self.dialect.validation_exact_sum(expr, info)  # type: ignore[no-any-return]

    def exact_avg(self, expr: ColumnElement[Any], info: ColumnInfo) -> ColumnElement[Any]:
        return self.dialect.validation_exact_avg(expr, info)  # type: ignore[no-any-return]

    def avg_from_sum(self, info: ColumnInfo) -> bool:
        """Whether AVG is folded in Python from the exact SUM and COUNT the scan already has
        (exact Decimal division) instead of an AVG aggregate of its own."""
        return bool(self.dialect.validation_avg_from_sum(info))

    def stddev(self, expr: ColumnElement[Any], info: ColumnInfo) -> ColumnElement[Any]:
        """Sample standard deviation."""
        return self.dialect.validation_stddev(expr, info)  # type: ignore[no-any-return]

    def distinct_bounds(self, info: ColumnInfo) -> bool:
        """Whether COUNT(DISTINCT) of this column gets cheaper once its MIN/MAX are known (a probe first)."""
        return bool(self.dialect.validation_distinct_bounds(info))

    def count_distinct(
        self, expr: ColumnElement[Any], info: ColumnInfo, bounds: tuple[Any, Any] | None = None
    ) -> ColumnElement[Any]:
        """Exact number of distinct non-null values (`bounds`: the column's MIN and MAX when probed)."""
        return self.dialect.validation_count_distinct(expr, info, bounds)  # type: ignore[no-any-return]

    def distinct_alone(self, info: ColumnInfo, bounds: tuple[Any, Any] | None = None) -> bool:
        """Whether the distinct count runs in a SELECT of its own rather than in the shared scan."""
        return bool(self.dialect.validation_distinct_alone(info, bounds))

    def stddev_from_moments(self, info: ColumnInfo) -> bool:
        """Whether sample STDDEV is cheaper from exact moments (COUNT, SUM, SUM of squares, folded
        in Python with Decimal arithmetic) than from the database's STDDEV_SAMP."""
        return bool(self.dialect.validation_stddev_from_moments(info))

    def square_sum(self, expr: ColumnElement[Any], info: ColumnInfo) -> ColumnElement[Any]:
        """Exact SUM(x * x) (asked only where `stddev_from_moments` said yes)."""
        return self.dialect.validation_square_sum(expr, info)  # type: ignore[no-any-return]

    def count_if(self, condition: ColumnElement[bool]) -> ColumnElement[Any]:
        return func.sum(case((condition, 1), else_=0))

    def as_float(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """A 64-bit float (FLOAT is 32-bit on DuckDB, which moves values across bucket edges)."""
        return cast(expr, Double())

    def floor(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """FLOOR of a non-negative number."""
        return self.dialect.validation_floor(expr)  # type: ignore[no-any-return]

    def regex_full_match(
        self, expr: ColumnElement[Any], pattern: str
    ) -> ColumnElement[bool] | None:
        """True when the whole value matches; None when the database has no regex (values are checked in Python)."""
        return self.dialect.validation_regex_full_match(expr, pattern)  # type: ignore[no-any-return]

    def period_start(self, expr: ColumnElement[Any], grain: str) -> ColumnElement[Any]:
        """The first day of the day/week (Monday)/month/quarter/year holding `expr`, as a date."""
        return self.dialect.validation_period_start(expr, grain)  # type: ignore[no-any-return]

    def day(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        return self.period_start(expr, "day")
