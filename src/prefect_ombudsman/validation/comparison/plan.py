"""Column planning: the two sides reflected, the compared columns and their agreed kinds, the
hash mode and recipe, how rows are bucketed and into how many buckets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    column,
    inspect,
    table,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

from prefect_ombudsman.dialects.base import Dialect, dialect_for
from prefect_ombudsman.dialects.types import merge_kinds
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.validation.comparison.models import (
    BucketBy,
    ComparisonOptions,
    HashMode,
    Recipe,
)

#: kinds whose canonical text may hold any character: written `<length>:<text>`
LENGTH_PREFIXED = frozenset({"text", "char", "uuid", "binary", "other"})


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
class TableSide:
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


def reflect_side(label: str, engine: Engine, ref: str) -> TableSide:
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
    return TableSide(
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


def plan_columns(source: TableSide, target: TableSide, options: ComparisonOptions) -> Plan:
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


def integer_key(fields: list[CanonicalField]) -> bool:
    """Whether every key field is an integer (or a scale-0 decimal) on this side."""
    return bool(fields) and all(
        f.own != "bool" and (f.kind == "int" or (f.kind == "decimal" and f.scale == 0))
        for f in fields
    )


def choose_recipe(source: TableSide, target: TableSide, wanted: HashMode) -> Recipe:
    """The canonical recipe: the one asked for by name (`md5`, `arithmetic`), else arithmetic when
    both dialects give it and prefer it, else MD5 of the row text."""
    sides = (source.dialect, target.dialect)
    if wanted == "md5":
        return "md5"
    gives = all(d.arithmetic_hash for d in sides)
    if wanted == "arithmetic":
        if not gives:
            lacking = next(d.name for d in sides if not d.arithmetic_hash)
            raise ConfigurationError(
                f"hash_mode: 'arithmetic' is not available on {lacking}; use 'md5' or 'canonical'"
            )
        return "arithmetic"
    return "arithmetic" if gives and all(d.arithmetic_hash_preferred for d in sides) else "md5"


def choose_mode(source: TableSide, target: TableSide, plan: Plan, wanted: HashMode) -> str:
    if wanted in ("canonical", "md5", "arithmetic"):
        return "canonical"
    same_engine = source.dialect.native_hash_compatible(target.dialect)
    probe: list[Any] = [column(f.name) for f in plan.source_fields]
    native_ok = (
        same_engine
        and source.dialect.native_row_hash(probe) is not None
        and target.dialect.native_row_hash(probe) is not None
    )
    same_types = all(
        type_text(s.sa_type, source.engine) == type_text(t.sa_type, target.engine)
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


def type_text(sa_type: Any, engine: Engine) -> str:
    try:
        return sa_type.compile(dialect=engine.dialect)
    except Exception:
        return repr(sa_type)


#: level-1 buckets are sized for about this many rows each: a failing bucket then costs its
#: few dozen rows in level 2, while the level-1 answer stays small (at most `buckets` rows).
ROWS_PER_BUCKET = 64


def bucket_count(wanted: int, estimated_rows: int | None = None) -> int:
    """A power of two: at most `wanted`, about one per ROWS_PER_BUCKET estimated rows."""
    if estimated_rows is not None:
        wanted = max(1, min(wanted, -(-estimated_rows // ROWS_PER_BUCKET)))
    buckets = 1
    while buckets < wanted:
        buckets <<= 1
    return buckets


def estimated_rows_of(side: TableSide, conn: Connection) -> int | None:
    """The database's cheap row estimate (catalog, planner or metadata), None when it has none."""
    try:
        return side.dialect.estimated_rows(conn, side.schema, side.name)
    except (SQLAlchemyError, LookupError, TypeError, ValueError):
        conn.rollback()
        return None


#: kinds a keyless table may be bucketed by (cheap canonical text, usually many distinct values)
KEYLESS_BUCKET_KINDS = frozenset({"int", "decimal", "date", "timestamp", "time", "uuid"})


def choose_buckets(plan: Plan, mode: str) -> tuple[BucketBy, list[str]]:
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
