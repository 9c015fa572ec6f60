"""SQL building: the canonical row text, key buckets and the three levels' queries of one side."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal_column,
    or_,
    select,
    types,
)

from prefect_ombudsman.validation.comparison.models import BucketBy, Recipe
from prefect_ombudsman.validation.comparison.plan import CanonicalField, TableSide

MOD64 = 1 << 64


def canonical_text_of(dialect: Any, fields: list[CanonicalField]) -> Any:
    """The canonical row text: fields concatenated, NULL `~`, text `<len>:<text>`, others `<text>;`
    (built by the dialect: `Dialect.canonical_row_text`)."""
    return dialect.canonical_row_text(fields)


#: key buckets: an integer key is reduced modulo the prime 2^31-1 and scrambled by a large odd
#: multiplier, all in BIGINT without overflow on every engine (products stay below 2^62).
#: Sequential keys spread evenly, and keys strided by 2, 10, 1000, 1024, 65536 or 86400 still
#: reach every bucket (tested; a small multiplier keeps the low bits of such keys zero).
KEY_PRIME = 2147483647
KEY_MULTIPLIER = 1103515245


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


def canonical_key_bucket(
    spec: str, values: tuple[Any, ...] | list[Any], buckets: int, recipe: Recipe = "arithmetic"
) -> int:
    """The bucket of a key by its canonical hash (Python reference of bucket_by "canonical key
    hash"): the low bits of the key columns' canonical row hash, on every engine."""
    from prefect_ombudsman.dialects.sqlite import arithmetic_row_hash_of, canonical_row_hash

    hashed = arithmetic_row_hash_of if recipe == "arithmetic" else canonical_row_hash
    return hashed(spec, values) & (buckets - 1)


class SideQueries:
    """The SQL of one side: level-1 buckets, level-2 keys and hashes, level-3 canonical rows."""

    def __init__(
        self,
        side: TableSide,
        fields: list[CanonicalField],
        keys: list[str],
        mode: str,
        buckets: int,
        bucket_by: BucketBy = "row hash",
        bucket_columns: list[str] | None = None,
        recipe: Recipe | None = None,
    ) -> None:
        self.side = side
        #: the canonical recipe (default: arithmetic where this side's dialect gives it)
        self.recipe: Recipe = recipe or ("arithmetic" if side.dialect.arithmetic_hash else "md5")
        self.arithmetic = mode != "native" and self.recipe == "arithmetic"
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
        return self._canonical_hash(fields)

    def _canonical_hash(self, fields: list[CanonicalField]) -> list[Any]:
        if self.arithmetic:
            return self.dialect.row_hash_arithmetic(fields)
        return self.dialect.row_hash(fields, lambda: canonical_text_of(self.dialect, fields))

    def _parts(self, columns: list[Any]) -> list[Any]:
        if self.arithmetic:
            return self.dialect.hash_parts_arithmetic(columns)
        return self.dialect.hash_parts(columns)

    def key_bucket(self) -> Any:
        """The bucket of a row from its bucket columns alone (bucket_by "key", "key hash",
        "canonical key hash"): cheap next to the row hash, and the same on both sides."""
        keys = [self.table.c[f.name] for f in self.bucket_fields]
        if self.bucket_by == "key":
            return key_bucket_sql(keys, self.buckets, nulls=not self.keys)
        if self.bucket_by == "canonical key hash":
            bound = [f.bound(self.table.c[f.name]) for f in self.bucket_fields]
            if self.arithmetic:
                return self.dialect.arithmetic_bucket(bound, self.buckets)
            hashed = self._canonical_hash(bound)
        else:
            hashed = self.dialect.native_row_hash(keys)
        parts = self._parts(hashed)
        return self.dialect.hash_bucket(parts[-1], self.buckets)

    def _hashed(self, extra: list[Any], where: Any = None) -> Any:
        """A subquery: `extra` columns plus the row hash columns `_omb_h0..` (of the rows passing
        `where`), fenced where the hash is referenced twice above it (so it is computed once)."""
        text_number = (
            self.dialect.arithmetic_text_number(self._bound(self.table))
            if self.arithmetic
            else None
        )
        if text_number is None:
            hashed = [h.label(f"_omb_h{i}") for i, h in enumerate(self.hash_columns())]
            inner = select(*extra, *hashed).select_from(self.table)
            if where is not None:
                inner = inner.where(where)
        else:
            inner, hashed = self._hashed_over_text_number(extra, where, text_number)
        probe: list[Any] = self._parts([column(f"_omb_h{i}") for i in range(len(hashed))])
        if self.bucket_by == "row hash" or len(probe) > 1:
            inner = self.dialect.fence(inner)
        sub = inner.subquery("_omb_rows")
        parts = self._parts([sub.c[f"_omb_h{i}"] for i in range(len(hashed))])
        return sub, parts

    def _hashed_over_text_number(
        self, extra: list[Any], where: Any, text_number: Any
    ) -> tuple[Any, list[Any]]:
        """The arithmetic hash over a fenced derived table holding the row's MD5 number
        `_omb_t`: both lanes read the column, so each row's MD5 is computed once (inlined, the
        expression would be evaluated once per lane on PostgreSQL and MariaDB)."""
        names = {f.name for f in self.fields}
        carried = [e for e in extra if e.name not in names]
        rows = select(
            *[self.table.c[f.name] for f in self.fields], *carried, text_number.label("_omb_t")
        ).select_from(self.table)
        if where is not None:
            rows = rows.where(where)
        pre = self.dialect.fence(rows).subquery("_omb_text")
        hashed = self.dialect.row_hash_arithmetic(self._bound(pre), pre.c._omb_t)
        labelled = [h.label(f"_omb_h{i}") for i, h in enumerate(hashed)]
        return select(*[pre.c[e.name] for e in extra], *labelled).select_from(pre), labelled

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
