"""SQLite (embedded; no schemas: tables live in `main`)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, ClassVar
from uuid import UUID

from sqlalchemy import create_engine as sa_create_engine

from prefect_ombudsman.dialects.arithmetic import TEXT_KINDS, combine, value_integer
from prefect_ombudsman.dialects.base import Dialect, python_columns
from prefect_ombudsman.dialects.registry import register
from prefect_ombudsman.dialects.types import ColumnInfo


@register
class SQLiteDialect(Dialect):
    name = "sqlite"
    backends = ("sqlite",)
    embedded = True
    has_schemas = False
    default_schema = "main"
    sqlglot_dialect = "sqlite"

    # --- confinement: no ATTACH (a new file anywhere) on any connection; read-only for sql_query
    def on_connect(self, dbapi_connection: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.close()
        dbapi_connection.set_authorizer(_no_attach)

    @contextmanager
    def read_only(self, dbapi_connection: Any) -> Iterator[None]:
        """`PRAGMA query_only=ON` plus an authorizer that allows reading only (no PRAGMA, ATTACH,
        transaction control or write), both undone before the connection goes back to the pool."""
        dbapi_connection.rollback()
        dbapi_connection.execute("PRAGMA query_only=ON")
        dbapi_connection.set_authorizer(_read_only)
        try:
            yield
        finally:
            dbapi_connection.set_authorizer(_no_attach)
            dbapi_connection.rollback()
            dbapi_connection.execute("PRAGMA query_only=OFF")

    def unconfinable(self, url: Any) -> str | None:
        """URI filenames (`?uri=true`, `file:`): SQLite itself picks the file and its mode."""
        name = (url.database or "").lower()
        if "uri" in url.query or name.startswith("file:") or "/file:" in name:
            return "SQLite URI filenames (uri=true, file:...) are not accepted; give a file path"
        return None

    # --- engines
    def create_engine(self, spec: Any) -> Any:
        args = spec.connect_args
        args.setdefault("check_same_thread", False)
        args.setdefault("timeout", 30)
        return self.confined(sa_create_engine(self.engine_url(spec), connect_args=args))

    # --- datagen: bulk load and types
    def begin_load(self, connection: Any) -> None:
        # pysqlite opens a transaction only before DML; BEGIN IMMEDIATE puts the staging table's
        # CREATE inside the load's transaction too and takes the write lock up front.
        driver = connection.connection.driver_connection
        if not driver.in_transaction:
            driver.execute("BEGIN IMMEDIATE")

    def bulk_insert(self, connection: Any, table: Any, batch: Any) -> None:
        """`executemany` on the sqlite3 connection (decimals as REAL, dates as ISO text)."""
        columns = python_columns(batch, decimals="float", temporal="iso")
        names = ", ".join(self.column_ref(name) for name in batch.column_names)
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {self.table_ref(table)} ({names}) VALUES ({marks})"
        connection.connection.driver_connection.executemany(sql, zip(*columns, strict=True))

    # --- metadata: catalog queries
    # pragma table-valued functions joined to pragma_table_list: one statement per kind (primary
    # keys come with the columns: pragma_table_info has them, a second scan would only cost time).
    # SQLite keeps no row statistics (row_count stays null unless exact counts are asked for),
    # names no foreign keys (constraint_id tells them apart), and lets a foreign key omit the
    # referred columns (meaning the referred table's primary key). Primary-key columns are
    # reported NOT NULL, as SQL defines them.
    catalog_sql: ClassVar[dict[str, str | None]] = {
        "database": "SELECT file AS database_name FROM pragma_database_list WHERE name = 'main'",
        "schemas": "SELECT name AS schema_name FROM pragma_database_list WHERE name <> 'temp'",
        "tables": r"""
            SELECT t.schema AS table_schema, t.name AS table_name, upper(t.type) AS table_type,
                   NULL AS row_count
            FROM pragma_table_list t
            WHERE t.type IN ('table', 'view') AND t.name NOT LIKE 'sqlite\_%' ESCAPE '\'
              AND t.schema IN :schemas""",
        "columns": r"""
            SELECT t.schema AS table_schema, t.name AS table_name, p.name AS column_name,
                   p.cid + 1 AS ordinal_position, p.type AS data_type, NULL AS max_length,
                   NULL AS numeric_precision, NULL AS numeric_scale,
                   (p."notnull" = 0 AND p.pk = 0) AS is_nullable, p.dflt_value AS column_default,
                   CASE WHEN t.type = 'table' THEN p.pk END AS pk_position, NULL AS constraint_name
            FROM pragma_table_list t JOIN pragma_table_info(t.name, t.schema) p
            WHERE t.type IN ('table', 'view') AND t.name NOT LIKE 'sqlite\_%' ESCAPE '\'
              AND t.schema IN :schemas""",
        "primary_keys": None,  # pk_position of the columns query: no second pragma scan
        "foreign_keys": r"""
            SELECT t.schema AS table_schema, t.name AS table_name, NULL AS constraint_name,
                   f.id AS constraint_id, f."from" AS column_name, f.seq + 1 AS key_position,
                   t.schema AS referred_schema, f."table" AS referred_table, f."to" AS referred_column
            FROM pragma_table_list t JOIN pragma_foreign_key_list(t.name, t.schema) f
            WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite\_%' ESCAPE '\'
              AND t.schema IN :schemas""",
    }

    # --- comparison: canonical row hash
    # SQLite has no MD5 and stores values loosely typed, so the canonical form and its hash are a
    # registered deterministic Python function (`canonical_row_hash` below, one call per row): the
    # one place where per-row Python runs. It is also the reference the SQL recipes are tested against.

    def prepare_comparison(self, connection: Any, *, memory_limit_mb: int | None = None) -> None:
        raw = connection.connection.dbapi_connection
        raw.create_function("ombudsman_row_hash", -1, _sqlite_row_hash, deterministic=True)
        raw.create_function("ombudsman_canonical", 2, _sqlite_canonical, deterministic=True)
        raw.create_function("ombudsman_row_arith", -1, _sqlite_row_arith, deterministic=True)

    def estimated_rows(self, connection: Any, schema: str | None, name: str) -> int | None:
        """COUNT(*) (SQLite keeps no row count; counting walks the smallest index, cheap next to
        the per-row Python hash that follows)."""
        from sqlalchemy import func, select, table

        return int(
            connection.execute(
                select(func.count()).select_from(table(name, schema=schema))
            ).scalar()
        )

    def canonical_text(self, expr: Any, field: Any) -> Any:
        from sqlalchemy import func

        return func.ombudsman_canonical(field_spec(field), expr)

    def row_hash(self, fields: list[Any], build_text: Any) -> list[Any]:
        from sqlalchemy import func

        spec = ",".join(field_spec(f) for f in fields)
        return [func.ombudsman_row_hash(spec, *(f.expr for f in fields))]

    arithmetic_hash = True

    def canonical_integer(self, expr: Any, field: Any) -> Any:
        """Computed in Python with the whole row (`row_hash_arithmetic`), never in SQL here."""
        raise NotImplementedError("SQLite computes the arithmetic row hash in Python")

    def arithmetic_text_number(self, fields: list[Any]) -> Any | None:
        """None: the Python function below hashes the text values with the rest of the row."""
        return None

    def row_hash_arithmetic(self, fields: list[Any], text_number: Any = None) -> list[Any]:
        from sqlalchemy import func

        spec = ",".join(field_spec(f) for f in fields)
        return [func.ombudsman_row_arith(spec, *(f.expr for f in fields))]

    def hash_parts_arithmetic(self, columns: list[Any]) -> list[Any]:
        return self.hash_parts(columns)

    def arithmetic_bucket(self, fields: list[Any], buckets: int) -> Any:
        """From the whole hash (the Python function computes both lanes anyway)."""
        return self.hash_bucket(self.hash_parts(self.row_hash_arithmetic(fields))[-1], buckets)

    def hash_parts(self, columns: list[Any]) -> list[Any]:
        # SUM raises on int64 overflow: sum the two 32-bit halves (the client recombines mod 2^64).
        (h,) = columns
        return [h.op(">>")(32), h.op("&")(0xFFFFFFFF)]

    def fence(self, query: Any) -> Any:
        """LIMIT -1 OFFSET 0 stops SQLite flattening the subquery (which would hash each row twice)."""
        return query.offset(0)

    # --- validation: aggregates and expressions
    # SQLite lacks STDDEV, regex and date_trunc: a sample-deviation aggregate and a full-match
    # regex function are registered (Python) on each connection; periods use date() modifiers;
    # the catalog is read with pragma table functions (values bound, never formatted in).

    def validation_prepare_connection(self, conn: Any) -> None:
        info = conn.connection.info
        if info.get("ombudsman_validation"):
            return
        raw = conn.connection.dbapi_connection
        raw.create_function("ombudsman_regexp", 2, _sqlite_regexp, deterministic=True)
        raw.create_aggregate("ombudsman_stddev", 1, _SqliteStddev)
        info["ombudsman_validation"] = True

    def validation_columns(self, conn: Any, schema: str | None, name: str) -> Any:
        from sqlalchemy import text

        names = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND lower(name) = lower(:n)"
                ),
                {"n": name},
            )
        ]
        if not names:
            return None
        real = name if name in names else sorted(names)[0]
        rows = conn.execute(
            text('SELECT cid, name, type, "notnull", pk FROM pragma_table_info(:t) ORDER BY cid'),
            {"t": real},
        ).all()
        columns = []
        for cid, col, declared, notnull, pk in rows:
            precision, scale, length = _sqlite_type_args(str(declared or ""))
            columns.append(
                ColumnInfo(
                    name=col,
                    data_type=str(declared or "TEXT").split("(")[0].strip() or "TEXT",
                    nullable=not notnull and not pk,
                    ordinal=int(cid) + 1,
                    max_length=length,
                    precision=precision,
                    scale=scale,
                )
            )
        return None, real, columns

    def validation_table_names(self, conn: Any, schema: str | None) -> list[str]:
        from sqlalchemy import text

        rows = conn.execute(
            text(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
            )
        )
        return sorted(r[0] for r in rows)

    def validation_stddev(self, expr: Any, info: Any) -> Any:
        from sqlalchemy import func

        return func.ombudsman_stddev(expr)

    def validation_regex_full_match(self, expr: Any, pattern: str) -> Any:
        from sqlalchemy import func, literal

        return func.ombudsman_regexp(literal(pattern), expr) == 1

    def validation_floor(self, expr: Any) -> Any:
        from sqlalchemy import Integer, cast

        return cast(expr, Integer)  # truncation = floor for the non-negative values asked for

    def validation_period_start(self, expr: Any, grain: str) -> Any:
        from sqlalchemy import Integer, cast, func, literal

        if grain == "day":
            return func.date(expr)
        if grain == "month":
            return func.date(expr, literal("start of month"))
        if grain == "year":
            return func.date(expr, literal("start of year"))
        if grain == "week":
            back = (cast(func.strftime(literal("%w"), expr), Integer) + 6) % 7
            return func.date(
                expr, literal("-") + cast(back, Integer).cast(_text()) + literal(" days")
            )
        month = cast(func.strftime(literal("%m"), expr), Integer)
        year = cast(func.strftime(literal("%Y"), expr), Integer)
        return func.printf(literal("%04d-%02d-01"), year, ((month - 1) / 3) * 3 + 1)

    # --- comparison: canonical row hash (the Python reference of the canonical form)

    # --- transient faults (sqlite3): another connection holds the lock

    def transient_driver_error(self, err: BaseException) -> bool:
        if type(err).__module__ != "sqlite3":
            return False
        # SQLITE_BUSY (5) / SQLITE_LOCKED (6), and their extended codes (low byte)
        code = getattr(err, "sqlite_errorcode", None)
        if isinstance(code, int) and (code & 0xFF) in (5, 6):
            return True
        text = str(err).lower()
        return "database is locked" in text or "database table is locked" in text


_EPOCH = datetime(1970, 1, 1)
_EPOCH_DATE = date(1970, 1, 1)
_MICRO = timedelta(microseconds=1)


def field_spec(field: Any) -> str:
    """`kind|own|scale|prefixed` of one compared column (what the Python canonical form needs)."""
    return f"{field.kind}|{field.own}|{field.scale}|{int(field.prefixed)}"


@lru_cache(maxsize=256)
def _parse_spec(spec: str) -> tuple[tuple[str, str, int, bool], ...]:
    out = []
    for part in spec.split(","):
        kind, own, scale, prefixed = part.split("|")
        out.append((kind, own, int(scale), prefixed == "1"))
    return tuple(out)


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)):
        return _EPOCH + timedelta(seconds=value)
    else:
        if isinstance(value, bytes):
            value = value.decode()
        dt = datetime.fromisoformat(str(value).strip())
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value).strip()[:10])


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, bytes):
        value = value.decode()
    return Decimal(value if isinstance(value, int) else str(value).strip())


def canonical_value(kind: str, own: str, scale: int, value: Any) -> str | None:
    """The canonical text of one value (None for NULL); see docs/comparison.md for the rules."""
    if value is None:
        return None
    if own == "bool":
        if isinstance(value, str):
            return "1" if value.strip().lower() in ("1", "true", "t", "yes", "y") else "0"
        return "1" if value else "0"
    if kind in ("decimal", "float"):
        number = _to_decimal(value).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        return format(abs(number) if number.is_zero() else number, "f")
    if kind == "int":
        return str(int(_to_decimal(value)))
    if kind == "date":
        return str((_to_date(value) - _EPOCH_DATE).days)
    if kind == "timestamp":
        if own == "date":
            return str((_to_date(value) - _EPOCH_DATE).days * 86_400_000_000)
        return str((_to_datetime(value) - _EPOCH) // _MICRO)
    if kind == "time":
        moment = value if isinstance(value, time) else time.fromisoformat(str(value).strip())
        return str(
            ((moment.hour * 60 + moment.minute) * 60 + moment.second) * 1_000_000
            + moment.microsecond
        )
    if kind == "binary":
        return (value if isinstance(value, bytes) else str(value).encode()).hex()
    if isinstance(value, bytes):
        value = value.decode()
    if kind == "uuid":
        text = str(value).strip().lower()
        return str(UUID(text)) if len(text) == 32 else text
    if kind == "char":
        return str(value).rstrip(" ")
    return str(value)


def encode_field(text: str | None, prefixed: bool) -> str:
    """NULL is `~`; text-like values are `<length>:<text>`, the others `<text>;` (never ambiguous)."""
    if text is None:
        return "~"
    return f"{len(text)}:{text}" if prefixed else f"{text};"


def canonical_row_text(spec: str, values: tuple[Any, ...] | list[Any]) -> str:
    return "".join(
        encode_field(canonical_value(kind, own, scale, value), prefixed)
        for (kind, own, scale, prefixed), value in zip(_parse_spec(spec), values, strict=True)
    )


def canonical_row_hash(spec: str, values: tuple[Any, ...] | list[Any]) -> int:
    """Last 8 bytes of MD5(canonical UTF-8 text) as a signed 64-bit integer."""
    digest = hashlib.md5(
        canonical_row_text(spec, values).encode("utf-8"), usedforsecurity=False
    ).digest()
    return int.from_bytes(digest[8:], "big", signed=True)


def _sqlite_row_hash(spec: str, *values: Any) -> int:
    return canonical_row_hash(spec, values)


def arithmetic_row_hash_of(spec: str, values: tuple[Any, ...] | list[Any]) -> int:
    """The arithmetic row hash (dialects/arithmetic.py) from the canonical value of each column:
    non-text columns as integers, the text-like ones as one canonical text."""
    numbers: dict[int, int | None] = {}
    texts: list[str] = []
    fields = _parse_spec(spec)
    for i, ((kind, own, scale, prefixed), value) in enumerate(zip(fields, values, strict=True)):
        canonical = canonical_value(kind, own, scale, value)
        if kind in TEXT_KINDS and own != "bool":
            texts.append(encode_field(canonical, prefixed))
        else:
            numbers[i] = value_integer("int" if own == "bool" else kind, scale, canonical)
    return combine(numbers, len(fields), "".join(texts) if texts else None)


def _sqlite_row_arith(spec: str, *values: Any) -> int:
    return arithmetic_row_hash_of(spec, values)


def _sqlite_canonical(spec: str, value: Any) -> str | None:
    kind, own, scale, _ = _parse_spec(spec)[0]
    return canonical_value(kind, own, scale, value)


# --- validation: aggregates and expressions (the Python functions SQLite is given)


def _text() -> Any:
    from sqlalchemy import Text

    return Text()


def _sqlite_type_args(declared: str) -> tuple[int | None, int | None, int | None]:
    """(precision, scale, length) from a declared type such as DECIMAL(12,2) or VARCHAR(50)."""
    inside = declared.partition("(")[2].partition(")")[0]
    numbers = [int(p) for p in inside.replace(" ", "").split(",") if p.isdigit()]
    base = declared.lower()
    if any(word in base for word in ("char", "text", "clob")):
        return None, None, numbers[0] if numbers else None
    if len(numbers) == 2:
        return numbers[0], numbers[1], None
    if len(numbers) == 1:
        return numbers[0], 0, None
    return None, None, None


@lru_cache(maxsize=256)
def _compiled_regex(pattern: str) -> Any:
    import re

    return re.compile(pattern)


def _sqlite_regexp(pattern: str, value: Any) -> int | None:
    if value is None:
        return None
    return 1 if _compiled_regex(pattern).fullmatch(str(value)) else 0


class _SqliteStddev:
    """Sample standard deviation (Welford), as STDDEV_SAMP elsewhere."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def step(self, value: Any) -> None:
        if value is None:
            return
        x = float(value)
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def finalize(self) -> float | None:
        if self.n < 2:
            return None
        return (self.m2 / (self.n - 1)) ** 0.5


_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


def _no_attach(action: int, *_: Any) -> int:
    """SQLite authorizer of every connection: ATTACH (which creates files anywhere) is denied."""
    return sqlite3.SQLITE_DENY if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH) else 0


def _read_only(action: int, *_: Any) -> int:
    """SQLite authorizer inside `read_only`: reading and functions only."""
    return sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY
