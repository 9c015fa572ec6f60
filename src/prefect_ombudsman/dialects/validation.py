"""The validation section of the dialect contract: the SQL pieces validators ask for.

Every piece is a declared method `validation_<piece>` with a portable default (information_schema
catalog, ANSI aggregates); a dialect overrides only the pieces that differ. An override whose
name the contract does not declare is refused when its class is defined (`Dialect.__init_subclass__`),
so a misspelt override cannot silently fall back to the default.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import Date, Numeric, cast, column, func, literal, select, table
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from prefect_ombudsman.dialects.types import ColumnInfo, TableFacts

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


class ValidationPieces:
    """Defaults of the validation pieces (mixed into `Dialect`)."""

    #: whether `validation_enforced_facts` asks the database (else facts are empty, no query)
    reads_enforced_facts: ClassVar[bool] = False

    # --- connection set-up (SQLite registers Python functions here)
    def validation_prepare_connection(self, conn: Connection) -> None:
        """Called on each connection before validation queries run on it."""

    # --- catalog
    def validation_columns(
        self, conn: Connection, schema: str | None, name: str
    ) -> tuple[str | None, str, list[ColumnInfo]] | None:
        """(schema, table, columns) of a table matched case-insensitively, exact case preferred; None if absent."""
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

    def validation_table_names(self, conn: Connection, schema: str | None) -> list[str]:
        """Base tables and views of a schema (for 'did you mean' and schema_structure)."""
        t = _TABLES.c
        query = select(t.table_name)
        if schema is not None:
            query = query.where(func.upper(t.table_schema) == literal(schema.upper()))
        return sorted({str(r[0]) for r in conn.execute(query)})

    def validation_enforced_facts(
        self, conn: Connection, schema: str | None, name: str
    ) -> TableFacts:
        """NOT NULL columns and unique column sets the database enforces (set
        `reads_enforced_facts` where this asks the database); the default knows nothing."""
        return TableFacts()

    # --- aggregates
    def validation_exact_sum(self, expr: ColumnElement[Any], info: ColumnInfo) -> Any:
        """SUM that never loses digits: DECIMAL(38, scale) for exact types, plain for floats."""
        if info.family == "integer":
            return cast(func.sum(expr), Numeric(38, 0))
        if info.family == "decimal":
            return cast(
                func.sum(expr), Numeric(38, min(info.scale if info.scale is not None else 6, 18))
            )
        return func.sum(expr)

    def validation_exact_avg(self, expr: ColumnElement[Any], info: ColumnInfo) -> Any:
        return func.avg(expr)

    def validation_avg_from_sum(self, info: ColumnInfo) -> bool:
        """Whether AVG is folded in Python from the exact SUM and COUNT the scan already has."""
        return False

    def validation_stddev(self, expr: ColumnElement[Any], info: ColumnInfo) -> Any:
        """Sample standard deviation."""
        return func.stddev_samp(expr)

    def validation_distinct_bounds(self, info: ColumnInfo) -> bool:
        """Whether COUNT(DISTINCT) gets cheaper once the column's MIN/MAX are known (a probe first)."""
        return False

    def validation_count_distinct(
        self, expr: ColumnElement[Any], info: ColumnInfo, bounds: tuple[Any, Any] | None
    ) -> Any:
        """Exact number of distinct non-null values (`bounds`: MIN and MAX when probed)."""
        return func.count(expr.distinct())

    def validation_distinct_alone(self, info: ColumnInfo, bounds: tuple[Any, Any] | None) -> bool:
        """Whether the distinct count runs in a SELECT of its own rather than in the shared scan."""
        return False

    def validation_stddev_from_moments(self, info: ColumnInfo) -> bool:
        """Whether sample STDDEV is cheaper from exact moments (COUNT, SUM, SUM of squares)."""
        return False

    def validation_square_sum(self, expr: ColumnElement[Any], info: ColumnInfo) -> Any:
        """Exact SUM(x * x) (asked only where `validation_stddev_from_moments` said yes)."""
        return func.sum(expr * expr)

    def validation_floor(self, expr: ColumnElement[Any]) -> Any:
        """FLOOR of a non-negative number."""
        return func.floor(expr)

    def validation_regex_full_match(self, expr: ColumnElement[Any], pattern: str) -> Any:
        """True when the whole value matches; None: no regex here (values are checked in Python)."""
        return None

    def validation_period_start(self, expr: ColumnElement[Any], grain: str) -> Any:
        """The first day of the day/week (Monday)/month/quarter/year holding `expr`, as a date."""
        if grain == "day":
            return cast(expr, Date())
        return cast(func.date_trunc(grain, expr), Date())
