"""Row-level comparison of two tables on any two engines (SPEC §7.3).

One scan per side computes, grouped by bucket, the row count and the sum of the rows' 64-bit
hashes (`level 1`): the whole-table fingerprint is the sum of the buckets, so the bucket
checksums come out of the same single scan. Only when a bucket differs does a second query pull
`(key, hash)` for the rows of the differing buckets (`level 2`), and only for the sampled changed
keys are full canonical rows fetched (`level 3`) to name the differing columns. A row's hash is
computed in each database (`dialects/*`: canonical text -> MD5 -> 64 bits, or the engine's native
hash when both sides are the same engine with the same column types), so aggregates, not rows,
cross the wire.

The bucket is a function of the key computed alike on both sides, so level 2 filters on the
key before hashing and re-hashes only the failing buckets' rows: integer keys by arithmetic
(`key_bucket_sql`), same-engine native runs by the engine's hash of the key, every other key
(text, composite, mixed types) by the canonical hash of the key columns (the row hash recipe
applied to the key alone), and a table without a key by its integer columns (or the canonical
hash of its other non-text, non-float columns). Only a keyless table of text and floats is
bucketed by the low bits of the row hash itself, and then level 2 hashes every row again.

    result = compare_tables(src_engine, tgt_engine, "dbo.fact_sales", "PUBLIC.FACT_SALES").result
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    String,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    inspect,
    literal,
    literal_column,
    or_,
    select,
    table,
    types,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

from prefect_ombudsman.dialects.base import Dialect, dialect_for
from prefect_ombudsman.dialects.types import column_kind, merge_kinds  # noqa: F401
from prefect_ombudsman.errors import ConfigurationError

MOD64 = 1 << 64
#: kinds whose canonical text may hold any character: written `<length>:<text>`
LENGTH_PREFIXED = frozenset({"text", "char", "uuid", "binary", "other"})

HashMode = Literal["auto", "canonical", "native"]


# ----------------------------------------------------------------------------- public models


class ComparisonOptions(BaseModel):
    """How to compare one table pair."""

    model_config = ConfigDict(extra="forbid")

    key_columns: list[str] | None = Field(
        default=None,
        description="Key columns; default the primary key, else compare as a multiset.",
    )
    columns: list[str] | None = Field(
        default=None, description="Columns to compare; default all common ones."
    )
    sample_size: int = Field(
        default=10, ge=0, le=1000, description="Sample keys kept per category."
    )
    buckets: int = Field(
        default=16384,
        ge=1,
        le=1 << 20,
        description="Most level-1 buckets (a power of 2); fewer for small tables, ~1 per 64 rows.",
    )
    hash_mode: HashMode = Field(
        default="auto",
        description="auto: the engine's native hash when both sides are one engine with equal types.",
    )
    float_scale: int = Field(
        default=6, ge=0, le=12, description="Decimals kept of FLOAT/REAL values."
    )
    max_rows_in_memory: int = Field(
        default=200_000,
        ge=1,
        description="Rows per side held at once while drilling into differing buckets.",
    )
    memory_limit_mb: int | None = Field(
        default=None,
        ge=16,
        description=(
            "Opt-in cap on an in-process database's memory while comparing (DuckDB memory_limit). "
            "DuckDB applies it to the whole database instance, so every other query on that database "
            "in this process shares the cap: set it only where the comparison has the database to "
            "itself (the benchmark uses 32). None leaves the database's own setting."
        ),
    )


class ChangedSample(BaseModel):
    key: Any
    columns: list[str]


class ComparisonSamples(BaseModel):
    missing_in_target: list[Any] = Field(default_factory=list)
    extra_in_target: list[Any] = Field(default_factory=list)
    changed: list[ChangedSample] = Field(default_factory=list)


class ComparisonResult(BaseModel):
    """SPEC §7.3, field for field."""

    table: str
    source_table: str
    target_table: str
    key_columns: list[str]
    source_rows: int
    target_rows: int
    status: Literal["PASS", "FAIL"]
    missing_in_target: int
    extra_in_target: int
    changed: int
    samples: ComparisonSamples


@dataclass
class ComparisonStats:
    """How the comparison ran (for logs and the benchmark; not part of the result)."""

    hash_mode: str = "canonical"
    #: "key" (arithmetic on integer columns), "key hash" (native hash of the key), "canonical key
    #: hash" (MD5 of the key's canonical text), "row hash" (low bits of the row hash)
    bucket_by: str = "row hash"
    #: the columns the bucket is computed from (the key; chosen columns of a keyless table)
    bucket_columns: list[str] = field(default_factory=list)
    estimated_rows: int | None = None
    buckets: int = 0
    failing_buckets: int = 0
    scans_per_side: int = 0
    rows_transferred: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    sql: dict[str, str] = field(default_factory=dict)


@dataclass
class ComparisonOutcome:
    result: ComparisonResult
    stats: ComparisonStats


# ----------------------------------------------------------------------------- columns and kinds


@dataclass
class CanonicalField:
    """One compared column on one side, as the dialect's canonical-text recipe needs it."""

    name: str
    kind: str  # the kind both sides agreed on
    own: str  # this side's own kind
    scale: int
    prefixed: bool
    nullable: bool
    sa_type: Any
    expr: Any = None

    def bound(self, expr: Any) -> CanonicalField:
        return CanonicalField(
            self.name,
            self.kind,
            self.own,
            self.scale,
            self.prefixed,
            self.nullable,
            self.sa_type,
            expr,
        )


@dataclass
class Side:
    """One side of the comparison: its engine, dialect and reflected table."""

    label: str
    engine: Engine
    dialect: Dialect
    schema: str | None
    name: str
    columns: dict[str, dict[str, Any]]  # lower-case name -> reflected column
    primary_key: list[str]

    @property
    def display(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def table(self, names: Iterable[str]) -> Any:
        return table(self.name, *(column(n) for n in names), schema=self.schema)


def split_table_name(ref: str) -> tuple[str | None, str]:
    """`schema.table` -> (schema, table); a bare name has no schema."""
    ref = ref.strip()
    if not ref:
        raise ConfigurationError("table name must not be empty")
    schema, _, name = ref.rpartition(".")
    return (schema or None), name


def reflect_side(label: str, engine: Engine, ref: str) -> Side:
    schema, name = split_table_name(ref)
    try:
        inspector = inspect(engine)
        columns = inspector.get_columns(name, schema=schema)
    except NoSuchTableError:
        columns = []
    except SQLAlchemyError as exc:
        raise ConfigurationError(
            f"{label} table {ref!r}: could not read its columns ({exc})"
        ) from None
    if not columns:
        raise ConfigurationError(
            f"{label} table {ref!r} not found (or has no columns) in {engine.url.render_as_string()}"
        )
    try:
        primary_key = list(
            inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or []
        )
    except (SQLAlchemyError, NotImplementedError, ValueError, KeyError, TypeError):
        primary_key = []  # some dialects (duckdb-engine) cannot reflect keys: name them explicitly
    return Side(
        label=label,
        engine=engine,
        dialect=dialect_for(engine),
        schema=schema,
        name=name,
        columns={c["name"].lower(): dict(c) for c in columns},
        primary_key=primary_key,
    )


@dataclass
class Plan:
    names: list[str]  # compared columns (lower case), in source order; keys included
    keys: list[str]  # key columns (lower case); empty = multiset comparison
    source_fields: list[CanonicalField]
    target_fields: list[CanonicalField]

    def fields(self, side_index: int) -> list[CanonicalField]:
        return self.source_fields if side_index == 0 else self.target_fields


def plan_columns(source: Side, target: Side, options: ComparisonOptions) -> Plan:
    common = [n for n in source.columns if n in target.columns]
    if options.columns:
        wanted = [c.lower() for c in options.columns]
        for name in wanted:
            for side in (source, target):
                if name not in side.columns:
                    raise ConfigurationError(
                        f"column {name!r} is not in {side.label} table {side.display}; it has: {', '.join(side.columns)}"
                    )
        names = wanted
    else:
        names = common
    if not names:
        raise ConfigurationError(f"{source.display} and {target.display} have no column in common")
    if options.key_columns is not None:
        keys = [k.lower() for k in options.key_columns]
        for key in keys:
            for side in (source, target):
                if key not in side.columns:
                    raise ConfigurationError(
                        f"key column {key!r} is not in {side.label} table {side.display}; it has: {', '.join(side.columns)}"
                    )
    else:
        keys = [k.lower() for k in source.primary_key] or [k.lower() for k in target.primary_key]
        if any(k not in source.columns or k not in target.columns for k in keys):
            keys = []
    names = keys + [n for n in names if n not in keys]
    src_fields, tgt_fields = [], []
    for name in names:
        s_col, t_col = source.columns[name], target.columns[name]
        s_kind = source.dialect.column_kind(s_col["type"])
        t_kind = target.dialect.column_kind(t_col["type"])
        kind, scale = merge_kinds(s_kind, t_kind, options.float_scale)
        prefixed = kind in LENGTH_PREFIXED
        src_fields.append(
            CanonicalField(
                s_col["name"],
                kind,
                s_kind[0],
                scale,
                prefixed,
                bool(s_col.get("nullable", True)),
                s_col["type"],
            )
        )
        tgt_fields.append(
            CanonicalField(
                t_col["name"],
                kind,
                t_kind[0],
                scale,
                prefixed,
                bool(t_col.get("nullable", True)),
                t_col["type"],
            )
        )
    return Plan(names=names, keys=keys, source_fields=src_fields, target_fields=tgt_fields)


# ----------------------------------------------------------------------------- SQL building


def _const(value: str) -> Any:
    return literal(value, String, literal_execute=True)


def canonical_text_of(dialect: Any, fields: list[CanonicalField]) -> Any:
    """The canonical row text: fields concatenated, NULL `~`, text `<len>:<text>`, others `<text>;`."""
    length_field = CanonicalField("len", "int", "int", 0, False, False, types.Integer())
    parts = []
    for f in fields:
        value = dialect.canonical_text(f.expr, f)
        if f.prefixed:
            length = dialect.canonical_text(dialect.text_length(value), length_field)
            encoded = dialect.concat_text([length, _const(":"), value])
        else:
            encoded = dialect.concat_text([value, _const(";")])
        if f.nullable:
            encoded = case((f.expr.is_(None), _const("~")), else_=encoded)
        parts.append(encoded)
    return dialect.concat_text(parts)


#: key buckets: an integer key is reduced modulo the prime 2^31-1 and scrambled by a large odd
#: multiplier, all in BIGINT without overflow on every engine (products stay below 2^62).
#: Sequential keys spread evenly, and keys strided by 2, 10, 1000, 1024, 65536 or 86400 still
#: reach every bucket (tested; a small multiplier keeps the low bits of such keys zero).
KEY_PRIME = 2147483647
KEY_MULTIPLIER = 1103515245

BucketBy = Literal["key", "key hash", "canonical key hash", "row hash"]


def key_bucket(values: Iterable[Any], buckets: int) -> int:
    """The bucket of an integer key (Python reference of `key_bucket_sql`); NULL counts as 0
    (only keyless tables bucket by nullable columns: a NULL key is refused)."""
    acc: int | None = None
    for value in values:
        m = 0 if value is None else int(value) % KEY_PRIME  # Python's % is non-negative
        acc = m if acc is None else (acc * KEY_MULTIPLIER + m) % KEY_PRIME
    assert acc is not None
    return acc * KEY_MULTIPLIER % KEY_PRIME % buckets


def key_bucket_sql(keys: list[Any], buckets: int, *, nulls: bool = False) -> Any:
    """`key_bucket` in SQL: `%` truncates toward zero on every engine, hence `(k % p + p) % p`;
    with `nulls`, a NULL column counts as 0 (keyless tables bucketed by nullable columns)."""
    prime: Any = literal_column(str(KEY_PRIME))
    multiplier: Any = literal_column(str(KEY_MULTIPLIER))
    acc: Any = None
    for key in keys:
        m = (cast(key % prime, types.BigInteger()) + prime) % prime
        if nulls:
            m = func.coalesce(m, literal_column("0"))
        acc = m if acc is None else (acc * multiplier + m) % prime
    return (acc * multiplier) % prime % literal_column(str(buckets))


def canonical_key_bucket(spec: str, values: tuple[Any, ...] | list[Any], buckets: int) -> int:
    """The bucket of a key by its canonical hash (Python reference of bucket_by "canonical key
    hash"): the low bits of the key columns' canonical row hash, on every engine."""
    from prefect_ombudsman.dialects.sqlite import canonical_row_hash

    return canonical_row_hash(spec, values) & (buckets - 1)


def integer_key(fields: list[CanonicalField]) -> bool:
    """Whether every key field is an integer (or a scale-0 decimal) on this side."""
    return bool(fields) and all(
        f.own != "bool" and (f.kind == "int" or (f.kind == "decimal" and f.scale == 0))
        for f in fields
    )


class SideQueries:
    """The SQL of one side: level-1 buckets, level-2 keys and hashes, level-3 canonical rows."""

    def __init__(
        self,
        side: Side,
        fields: list[CanonicalField],
        keys: list[str],
        mode: str,
        buckets: int,
        bucket_by: BucketBy = "row hash",
        bucket_columns: list[str] | None = None,
    ) -> None:
        self.side = side
        self.dialect: Any = side.dialect
        self.fields = fields
        self.keys = keys
        self.key_fields = [f for f in fields if f.name.lower() in keys]
        #: what the bucket is computed from: the key, or chosen columns of a keyless table
        self.bucket_fields = (
            [f for f in fields if f.name.lower() in bucket_columns]
            if bucket_columns is not None
            else self.key_fields
        )
        self.mode = mode
        self.buckets = buckets
        self.bucket_by = bucket_by
        self.table = side.table(f.name for f in fields)

    def _bound(self, source: Any) -> list[CanonicalField]:
        return [f.bound(source.c[f.name]) for f in self.fields]

    def hash_columns(self) -> list[Any]:
        fields = self._bound(self.table)
        if self.mode == "native":
            native = self.dialect.native_row_hash([f.expr for f in fields])
            assert native is not None
            return native
        return self.dialect.row_hash(fields, lambda: canonical_text_of(self.dialect, fields))

    def key_bucket(self) -> Any:
        """The bucket of a row from its bucket columns alone (bucket_by "key", "key hash",
        "canonical key hash"): cheap next to the row hash, and the same on both sides."""
        keys = [self.table.c[f.name] for f in self.bucket_fields]
        if self.bucket_by == "key":
            return key_bucket_sql(keys, self.buckets, nulls=not self.keys)
        if self.bucket_by == "canonical key hash":
            bound = [f.bound(self.table.c[f.name]) for f in self.bucket_fields]
            hashed = self.dialect.row_hash(bound, lambda: canonical_text_of(self.dialect, bound))
        else:
            hashed = self.dialect.native_row_hash(keys)
        parts = self.dialect.hash_parts(hashed)
        return self.dialect.hash_bucket(parts[-1], self.buckets)

    def _hashed(self, extra: list[Any], where: Any = None) -> Any:
        """A subquery: `extra` columns plus the row hash columns `_omb_h0..` (of the rows passing
        `where`), fenced where the hash is referenced twice above it (so it is computed once)."""
        hashed = [h.label(f"_omb_h{i}") for i, h in enumerate(self.hash_columns())]
        inner = select(*extra, *hashed).select_from(self.table)
        if where is not None:
            inner = inner.where(where)
        probe: list[Any] = self.dialect.hash_parts(
            [column(f"_omb_h{i}") for i in range(len(hashed))]
        )
        if self.bucket_by == "row hash" or len(probe) > 1:
            inner = self.dialect.fence(inner)
        sub = inner.subquery("_omb_rows")
        parts = self.dialect.hash_parts([sub.c[f"_omb_h{i}"] for i in range(len(hashed))])
        return sub, parts

    def level1(self) -> Any:
        extra = []
        nullable_keys = [f for f in self.key_fields if f.nullable]
        if nullable_keys:
            flag = case((or_(*[self.table.c[f.name].is_(None) for f in nullable_keys]), 1), else_=0)
            extra.append(flag.label("_omb_null_key"))
        if self.bucket_by != "row hash":
            extra.append(self.key_bucket().label("_omb_bucket"))
        sub, parts = self._hashed(extra)
        bucket = (
            sub.c._omb_bucket
            if self.bucket_by != "row hash"
            else self.dialect.hash_bucket(parts[-1], self.buckets).label("_omb_bucket")
        )
        columns = [
            bucket,
            func.count().label("_omb_rows"),
            *[self.dialect.hash_sum(p).label(f"_omb_s{j}") for j, p in enumerate(parts)],
        ]
        if nullable_keys:
            columns.append(func.sum(sub.c._omb_null_key).label("_omb_null_keys"))
        return select(*columns).group_by(bucket)

    def level2(self) -> Any:
        """Rows of the listed buckets: keyed -> raw keys, canonical keys, hash parts; else all columns.

        With key buckets the filter runs on the key before any row is hashed, so only the rows of
        the failing buckets are hashed again."""
        names = [f.name for f in self.key_fields] if self.keys else [f.name for f in self.fields]
        listed = bindparam(
            "buckets", expanding=True, literal_execute=True, type_=types.BigInteger()
        )
        if self.bucket_by != "row hash":
            sub, parts = self._hashed(
                [self.table.c[n] for n in names], where=self.key_bucket().in_(listed)
            )
        else:
            sub, parts = self._hashed([self.table.c[n] for n in names])
        canon = (
            [
                self.dialect.canonical_text(sub.c[f.name], f.bound(sub.c[f.name]))
                for f in self.key_fields
            ]
            if self.keys
            else []
        )
        query = select(*[sub.c[n] for n in names], *canon, *parts)
        if self.bucket_by == "row hash":
            query = query.where(self.dialect.hash_bucket(parts[-1], self.buckets).in_(listed))
        return query

    def level3(self, raw_keys: list[tuple[Any, ...]]) -> Any:
        """Canonical text of every compared column for the given keys."""
        t = self.table
        fields = self._bound(t)
        keys = [t.c[f.name] for f in self.key_fields]
        if len(keys) == 1:
            condition = keys[0].in_([k[0] for k in raw_keys])
        else:
            condition = or_(
                *[and_(*[c == v for c, v in zip(keys, k, strict=True)]) for k in raw_keys]
            )
        canon_keys = [
            self.dialect.canonical_text(t.c[f.name], f.bound(t.c[f.name])) for f in self.key_fields
        ]
        values = [self.dialect.canonical_text(f.expr, f) for f in fields]
        return select(*canon_keys, *values).where(condition)


def fold(sums: Iterable[Any]) -> int:
    """Recombine the per-part hash sums of one bucket into the 64-bit sum (parts are 32-bit shifted)."""
    values = [int(v or 0) for v in sums]
    if len(values) == 1:
        return values[0] % MOD64
    high, low = values
    return ((high << 32) + low) % MOD64


def compile_sql(query: Any, engine_or_dialect: Any) -> str:
    """The SQL text of a query as one side's database receives it (values inlined)."""
    sa_dialect = getattr(engine_or_dialect, "dialect", engine_or_dialect)
    return str(query.compile(dialect=sa_dialect, compile_kwargs={"literal_binds": True}))


# ----------------------------------------------------------------------------- the algorithm


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, (datetime, date, dtime)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, UUID):
        return str(value)
    return str(value)


def _hash_of(parts: tuple[Any, ...]) -> int:
    return fold(parts)


def _choose_mode(source: Side, target: Side, plan: Plan, wanted: HashMode) -> str:
    if wanted == "canonical":
        return "canonical"
    same_engine = source.dialect.native_hash_compatible(target.dialect)
    probe: list[Any] = [column(f.name) for f in plan.source_fields]
    native_ok = (
        same_engine
        and source.dialect.native_row_hash(probe) is not None
        and target.dialect.native_row_hash(probe) is not None
    )
    same_types = all(
        _type_text(s.sa_type, source.engine) == _type_text(t.sa_type, target.engine)
        for s, t in zip(plan.source_fields, plan.target_fields, strict=True)
    )
    if wanted == "native":
        if not native_ok:
            raise ConfigurationError(
                f"hash_mode 'native' needs the same engine on both sides with a native row hash; "
                f"got {source.dialect.name} and {target.dialect.name}"
            )
        return "native"
    return "native" if native_ok and same_types else "canonical"


def _type_text(sa_type: Any, engine: Engine) -> str:
    try:
        return sa_type.compile(dialect=engine.dialect)
    except Exception:
        return repr(sa_type)


class _Runner:
    """Runs one query per side concurrently and counts transferred rows."""

    def __init__(
        self,
        connections: list[Connection],
        stats: ComparisonStats,
        cancel_check: Callable[[], None],
    ) -> None:
        self.connections = connections
        self.stats = stats
        self.cancel_check = cancel_check
        self.pool = cf.ThreadPoolExecutor(max_workers=2, thread_name_prefix="ombudsman-compare")

    def both(self, fn: Callable[[int, Connection], Any]) -> list[Any]:
        self.cancel_check()
        futures = [self.pool.submit(fn, i, conn) for i, conn in enumerate(self.connections)]
        return [f.result() for f in futures]

    def rows(
        self, conn: Connection, query: Any, params: dict[str, Any] | None = None
    ) -> Iterable[Any]:
        result = conn.execution_options(stream_results=True, yield_per=10_000).execute(
            query, params or {}
        )
        count = 0
        for row in result:
            count += 1
            if count % 50_000 == 0:
                self.cancel_check()
            yield row
        self.stats.rows_transferred += count

    def close(self) -> None:
        self.pool.shutdown(wait=True)


#: level-1 buckets are sized for about this many rows each: a failing bucket then costs its
#: few dozen rows in level 2, while the level-1 answer stays small (at most `buckets` rows).
ROWS_PER_BUCKET = 64


def _bucket_count(wanted: int, estimated_rows: int | None = None) -> int:
    """A power of two: at most `wanted`, about one per ROWS_PER_BUCKET estimated rows."""
    if estimated_rows is not None:
        wanted = max(1, min(wanted, -(-estimated_rows // ROWS_PER_BUCKET)))
    buckets = 1
    while buckets < wanted:
        buckets <<= 1
    return buckets


def _estimated_rows(side: Side, conn: Connection) -> int | None:
    """The database's cheap row estimate (catalog, planner or metadata), None when it has none."""
    try:
        return side.dialect.estimated_rows(conn, side.schema, side.name)
    except (SQLAlchemyError, LookupError, TypeError, ValueError):
        conn.rollback()
        return None


#: kinds a keyless table may be bucketed by (cheap canonical text, usually many distinct values)
KEYLESS_BUCKET_KINDS = frozenset({"int", "decimal", "date", "timestamp", "time", "uuid"})


def _bucket_by(plan: Plan, mode: str) -> tuple[BucketBy, list[str]]:
    """How rows are bucketed, and by which columns: always by a function of columns computed
    alike on both sides, so level 2 filters before hashing, except for a keyless table with
    only text and float columns (bucketed by its row hash)."""
    pairs = list(zip(plan.source_fields, plan.target_fields, strict=True))
    if plan.keys:
        names = [s.name.lower() for s, _ in pairs if s.name.lower() in plan.keys]
        keyed = [[p[i] for p in pairs if p[0].name.lower() in plan.keys] for i in (0, 1)]
        if all(integer_key(fields) for fields in keyed):
            return "key", names
        return ("key hash" if mode == "native" else "canonical key hash"), names
    # no key: the integer columns by arithmetic (NULL as 0), else the canonical hash
    # of the other cheap, exactly comparable columns (floats are rounded: left out)
    integers = [s.name.lower() for s, t in pairs if integer_key([s]) and integer_key([t])]
    if integers:
        return "key", integers
    cheap = [
        s.name.lower()
        for s, t in pairs
        if s.kind in KEYLESS_BUCKET_KINDS and "bool" not in (s.own, t.own)
    ]
    if cheap:
        return "canonical key hash", cheap
    return "row hash", []


def compare_tables(
    source_engine: Engine,
    target_engine: Engine,
    source_table: str,
    target_table: str | None = None,
    *,
    table_label: str | None = None,
    options: ComparisonOptions | None = None,
    cancel_check: Callable[[], None] | None = None,
) -> ComparisonOutcome:
    """Compare `source_table` with `target_table` (default: the same name) row by row."""
    options = options or ComparisonOptions()
    target_table = target_table or source_table
    cancel_check = cancel_check or (lambda: None)
    stats = ComparisonStats()
    started = time.perf_counter()
    source = reflect_side("source", source_engine, source_table)
    target = reflect_side("target", target_engine, target_table)
    plan = plan_columns(source, target, options)
    with source_engine.connect() as src_conn, target_engine.connect() as tgt_conn:
        estimates = [_estimated_rows(source, src_conn), _estimated_rows(target, tgt_conn)]
        known = [e for e in estimates if e is not None]
        stats.estimated_rows = max(known) if known else None
        buckets = _bucket_count(options.buckets, stats.estimated_rows)
        stats.buckets = buckets
        prepared: list[tuple[Side, Connection]] = []
        runner = _Runner([src_conn, tgt_conn], stats, cancel_check)
        try:
            for side, conn in ((source, src_conn), (target, tgt_conn)):
                side.dialect.prepare_comparison(conn, memory_limit_mb=options.memory_limit_mb)
                prepared.append((side, conn))
            mode = _choose_mode(source, target, plan, options.hash_mode)
            stats.hash_mode = mode
            bucket_by, stats.bucket_columns = _bucket_by(plan, mode)
            stats.bucket_by = bucket_by
            queries = [
                SideQueries(side, fields, plan.keys, mode, buckets, bucket_by, stats.bucket_columns)
                for side, fields in ((source, plan.source_fields), (target, plan.target_fields))
            ]
            stats.seconds["setup"] = round(time.perf_counter() - started, 4)
            result = _compare(runner, source, target, plan, queries, options, stats, table_label)
        finally:
            runner.close()
            for side, conn in prepared:
                side.dialect.finish_comparison(conn)
    stats.seconds["total"] = round(time.perf_counter() - started, 4)
    return ComparisonOutcome(result=result, stats=stats)


def _compare(
    runner: _Runner,
    source: Side,
    target: Side,
    plan: Plan,
    queries: list[SideQueries],
    options: ComparisonOptions,
    stats: ComparisonStats,
    table_label: str | None,
) -> ComparisonResult:
    sides = (source, target)
    # Level 1: per-bucket (count, hash sum) from one scan per side.
    t0 = time.perf_counter()
    level1 = [q.level1() for q in queries]
    stats.sql["level1_source"] = compile_sql(level1[0], source.engine)
    stats.sql["level1_target"] = compile_sql(level1[1], target.engine)

    def scan_buckets(i: int, conn: Connection) -> tuple[dict[int, tuple[int, int]], int]:
        out: dict[int, tuple[int, int]] = {}
        null_keys = 0
        names = [c.name for c in level1[i].selected_columns]
        width = len(names)
        has_null = names[-1] == "_omb_null_keys"
        for row in runner.rows(conn, level1[i]):
            sums = row[2 : width - 1] if has_null else row[2:width]
            # a NULL key has no key bucket: it is refused below
            out[-1 if row[0] is None else int(row[0])] = (int(row[1]), fold(sums))
            if has_null:
                null_keys += int(row[-1] or 0)
        return out, null_keys

    (src_buckets, src_nulls), (tgt_buckets, tgt_nulls) = runner.both(scan_buckets)
    stats.scans_per_side = 1
    stats.seconds["level1"] = round(time.perf_counter() - t0, 4)
    for side, nulls in zip(sides, (src_nulls, tgt_nulls), strict=True):
        if nulls:
            raise ConfigurationError(
                f"{side.label} table {side.display} has {nulls} row(s) with NULL in key column(s) "
                f"{', '.join(plan.keys)}: a key must identify rows; give key_columns that are never NULL, "
                "or key_columns: [] to compare the tables as multisets of rows"
            )
    source_rows = sum(n for n, _ in src_buckets.values())
    target_rows = sum(n for n, _ in tgt_buckets.values())
    failing = sorted(
        b
        for b in src_buckets.keys() | tgt_buckets.keys()
        if src_buckets.get(b) != tgt_buckets.get(b)
    )
    stats.failing_buckets = len(failing)
    label = table_label or source.name
    samples = ComparisonSamples()
    counts = {"missing": 0, "extra": 0, "changed": 0}
    if failing:
        t1 = time.perf_counter()
        batches = _batches(failing, src_buckets, tgt_buckets, options.max_rows_in_memory)
        if plan.keys:
            _drill_keyed(runner, plan, queries, batches, options, counts, samples, stats)
        else:
            _drill_multiset(runner, queries, batches, options, counts, samples, stats)
        stats.seconds["drill_down"] = round(time.perf_counter() - t1, 4)
    passed = not failing and source_rows == target_rows
    return ComparisonResult(
        table=label,
        source_table=source.display,
        target_table=target.display,
        key_columns=[f.name for f in plan.source_fields if f.name.lower() in plan.keys],
        source_rows=source_rows,
        target_rows=target_rows,
        status="PASS" if passed else "FAIL",
        missing_in_target=counts["missing"],
        extra_in_target=counts["extra"],
        changed=counts["changed"],
        samples=samples,
    )


def _batches(
    failing: list[int],
    src: dict[int, tuple[int, int]],
    tgt: dict[int, tuple[int, int]],
    budget: int,
) -> list[list[int]]:
    """Failing buckets grouped so that one batch holds at most `budget` rows per side."""
    batches: list[list[int]] = []
    current: list[int] = []
    load = 0
    for bucket in failing:
        rows = max(src.get(bucket, (0, 0))[0], tgt.get(bucket, (0, 0))[0])
        if current and load + rows > budget:
            batches.append(current)
            current, load = [], 0
        current.append(bucket)
        load += rows
    if current:
        batches.append(current)
    return batches


@dataclass
class _KeyRows:
    raw: tuple[Any, ...]
    hashes: Counter[int]


def _drill_keyed(
    runner: _Runner,
    plan: Plan,
    queries: list[SideQueries],
    batches: list[list[int]],
    options: ComparisonOptions,
    counts: dict[str, int],
    samples: ComparisonSamples,
    stats: ComparisonStats,
) -> None:
    """Level 2 by key: rows that match (same key, same hash) on both sides cancel out per batch;
    the rest (the differences, whose two versions may sit in different batches) are kept and
    classified at the end."""
    nkeys = len(plan.keys)
    level2 = [q.level2() for q in queries]
    stats.sql["level2_source"] = compile_sql(level2[0].params(buckets=[0]), queries[0].side.engine)
    stats.sql["level2_target"] = compile_sql(level2[1].params(buckets=[0]), queries[1].side.engine)
    pending: list[dict[tuple[Any, ...], _KeyRows]] = [{}, {}]
    for batch in batches:

        def fetch(i: int, conn: Connection, batch: list[int] = batch) -> dict[tuple[Any, ...], Any]:
            # canonical key -> (raw key, hash); a Counter of hashes only for a duplicated key
            rows: dict[tuple[Any, ...], Any] = {}
            for row in runner.rows(conn, level2[i], {"buckets": batch}):
                canon = tuple(row[nkeys : 2 * nkeys])
                h = _hash_of(tuple(row[2 * nkeys :]))
                held = rows.get(canon)
                if held is None:
                    rows[canon] = (tuple(row[:nkeys]), h)
                elif isinstance(held, tuple):
                    rows[canon] = _KeyRows(held[0], Counter((held[1], h)))
                else:
                    held.hashes[h] += 1
            return rows

        src_rows, tgt_rows = runner.both(fetch)
        stats.scans_per_side += 1
        for key in [k for k in src_rows if k in tgt_rows]:
            s, t = src_rows[key], tgt_rows[key]
            if isinstance(s, tuple) and isinstance(t, tuple):
                if s[1] == t[1]:
                    del src_rows[key], tgt_rows[key]
                continue
            s, t = src_rows[key], tgt_rows[key] = _as_key_rows(s), _as_key_rows(t)
            common = s.hashes & t.hashes
            s.hashes -= common
            t.hashes -= common
        for side_rows, keep in zip((src_rows, tgt_rows), pending, strict=True):
            for key, held_rows in side_rows.items():
                entry = _as_key_rows(held_rows)
                if not entry.hashes:
                    continue
                held = keep.get(key)
                if held is None:
                    keep[key] = entry
                else:
                    held.hashes.update(entry.hashes)
    src_keep, tgt_keep = pending
    changed_keys: list[tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]] = []
    for key in sorted(src_keep.keys() | tgt_keep.keys(), key=repr):
        s = src_keep.get(key)
        t = tgt_keep.get(key)
        s_hashes = s.hashes if s else Counter()
        t_hashes = t.hashes if t else Counter()
        common = s_hashes & t_hashes
        n_s = sum((s_hashes - common).values())
        n_t = sum((t_hashes - common).values())
        if n_s == 0 and n_t == 0:
            continue
        if n_t == 0 or t is None:
            counts["missing"] += n_s
            _sample(samples.missing_in_target, s.raw if s else key, options.sample_size)
            continue
        if n_s == 0 or s is None:
            counts["extra"] += n_t
            _sample(samples.extra_in_target, t.raw, options.sample_size)
            continue
        paired = min(n_s, n_t)
        counts["changed"] += paired
        counts["missing"] += n_s - paired
        counts["extra"] += n_t - paired
        if len(changed_keys) < options.sample_size:
            changed_keys.append((key, s.raw, t.raw))
    if changed_keys:
        t3 = time.perf_counter()
        _changed_columns(runner, plan, queries, changed_keys, samples)
        stats.seconds["changed_columns"] = round(time.perf_counter() - t3, 4)


def _as_key_rows(held: Any) -> _KeyRows:
    return _KeyRows(held[0], Counter((held[1],))) if isinstance(held, tuple) else held


def _key_value(raw: tuple[Any, ...]) -> Any:
    return _jsonable(raw[0]) if len(raw) == 1 else [_jsonable(v) for v in raw]


def _sample(bucket: list[Any], raw: tuple[Any, ...], limit: int) -> None:
    if len(bucket) < limit:
        bucket.append(_key_value(raw))


def _changed_columns(
    runner: _Runner,
    plan: Plan,
    queries: list[SideQueries],
    changed: list[tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]],
    samples: ComparisonSamples,
) -> None:
    """Level 3: canonical values of the sampled changed rows, compared column by column."""
    nkeys = len(plan.keys)

    def fetch(i: int, conn: Connection) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        raws = [c[1 + i] for c in changed]
        out: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for start in range(0, len(raws), 100):
            for row in runner.rows(conn, queries[i].level3(raws[start : start + 100])):
                out[tuple(row[:nkeys])] = tuple(row[nkeys:])
        return out

    src_rows, tgt_rows = runner.both(fetch)
    names = [f.name for f in plan.source_fields]
    for key, s_raw, _ in changed:
        s_vals, t_vals = src_rows.get(key), tgt_rows.get(key)
        columns = (
            [n for n, a, b in zip(names, s_vals, t_vals, strict=True) if a != b]
            if s_vals and t_vals
            else []
        )
        samples.changed.append(ChangedSample(key=_key_value(s_raw), columns=columns))


def _drill_multiset(
    runner: _Runner,
    queries: list[SideQueries],
    batches: list[list[int]],
    options: ComparisonOptions,
    counts: dict[str, int],
    samples: ComparisonSamples,
    stats: ComparisonStats,
) -> None:
    """Level 2 without a key: rows are compared as multisets of row hashes (duplicates count)."""
    level2 = [q.level2() for q in queries]
    names = [[f.name for f in q.fields] for q in queries]
    for batch in batches:

        def fetch(
            i: int, conn: Connection, batch: list[int] = batch
        ) -> tuple[Counter[int], dict[int, Any]]:
            hashes: Counter[int] = Counter()
            first: dict[int, Any] = {}
            width = len(names[i])
            for row in runner.rows(conn, level2[i], {"buckets": batch}):
                h = _hash_of(tuple(row[width:]))
                hashes[h] += 1
                if h not in first:
                    first[h] = {n: _jsonable(v) for n, v in zip(names[i], row[:width], strict=True)}
            return hashes, first

        (s_hashes, s_rows), (t_hashes, t_rows) = runner.both(fetch)
        stats.scans_per_side += 1
        missing = s_hashes - t_hashes
        extra = t_hashes - s_hashes
        counts["missing"] += sum(missing.values())
        counts["extra"] += sum(extra.values())
        for h in sorted(missing):
            if len(samples.missing_in_target) < options.sample_size:
                samples.missing_in_target.append(s_rows[h])
        for h in sorted(extra):
            if len(samples.extra_in_target) < options.sample_size:
                samples.extra_in_target.append(t_rows[h])


def table_fingerprint(
    engine: Engine,
    table_ref: str,
    *,
    columns: list[str] | None = None,
    float_scale: int = 6,
    hash_mode: Literal["canonical", "native"] = "canonical",
    memory_limit_mb: int | None = None,
) -> tuple[int, int]:
    """(row count, sum of the 64-bit row hashes mod 2^64) of one table, in one scan.

    Each column is rendered in its own kind (decimals at their declared scale, floats at
    `float_scale` decimals), so equal data on two engines with equal declared types gives
    equal fingerprints.
    """
    side = reflect_side("table", engine, table_ref)
    names = [c.lower() for c in columns] if columns else list(side.columns)
    fields = []
    for name in names:
        col = side.columns[name]
        own, own_scale = side.dialect.column_kind(col["type"])
        kind, scale = merge_kinds((own, own_scale), (own, own_scale), float_scale)
        fields.append(
            CanonicalField(
                col["name"],
                kind,
                own,
                scale,
                kind in LENGTH_PREFIXED,
                bool(col.get("nullable", True)),
                col["type"],
            )
        )
    with engine.connect() as conn:
        side.dialect.prepare_comparison(conn, memory_limit_mb=memory_limit_mb)
        try:
            query = SideQueries(side, fields, [], hash_mode, 1).level1()
            rows, total = 0, 0
            for row in conn.execute(query):
                rows += int(row[1])
                total = (total + fold(row[2:])) % MOD64
        finally:
            side.dialect.finish_comparison(conn)
    return rows, total
