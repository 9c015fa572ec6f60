"""The dialect contract: everything that differs per database, declared in one class.

Engine code asks `dialect_for(engine)` for the piece it needs (catalog queries, bulk-load path,
column kinds, row-hash expression, validation aggregates, interrupt, transient errors, engine
creation ...) and never asks which database it is on. Each database is one module in this
package with one `Dialect` subclass that registers itself (`@register`, see registry.py) and
overrides only what differs (sqlglot-style). Abstract methods are what every database must give;
every other method has a portable default. A subclass may not add a method whose name looks like
a contract piece (`validation_*`, `catalog_*`, `hash_*`, ...) that the contract does not declare:
a misspelt override fails when the class is defined instead of silently falling back.

Sections, in order: identity and registration; engines and connections; quoting; datagen (types
and bulk load); types; catalog; comparison (canonical text, row hash, buckets); validation
(`dialects/validation.py`); confinement and read-only; interrupt; transient faults.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import create_engine, event, func, inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.engine import Dialect as SADialect

from prefect_ombudsman.dialects.arithmetic import (
    LANE_SHIFT,
    PRIMES,
    TEXT_KINDS,
    TEXT_MASK,
    lane_constants,
)
from prefect_ombudsman.dialects.registry import dialect_class, dialect_classes, register
from prefect_ombudsman.dialects.types import column_kind
from prefect_ombudsman.dialects.validation import ValidationPieces
from prefect_ombudsman.errors import (
    ConfigurationError,
    OperationCancelled,
    OperationFailed,
    TransientError,
)
from prefect_ombudsman.redaction import scrub

if TYPE_CHECKING:
    from prefect_ombudsman.dialects.engines import ConnectionSpec

#: name prefixes of contract pieces: a subclass method with one of them must be declared here
CONTRACT_PREFIXES = (
    "validation_", "catalog_", "canonical_", "hash_", "row_hash", "native_", "datagen_",
    "transient_", "estimated_", "prepare_", "finish_",
)  # fmt: skip


class Dialect(ValidationPieces, abc.ABC):
    """The contract every database implements; subclasses override what differs."""

    # --- identity and registration
    #: the dialect's name (`Catalog.dialect`, `ConnectionSpec.kind`, `dialect_for("name")`)
    name: ClassVar[str] = "generic"
    #: SQLAlchemy backend names this dialect serves (`engine.dialect.name`, URL backends)
    backends: ClassVar[tuple[str, ...]] = ()
    #: short URL driver names and the full SQLAlchemy driver they stand for
    driver_aliases: ClassVar[dict[str, str]] = {}
    #: an embedded database whose URL names a file (no server, no password, no network session)
    embedded: ClassVar[bool] = False
    #: the server's port when a URL gives none (for the per-server session limit)
    default_port: ClassVar[int | None] = None
    #: whether tables live in schemas we can create (`dim`, `fact`)
    has_schemas: ClassVar[bool] = True
    #: the schema a table without one lands in
    default_schema: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = set(dir(Dialect))
        for attr, value in vars(cls).items():
            method = callable(value) or isinstance(value, (staticmethod, classmethod, property))
            if method and attr.startswith(CONTRACT_PREFIXES) and attr not in declared:
                raise TypeError(
                    f"{cls.__module__}.{cls.__qualname__}.{attr} overrides nothing: the dialect "
                    "contract (dialects/base.py, dialects/validation.py) declares no such piece"
                )

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

    def server_identity(self, url: URL, connect_args: dict[str, Any]) -> str:
        """Which server a connection talks to (no user, database or secret in it): `host:port`
        for a network database, the file for an embedded one."""
        if self.embedded:
            return f"{self.name}:{url.database or ':memory:'}"
        host = str(connect_args.get("host") or url.host or "localhost").lower()
        port = connect_args.get("port") or url.port or self.default_port
        return f"{self.name}://{host}:{port}" if port else f"{self.name}://{host}"

    # --- confinement of files (SPEC §11): which file a URL opens, if any
    def database_file(self, url: URL) -> str | None:
        """The file this URL's database lives in, as written (None: a server, or in memory).
        The admission check keeps it inside the projects root or an allowed folder."""
        if not self.embedded:
            return None
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith(":memory:"):
            return None
        return database

    def unconfinable(self, url: URL) -> str | None:
        """Why a file this URL names cannot be confined (None: it can, or it names no file)."""
        return None

    # --- engines: how a resolved `ConnectionSpec` becomes a pooled SQLAlchemy engine
    def engine_url(self, spec: ConnectionSpec) -> URL:
        """The URL the engine connects with (the secret password put back, except for files)."""
        url = make_url(spec.url)
        if spec.password is not None and not self.embedded:
            url = url.set(password=spec.password.get_secret_value())
        return url

    def create_engine(self, spec: ConnectionSpec) -> Engine:
        """The pooled engine of `spec` (default: SQLAlchemy's defaults with its connect_args)."""
        return create_engine(self.engine_url(spec), connect_args=spec.connect_args)

    def confined(self, engine: Engine) -> Engine:
        """Give every new connection of `engine` this dialect's file guards (SPEC §11)."""

        @event.listens_for(engine, "do_connect")
        def _confine_params(_d: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
            self.confine_connect(cparams)

        @event.listens_for(engine, "connect")
        def _session_guards(dbapi_connection: Any, _record: Any) -> None:
            self.on_connect(dbapi_connection)

        return engine

    # --- quoting
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

    # --- types: how this database's reflected column types read as canonical kinds
    def column_kind(self, sa_type: Any) -> tuple[str, int]:
        """(kind, scale) of a reflected SQLAlchemy type: bool int float decimal timestamp date
        time uuid binary char text other (dialects/types.py `column_kind`)."""
        return column_kind(sa_type)

    def migration_type(self, source_type: str, source: Dialect) -> str | None:
        """The type this database should give a column of `source_type` migrated from `source`
        (shown as `expected_target_type` by schema_datatypes; None: no rule for that source)."""
        return None

    # --- catalog (metadata/extract.py): one statement per kind, rows of the shapes it documents
    #: SQL per kind (database, schemas, tables, columns, primary_keys, foreign_keys): a string,
    #: alternatives tried in order (a tuple), or None (served by another kind's query). None for
    #: the whole map: SQLAlchemy's reflection (get_multi_*) is used instead.
    catalog_sql: ClassVar[dict[str, Any] | None] = None
    #: per kind, the dialect's column names and the names extract.py expects
    catalog_row_aliases: ClassVar[dict[str, dict[str, str]]] = {}

    def catalog_count(self) -> Any:
        """The aggregate that counts a table's rows exactly (SQL Server: COUNT_BIG)."""
        return func.count()

    def estimated_rows(self, connection: Any, schema: str | None, name: str) -> int | None:
        """The database's cheap row estimate (catalog, planner or metadata); None: it has none."""
        return None

    # --- comparison: canonical row hash (validation/comparison/; reference/peers-validation.md §8)
    @abc.abstractmethod
    def canonical_text(self, expr: Any, field: Any) -> Any:
        """The canonical text of one value (`field.kind` both sides agreed on, `field.own` this
        side's kind, `field.scale`): the same characters on every database for equal values."""

    @abc.abstractmethod
    def row_hash(self, fields: list[Any], build_text: Any) -> list[Any]:
        """The row's 64-bit hash of `build_text()` (the canonical row text: MD5, its last 8
        bytes), as one or more summable parts (`hash_parts`); the client folds sums mod 2^64."""

    # The arithmetic row hash (dialects/arithmetic.py): no row text, one integer per value, two
    # modular lanes in BIGINT. A dialect that gives `canonical_integer` sets `arithmetic_hash`;
    # a pair of sides where either has none falls back to the MD5 of the canonical text.
    #: whether this dialect computes the arithmetic row hash
    arithmetic_hash: ClassVar[bool] = False
    #: whether a comparison with this side should use the arithmetic recipe when both sides give
    #: it: False where one MD5 of the row text is measured faster than the lanes' arithmetic
    #: (`validation/comparison/plan.choose_recipe`)
    arithmetic_hash_preferred: ClassVar[bool] = True

    def canonical_integer(self, expr: Any, field: Any) -> Any:
        """The exact integer `x` of one non-text value (dialects/arithmetic.py): booleans 0/1,
        integers as such, decimals and floats times 10^scale, dates as days, timestamps and times
        as microseconds; None for text-like kinds (they go through `canonical_text_hash`)."""
        raise NotImplementedError(f"{self.name}: no arithmetic row hash")

    def canonical_scaled(self, expr: Any, field: Any) -> Any:
        """Booleans, integers, decimals and floats as exact integers (the portable part of
        `canonical_integer`): a decimal whose digits fit stays in BIGINT, others DECIMAL(38,0)."""
        from sqlalchemy import BigInteger, Integer, Numeric, cast, literal_column

        if field.own == "bool":
            return cast(expr, Integer)
        if field.kind == "int":
            return expr
        small = _fits_bigint(field)
        value: Any = cast(expr, Numeric(18 if small else 38, field.scale))
        if field.scale:
            value = value * literal_column(str(10**field.scale))
        return cast(value, BigInteger() if small else Numeric(38, 0))

    def canonical_residue(self, expr: Any, field: Any, prime: int) -> Any:
        """`canonical_integer` modulo `prime` as BIGINT in (-prime, prime) (SQL's `%` keeps the
        dividend's sign); a dialect may compute the same residue a cheaper way."""
        from sqlalchemy import BigInteger, cast, literal_column

        return cast(self.canonical_integer(expr, field) % literal_column(str(prime)), BigInteger())

    def canonical_text_hash(self, text: Any) -> Any:
        """The low 60 bits of MD5(UTF-8 `text`) as a non-negative integer (from `row_hash`'s
        last 8 bytes of the MD5)."""
        from sqlalchemy import BigInteger, cast, literal_column

        mask = cast(literal_column(str(TEXT_MASK)), BigInteger())  # T-SQL: NUMERIC otherwise
        return self.row_hash([], lambda: text)[0].op("&")(mask)

    def canonical_row_text(self, fields: list[Any]) -> Any:
        """The canonical text of the bound `fields` (the MD5 recipe's row text): values in order,
        NULL `~`, text-like `<length>:<text>`, others `<text>;`."""
        from sqlalchemy import Integer, String, case, literal

        def const(value: str) -> Any:
            return literal(value, String, literal_execute=True)

        length_field = SimpleNamespace(
            name="len", kind="int", own="int", scale=0, prefixed=False, nullable=False,
            sa_type=Integer(),
        )  # fmt: skip
        parts = []
        for f in fields:
            value = self.canonical_text(f.expr, f)
            if f.prefixed:
                length = self.canonical_text(self.text_length(value), length_field)
                encoded = self.concat_text([length, const(":"), value])
            else:
                encoded = self.concat_text([value, const(";")])
            if f.nullable:
                encoded = case((f.expr.is_(None), const("~")), else_=encoded)
            parts.append(encoded)
        return self.concat_text(parts)

    def arithmetic_text_number(self, fields: list[Any]) -> Any | None:
        """`x_T` of the bound `fields` (dialects/arithmetic.py): the MD5 number of their
        text-like values' canonical text; None when they have none. Both lanes read it, so the
        comparison computes it once per row in a fenced derived table (no engine here shares a
        repeated MD5 call) and passes the column to `row_hash_arithmetic`."""
        texts = _text_fields(fields)
        return self.canonical_text_hash(self.canonical_row_text(texts)) if texts else None

    def row_hash_arithmetic(self, fields: list[Any], text_number: Any = None) -> list[Any]:
        """The arithmetic row hash `h` (0 <= h < 2^62) of the bound `fields`, as hash columns
        (dialects/arithmetic.py gives the recipe): one residue per non-text value and lane, one
        MD5 of the text-like values' canonical text (`text_number`, the column holding
        `arithmetic_text_number`; None: computed here, inside each lane's expression)."""
        from sqlalchemy import BigInteger, cast, literal_column

        if text_number is None:
            text_number = self.arithmetic_text_number(fields)
        lanes = [self._arithmetic_lane(fields, text_number, lane) for lane in range(len(PRIMES))]
        # BIGINT literals: T-SQL reads 2^31 and up as NUMERIC, and `&` (buckets) refuses NUMERIC
        shift = cast(literal_column(str(LANE_SHIFT)), BigInteger())
        return [lanes[0] * shift + lanes[1]]

    def arithmetic_bucket(self, fields: list[Any], buckets: int) -> Any:
        """`h & (buckets - 1)` of the arithmetic hash of `fields` (canonical key buckets), from
        lane 1 alone: h's low 31 bits are lane 1 and `buckets` <= 2^20, so lane 0 is not
        computed and the key's MD5 (if it has text) is computed once."""
        return self.hash_bucket(
            self._arithmetic_lane(fields, self.arithmetic_text_number(fields), 1), buckets
        )

    def _arithmetic_lane(self, fields: list[Any], text_x: Any, lane: int) -> Any:
        """lane[k] of dialects/arithmetic.py (non-negative, below p_k) in BIGINT."""
        from sqlalchemy import BigInteger, cast, func, literal_column

        prime = PRIMES[lane]
        p: Any = literal_column(str(prime))
        texts = _text_fields(fields)
        terms: list[Any] = []
        for column, f in enumerate(fields):
            if any(f is t for t in texts):
                continue
            coefficient, null = lane_constants(lane, column)
            term: Any = self.canonical_residue(f.expr, f, prime)
            term = term * literal_column(str(coefficient)) % p
            if f.nullable:
                term = func.coalesce(term, literal_column(str(null)))
            terms.append(term)
        if text_x is not None:
            coefficient, _ = lane_constants(lane, len(fields))
            terms.append(cast(text_x % p, BigInteger()) * literal_column(str(coefficient)) % p)
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return (total % p + p) % p

    def hash_parts_arithmetic(self, columns: list[Any]) -> list[Any]:
        """The summable parts of the arithmetic hash (below 2^62: SUM of BIGINT is exact
        wherever SUM widens; split where it does not)."""
        return list(columns)

    def native_row_hash(self, exprs: list[Any]) -> list[Any] | None:
        """The engine's own 64-bit row hash (used when both sides are this engine with equal
        column types); None: it has none."""
        return None

    def native_hash_compatible(self, other: Dialect) -> bool:
        """Whether `other`'s native row hash gives the same values as this one's."""
        return type(other) is type(self)

    def hash_parts(self, columns: list[Any]) -> list[Any]:
        """The summable parts of the hash columns (split where SUM would overflow)."""
        return list(columns)

    def hash_bucket(self, part: Any, buckets: int) -> Any:
        """The bucket (0 .. buckets-1, a power of two) of a row from its last hash part."""
        return part.op("&")(buckets - 1)

    def hash_sum(self, part: Any) -> Any:
        """SUM of one hash part that cannot overflow."""
        return func.sum(part)

    def fence(self, query: Any) -> Any:
        """Keep the planner from inlining a subquery whose hash is referenced twice."""
        return query

    def prepare_comparison(self, connection: Any, *, memory_limit_mb: int | None = None) -> None:
        """Session settings while a comparison runs on `connection`."""

    def finish_comparison(self, connection: Any) -> None:
        """Undo what `prepare_comparison` set."""

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

    # --- interrupt: stop a running statement from another thread (cancel)
    def interrupt(self, dbapi_connection: Any, cursor: Any | None) -> None:
        """Stop the statement running on this DBAPI connection (called from another thread).

        Default: the driver's own connection-level interrupt or cancel where it has one, else
        the cursor's cancel."""
        raw = self.driver_connection(dbapi_connection)
        if callable(getattr(raw, "interrupt", None)):
            raw.interrupt()
        elif callable(getattr(raw, "cancel", None)):
            raw.cancel()
        elif cursor is not None and callable(getattr(cursor, "cancel", None)):
            cursor.cancel()

    @staticmethod
    def driver_connection(dbapi_connection: Any) -> Any:
        """The driver's own connection behind SQLAlchemy's pool wrapper."""
        return getattr(dbapi_connection, "driver_connection", None) or dbapi_connection

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


@register
class GenericDialect(Dialect):
    """Any other SQLAlchemy database: portable defaults, no row comparison (no canonical form)."""

    name = "generic"

    def canonical_text(self, expr: Any, field: Any) -> Any:
        raise self._no_comparison()

    def row_hash(self, fields: list[Any], build_text: Any) -> list[Any]:
        raise self._no_comparison()

    def _no_comparison(self) -> ConfigurationError:
        database = self.sa_dialect.name if self.sa_dialect is not None else "this database"
        return ConfigurationError(
            f"row comparison has no canonical row hash for {database}: no dialect is registered "
            "for it (add one in prefect_ombudsman/dialects/ or through the entry-point group "
            "'prefect_ombudsman.dialects')"
        )


def _text_fields(fields: list[Any]) -> list[Any]:
    """The fields the arithmetic hash reads through MD5 (text-like kinds; booleans never)."""
    return [f for f in fields if f.kind in TEXT_KINDS and f.own != "bool"]


def _fits_bigint(field: Any) -> bool:
    """Whether a decimal column's values at the canonical scale always fit BIGINT (18 digits)."""
    precision = getattr(field.sa_type, "precision", None)
    own_scale = getattr(field.sa_type, "scale", None)
    return (
        field.kind == "decimal"
        and isinstance(precision, int)
        and isinstance(own_scale, int)
        and precision - own_scale + field.scale <= 18
    )


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


def dialect_for(engine_or_kind: Engine | str) -> Dialect:
    """The `Dialect` for an engine, a dialect name or a SQLAlchemy backend name (sqlite,
    duckdb, postgresql, snowflake, sqlserver/mssql ...); a database without a registered dialect
    gets `GenericDialect`."""
    if isinstance(engine_or_kind, str):
        return (dialect_class(engine_or_kind) or GenericDialect)(None)
    sa_dialect = engine_or_kind.dialect
    return (dialect_class(sa_dialect.name) or GenericDialect)(sa_dialect)


def dialect_kind(backend: str) -> str:
    """The dialect name serving a SQLAlchemy backend (`mssql` -> `sqlserver`), `other` if none."""
    cls = dialect_class(backend)
    return cls.name if cls is not None and cls is not GenericDialect else "other"


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
    return any(cls(None).is_transient(exc) for cls in dialect_classes())


def driver_cause(exc: BaseException) -> str:
    """The real cause of a database error, one line: the driver's error, not SQLAlchemy's wrapper
    (`AdminShutdown: terminating connection due to administrator command`)."""
    chain = list(causes(exc))
    drivers = [e for e in chain if not isinstance(e, (sa_exc.SQLAlchemyError, TransientError))]
    err = drivers[0] if drivers else exc
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return scrub(f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": "))[:500]
