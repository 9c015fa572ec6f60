"""DuckDB (embedded)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.types import UserDefinedType

from prefect_ombudsman.dialects.base import Dialect
from prefect_ombudsman.dialects.registry import register
from prefect_ombudsman.file_locks import exclusive


def database_file(url: str) -> Path | None:
    """The file of a DuckDB URL (None: in memory or a remote catalog such as `md:`)."""
    database = make_url(url).database
    if not database or database == ":memory:" or ":" in database.split("/", 1)[0]:
        return None
    return Path(database)


@register
class DuckDBDialect(Dialect):
    name = "duckdb"
    backends = ("duckdb",)
    embedded = True
    has_schemas = True
    default_schema = "main"
    sqlglot_dialect = "duckdb"

    # --- confinement: no file, extension or network access from SQL, on every connection
    _LOCKED_CONFIG: ClassVar[dict[str, Any]] = {
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }

    def confine_connect(self, params: dict[str, Any]) -> None:
        """External access off at connect time (it cannot be turned back on in the session);
        URL query or connect_args cannot preload extensions, filesystems or re-enable it.
        The data generator's bulk load reads registered Arrow tables, which needs no file access."""
        params.pop("preload_extensions", None)
        params.pop("register_filesystems", None)
        for key in ("config", "url_config"):
            params[key] = {**dict(params.get(key) or {}), **self._LOCKED_CONFIG}

    @contextmanager
    def read_only(self, dbapi_connection: Any) -> Iterator[None]:
        """`BEGIN TRANSACTION READ ONLY`, rolled back at the end (external access is already off).
        A connection fresh from the pool has no open transaction (else BEGIN fails: fail closed)."""
        dbapi_connection.execute("BEGIN TRANSACTION READ ONLY")
        try:
            yield
        finally:
            dbapi_connection.execute("ROLLBACK")

    # --- engines and connections
    def create_engine(self, spec: Any) -> Any:
        return self.confined(
            sa_create_engine(self.engine_url(spec), connect_args=spec.connect_args)
        )

    # One process at a time may open a DuckDB file (DuckDB's own lock fails at once with
    # "Conflicting lock is held"): connections of other processes wait on a lock file beside it.
    # Pooled connections close a second after the last use (reopening a file costs ~0.1 s, so
    # not after every use), and the file is free for the next process.

    def exclusive_use(self, url: str) -> AbstractContextManager[None]:
        path = database_file(url)
        if path is None:
            return nullcontext()
        return exclusive(path.with_name(path.name + ".ombudsman.lock"), label=f"DuckDB file {path}")

    def idle_release_seconds(self, url: str) -> float | None:
        return 1.0 if database_file(url) is not None else None

    # --- datagen: bulk load and types
    # DuckDB holds a transaction's appended rows in memory until COMMIT (6M fact rows ~ 800 MB):
    # bigger tables go through a committed staging table and one swap transaction.
    max_rows_per_transaction = 2_000_000

    def bulk_insert(self, connection: Any, table: Any, batch: Any) -> None:
        """Register the Arrow table as a view and INSERT ... SELECT from it (no Python rows)."""
        from uuid import uuid4

        driver = connection.connection.driver_connection
        view = f"ombudsman_batch_{uuid4().hex[:12]}"
        names = ", ".join(self.column_ref(name) for name in batch.column_names)
        driver.register(view, batch)
        try:
            driver.execute(
                f"INSERT INTO {self.table_ref(table)} ({names}) SELECT {names} FROM {view}"
            )
        finally:
            driver.unregister(view)

    # --- metadata: catalog queries
    # duckdb_*() functions: one statement per kind (duckdb-engine's inspector fails on REGCLASS).
    # Foreign keys cannot cross schemas in DuckDB, so the referred schema is the table's own.
    catalog_sql: ClassVar[dict[str, str]] = {
        "database": "SELECT current_database() AS database_name",
        "schemas": """
            SELECT schema_name FROM duckdb_schemas()
            WHERE database_name = current_database()
              AND schema_name NOT IN ('information_schema', 'pg_catalog')""",
        "tables": """
            SELECT schema_name AS table_schema, table_name, 'TABLE' AS table_type,
                   estimated_size AS row_count
            FROM duckdb_tables()
            WHERE database_name = current_database() AND NOT internal AND NOT temporary
              AND schema_name IN :schemas
            UNION ALL
            SELECT schema_name, view_name, 'VIEW', NULL
            FROM duckdb_views()
            WHERE database_name = current_database() AND NOT internal AND NOT temporary
              AND schema_name IN :schemas""",
        "columns": """
            SELECT schema_name AS table_schema, table_name, column_name,
                   column_index AS ordinal_position, data_type,
                   character_maximum_length AS max_length,
                   CASE WHEN starts_with(data_type, 'DECIMAL') THEN numeric_precision END AS numeric_precision,
                   CASE WHEN starts_with(data_type, 'DECIMAL') THEN numeric_scale END AS numeric_scale,
                   is_nullable, column_default
            FROM duckdb_columns()
            WHERE database_name = current_database() AND NOT internal AND schema_name IN :schemas""",
        "primary_keys": """
            SELECT schema_name AS table_schema, table_name, constraint_name,
                   unnest(constraint_column_names) AS column_name,
                   generate_subscripts(constraint_column_names, 1) AS key_position
            FROM duckdb_constraints()
            WHERE constraint_type = 'PRIMARY KEY' AND database_name = current_database()
              AND schema_name IN :schemas""",
        "foreign_keys": """
            SELECT schema_name AS table_schema, table_name, constraint_name,
                   unnest(constraint_column_names) AS column_name,
                   generate_subscripts(constraint_column_names, 1) AS key_position,
                   schema_name AS referred_schema, referenced_table AS referred_table,
                   unnest(referenced_column_names) AS referred_column
            FROM duckdb_constraints()
            WHERE constraint_type = 'FOREIGN KEY' AND database_name = current_database()
              AND schema_name IN :schemas""",
    }

    # --- comparison: canonical row hash
    # Canonical text per value, MD5, its last 16 hex digits parsed as UBIGINT; SUM(UBIGINT) is a
    # HUGEINT, so it never overflows. The optimizer shares the hash between bucket and sum.

    def canonical_text(self, expr: Any, field: Any) -> Any:
        from sqlalchemy import Integer, Numeric, String, cast, func

        kind, own = field.kind, field.own
        if own == "bool":
            return cast(cast(expr, Integer), String)
        if kind in ("decimal", "float"):
            return cast(cast(expr, Numeric(38, field.scale)), String)
        if kind in ("int", "date", "timestamp", "time"):
            return cast(self.canonical_integer(expr, field), String)
        if kind == "binary":
            return func.lower(func.hex(expr))
        if kind == "uuid":
            return func.lower(cast(expr, String))
        if kind == "char":
            return func.rtrim(cast(expr, String), " ")
        return cast(expr, String)

    arithmetic_hash = True

    def canonical_integer(self, expr: Any, field: Any) -> Any:
        from sqlalchemy import func, literal_column

        kind, own = field.kind, field.own
        if own == "bool" or kind in ("int", "decimal", "float"):
            return self.canonical_scaled(expr, field)
        if kind == "date":
            return expr - literal_column("DATE '1970-01-01'")
        if kind == "timestamp":
            if own == "date":
                return (expr - literal_column("DATE '1970-01-01'")) * 86400000000
            return func.epoch_us(expr)
        if kind == "time":
            return func.datediff("microsecond", literal_column("TIME '00:00:00'"), expr)
        return None

    def canonical_residue(self, expr: Any, field: Any, prime: int) -> Any:
        """A DOUBLE column in BIGINT while it fits: DuckDB casts a DOUBLE to DECIMAL(_, s) as
        round(x * 10^s), so that is the same integer as the DECIMAL(38) path (which costs about
        50 times more), computed without it; larger values take the exact path."""
        from sqlalchemy import BigInteger, case, cast, func, literal_column

        exact = super().canonical_residue(expr, field, prime)
        if field.own != "float" or field.kind != "float" or field.scale > 12:
            return exact
        p: Any = literal_column(str(prime))
        scaled = func.round(expr * literal_column(str(10**field.scale)))
        fast = cast(cast(scaled, BigInteger()) % p, BigInteger())
        limit: Any = literal_column(str(10 ** (18 - field.scale)))
        return case((func.abs(expr) < limit, fast), else_=exact)

    def canonical_text_hash(self, text: Any) -> Any:
        """The last 15 hex digits of md5() parsed as BIGINT (the low 60 bits)."""
        from sqlalchemy import BigInteger, cast, func, literal

        return cast(literal("0x") + func.right(func.md5(text), 15), BigInteger)

    def concat_text(self, parts: list[Any]) -> Any:
        """One variadic concat() (a fifth faster than a chain of `||`); the caller has already
        turned NULLs into `~`, so concat's NULL-as-empty never applies."""
        from sqlalchemy import String, func

        return func.concat(*parts, type_=String)

    def row_hash(self, fields: list[Any], build_text: Any) -> list[Any]:
        from sqlalchemy import cast, func, literal

        return [cast(literal("0x") + func.right(func.md5(build_text()), 16), _UBigInt())]

    def native_row_hash(self, exprs: list[Any]) -> list[Any] | None:
        """DuckDB's hash() of the row: the same on two DuckDB databases with the same column types."""
        from sqlalchemy import func

        return [func.hash(*exprs)]

    def hash_bucket(self, part: Any, buckets: int) -> Any:
        from sqlalchemy import BigInteger, literal

        return part.op("&")(literal(buckets - 1, BigInteger))

    def estimated_rows(self, connection: Any, schema: str | None, name: str) -> int | None:
        from sqlalchemy import text

        row = connection.execute(
            text(
                "SELECT estimated_size FROM duckdb_tables() WHERE database_name = current_database() "
                "AND lower(schema_name) = lower(coalesce(:schema, current_schema())) AND lower(table_name) = lower(:name)"
            ),
            {"schema": schema, "name": name},
        ).first()
        return None if row is None or row[0] is None else int(row[0])

    def prepare_comparison(self, connection: Any, *, memory_limit_mb: int | None = None) -> None:
        """Progress bar off; the in-process database's memory_limit lowered to `memory_limit_mb`
        while comparisons run on it (memory_limit is global to the database instance, so it is
        reference-counted per database and restored by the last `finish_comparison`)."""
        connection.exec_driver_sql("SET enable_progress_bar = false")
        database = connection.engine.url.database
        if memory_limit_mb is None or not database or database == ":memory:":
            return  # an in-memory database keeps its tables in that memory: leave it alone
        key = str(connection.engine.url)
        with _MEMORY_LOCK:
            held = _MEMORY_HOLDERS.get(key)
            if held is None:
                current = connection.exec_driver_sql(
                    "SELECT current_setting('memory_limit')"
                ).scalar()
                if _mebibytes(str(current)) <= memory_limit_mb:
                    return
                try:
                    connection.exec_driver_sql(f"SET memory_limit = '{int(memory_limit_mb)}MiB'")
                except Exception:  # DuckDB refuses a limit below what it cannot free right now
                    return
                held = _MEMORY_HOLDERS[key] = [0, str(current)]
            held[0] += 1
            connection.info["ombudsman_memory_key"] = key

    def finish_comparison(self, connection: Any) -> None:
        key = connection.info.pop("ombudsman_memory_key", None)
        if key is None:
            return
        with _MEMORY_LOCK:
            held = _MEMORY_HOLDERS.get(key)
            if held is None:
                return
            held[0] -= 1
            if held[0] <= 0:
                del _MEMORY_HOLDERS[key]
                # RESET gives back the default exactly; a limit someone set is set again (as shown)
                connection.exec_driver_sql("RESET memory_limit")
                if (
                    connection.exec_driver_sql("SELECT current_setting('memory_limit')").scalar()
                    != held[1]
                ):
                    connection.exec_driver_sql(f"SET memory_limit = '{held[1]}'")

    # --- validation: aggregates and expressions
    # COUNT(DISTINCT) of an integer key as a bitmap over its [MIN, MAX] range: exact, and ~8x
    # cheaper than DuckDB's hash-based DISTINCT; wider ranges (or other types) keep COUNT(DISTINCT)
    # in a SELECT of its own, which costs less than inside the shared scan.
    BITSTRING_MAX_RANGE = 1 << 26  # 8 MB of bits per thread

    def validation_distinct_bounds(self, info: Any) -> bool:
        return bool(info.family == "integer")

    def _bitstring_range(self, info: Any, bounds: Any) -> tuple[int, int] | None:
        if info.family != "integer" or not bounds or bounds[0] is None or bounds[1] is None:
            return None
        low, high = int(bounds[0]), int(bounds[1])
        if low < -(1 << 63) or high >= (1 << 63) or high - low >= self.BITSTRING_MAX_RANGE:
            return None
        return low, high

    def validation_count_distinct(self, expr: Any, info: Any, bounds: Any) -> Any:
        from sqlalchemy import BigInteger, cast, func, literal

        found = self._bitstring_range(info, bounds)
        if found is None:
            return super().validation_count_distinct(expr, info, bounds)
        low, high = found
        bits = func.bitstring_agg(
            cast(expr, BigInteger), literal(low, BigInteger), literal(high, BigInteger)
        )
        return func.coalesce(func.bit_count(bits), 0)

    def validation_distinct_alone(self, info: Any, bounds: Any) -> bool:
        return self._bitstring_range(info, bounds) is None

    # STDDEV_SAMP costs DuckDB ~10 ms per column and 1M rows; exact moments cost ~2 ms. Only for
    # types whose squares summed over 10^12 rows stay inside DECIMAL(38) / HUGEINT.
    _SMALL_INTEGERS = (
        "tinyint",
        "smallint",
        "integer",
        "int",
        "int1",
        "int2",
        "int4",
        "utinyint",
        "usmallint",
        "uinteger",
    )

    def validation_stddev_from_moments(self, info: Any) -> bool:
        base = info.data_type.strip().lower().split("(")[0]
        if info.family == "integer" and base in self._SMALL_INTEGERS:
            return True
        return bool(
            info.family == "decimal" and info.precision is not None and info.precision <= 13
        )

    def validation_square_sum(self, expr: Any, info: Any) -> Any:
        from sqlalchemy import cast, func
        from sqlalchemy.types import BigInteger

        if info.family == "integer":
            wide = cast(expr, BigInteger)
            return func.sum(wide * wide)
        return func.sum(expr * expr)

    # RE2 full match; date_trunc and stddev_samp are the defaults.

    def validation_regex_full_match(self, expr: Any, pattern: str) -> Any:
        from sqlalchemy import String, cast, func, literal

        return func.regexp_full_match(cast(expr, String), literal(pattern))

    # --- transient faults (duckdb): a file lock another process holds, a write-write conflict

    def transient_driver_error(self, err: BaseException) -> bool:
        if not type(err).__module__.startswith(("duckdb", "_duckdb")):
            return False
        text = str(err)
        name = type(err).__name__
        if name == "IOException":
            return "Could not set lock" in text or "Conflicting lock" in text
        return name == "TransactionException" and "onflict" in text


class _UBigInt(UserDefinedType):  # type: ignore[type-arg]
    """DuckDB's unsigned 64-bit integer (MD5 halves do not fit BIGINT)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "UBIGINT"


# --- comparison: canonical row hash (memory_limit held per database while comparisons run)

_MEMORY_LOCK = threading.Lock()
_MEMORY_HOLDERS: dict[
    str, list[Any]
] = {}  # engine URL -> [comparisons running, memory_limit before]
_UNITS = {
    "B": 1,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "TB": 1e12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def _mebibytes(setting: str) -> float:
    """MiB of a DuckDB memory setting such as '18.8 GiB' (unparsable: unlimited)."""
    number, _, unit = setting.strip().partition(" ")
    try:
        return float(number) * _UNITS[(unit or "B").strip().upper()] / 2**20
    except (KeyError, ValueError):
        return float("inf")
