"""The generator: a plan of tables and sizes, streamed as Arrow chunks with per-chunk RNGs.

Determinism: a table's rows are cut into logical chunks of `CHUNK_ROWS` (a constant, not a
setting) and chunk *i* of table *t* draws from `default_rng(SeedSequence([seed, h(t), i]))`.
The content therefore depends only on (seed, parameters), never on how loaders batch rows,
on parallelism or on the target. Memory stays bounded by one chunk plus the small per-dimension
attribute arrays that facts look up (prices, balances ...).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefect_ombudsman.datagen.calendar import Calendar
from prefect_ombudsman.datagen.catalog import Column, ColumnType, StarSchema, TableSpec
from prefect_ombudsman.datagen.chunks import (
    ChunkContext,
    WithNulls,
    chunk_rng,
)
from prefect_ombudsman.datagen.schemas import get_schema
from prefect_ombudsman.errors import ConfigurationError

CHUNK_ROWS = 100_000
DEFAULT_START = date(2020, 1, 1)
DEFAULT_END = date(2024, 12, 31)
MAX_SEED = 2**63 - 1


def random_seed() -> int:
    return secrets.randbits(62)


@dataclass(frozen=True)
class GenerationPlan:
    """Everything that determines the generated content."""

    schema: StarSchema
    seed: int
    row_count: int
    sizes: dict[str, int]
    calendar: Calendar
    tables: tuple[TableSpec, ...]

    def describe(self) -> dict[str, Any]:
        return {
            "schema_type": self.schema.name,
            "seed": self.seed,
            "row_count": self.row_count,
            "start_date": self.calendar.start.isoformat(),
            "end_date": self.calendar.end.isoformat(),
            "tables": {t.name: self.sizes[t.name] for t in self.tables},
        }


def build_plan(
    schema_type: str,
    row_count: int,
    seed: int | None = None,
    *,
    tables: Mapping[str, int] | None = None,
    table_name: str | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
) -> GenerationPlan:
    """Resolve sizes and the calendar; unknown tables and bad sizes are errors listing what is valid."""
    schema = get_schema(schema_type)
    if (
        not isinstance(row_count, int)
        or isinstance(row_count, bool)
        or not 1 <= row_count <= 1_000_000_000
    ):
        raise ConfigurationError(
            f"row_count must be an integer from 1 to 1,000,000,000, got {row_count!r}"
        )
    for name, rows in (tables or {}).items():
        schema.table(name)
        if not isinstance(rows, int) or isinstance(rows, bool) or not 1 <= rows <= 1_000_000_000:
            raise ConfigurationError(
                f"tables.{name} must be an integer from 1 to 1,000,000,000, got {rows!r}"
            )
    if seed is not None and not 0 <= int(seed) <= MAX_SEED:
        raise ConfigurationError(f"seed must be from 0 to {MAX_SEED}, got {seed!r}")
    start = start_date or DEFAULT_START
    end = end_date or DEFAULT_END
    if end < start:
        raise ConfigurationError(f"end_date {end} is before start_date {start}")
    sizes = schema.sizes(row_count, tables)
    if "dim_date" not in (tables or {}):
        sizes["dim_date"] = (end - start).days + 1
    calendar = Calendar(start, sizes["dim_date"])
    chosen = (schema.table(table_name),) if table_name else schema.tables
    return GenerationPlan(
        schema=schema,
        seed=int(seed) if seed is not None else random_seed(),
        row_count=row_count,
        sizes=sizes,
        calendar=calendar,
        tables=chosen,
    )


# ----------------------------------------------------------------------------- Arrow


def arrow_type(column_type: ColumnType) -> pa.DataType:
    kind = column_type.kind
    if kind == "int32":
        return pa.int32()
    if kind == "int64":
        return pa.int64()
    if kind == "decimal":
        return pa.decimal128(column_type.precision or 18, column_type.scale or 0)
    if kind == "string":
        return pa.string()
    if kind == "date":
        return pa.date32()
    return pa.timestamp("us")


def arrow_schema(table: TableSpec) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, arrow_type(c.type), nullable=c.nullable) for c in table.columns]
    )


def decimal_from_units(units: np.ndarray, precision: int, scale: int) -> pa.Array:
    """A decimal128 array from int64 unscaled values (cents for scale 2), without Python objects."""
    units = np.ascontiguousarray(units, dtype=np.int64)
    words = np.empty((len(units), 2), dtype=np.int64)
    words[:, 0] = units
    words[:, 1] = units >> 63  # sign extension into the high word
    return pa.Array.from_buffers(
        pa.decimal128(precision, scale), len(units), [None, pa.py_buffer(words)]
    )


def to_arrow(column: Column, value: Any, count: int) -> pa.Array:
    """Turn a builder's value (numpy array, Arrow array, scalar, WithNulls) into the column's Arrow type."""
    mask = None
    if isinstance(value, WithNulls):
        value, mask = value.values, value.mask
    target = arrow_type(column.type)
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if not isinstance(value, (pa.Array, np.ndarray)):
        value = (
            np.full(count, value)
            if not isinstance(value, str)
            else pa.array([value] * count, pa.string())
        )
    if column.type.kind == "decimal" and isinstance(value, np.ndarray):
        array = decimal_from_units(value, column.type.precision or 18, column.type.scale or 0)
    elif isinstance(value, np.ndarray):
        if column.type.kind == "timestamp":
            value = value.astype("datetime64[us]")
        elif column.type.kind == "date":
            value = value.astype("datetime64[D]")
        array = pa.array(value, type=target)
    else:
        array = value if value.type == target else value.cast(target)
    if mask is not None and mask.any():
        array = pc.if_else(pa.array(mask), pa.nulls(len(array), target), array)
    if len(array) != count:
        raise ValueError(
            f"builder returned {len(array)} values for column {column.name}, expected {count}"
        )
    return array


def build_chunk(table: TableSpec, ctx: ChunkContext) -> pa.Table:
    values = table.build(ctx)
    missing = [c.name for c in table.columns if c.name not in values]
    if missing:
        raise ValueError(f"builder of {table.name} did not produce {missing}")
    arrays = [to_arrow(c, values[c.name], ctx.count) for c in table.columns]
    return pa.Table.from_arrays(arrays, schema=arrow_schema(table))


def rows_at(
    plan: GenerationPlan, table: TableSpec, start: int, count: int, rng: np.random.Generator
) -> pa.Table:
    """Rows at positions [start, start+count) built with `rng` (used for drift's extra rows)."""
    ctx = ChunkContext(
        plan.seed,
        table.name,
        start,
        count,
        rng,
        plan.sizes,
        plan.calendar,
        plan.schema.date_profile,
    )
    return build_chunk(table, ctx)


def iter_chunks(plan: GenerationPlan, table: TableSpec) -> Iterator[pa.Table]:
    """The table's rows as logical chunks of `CHUNK_ROWS`, in key order."""
    total = plan.sizes[table.name]
    for index, start in enumerate(range(0, total, CHUNK_ROWS)):
        count = min(CHUNK_ROWS, total - start)
        ctx = ChunkContext(
            plan.seed,
            table.name,
            start,
            count,
            chunk_rng(plan.seed, table.name, index),
            plan.sizes,
            plan.calendar,
            plan.schema.date_profile,
        )
        yield build_chunk(table, ctx)


def rebatch(chunks: Iterator[pa.Table], rows: int | None) -> Iterator[pa.Table]:
    """Regroup chunks into batches of `rows` (the loaders' batch size); content is unchanged."""
    if not rows:
        yield from chunks
        return
    pending: list[pa.Table] = []
    buffered = 0
    for chunk in chunks:
        pending.append(chunk)
        buffered += chunk.num_rows
        while buffered >= rows:
            merged = pa.concat_tables(pending)
            yield merged.slice(0, rows)
            rest = merged.slice(rows)
            pending, buffered = ([rest] if rest.num_rows else []), rest.num_rows
    if buffered:
        yield pa.concat_tables(pending)


# ----------------------------------------------------------------------------- content digest


class ContentDigest:
    """SHA-256 of a table's logical content, the same however the rows are cut into batches.

    Each column feeds three streams (null flags, value lengths of strings, value bytes) that are
    plain concatenations over batches; padding and the bytes under NULLs never count."""

    def __init__(self) -> None:
        self._streams: dict[tuple[str, str], Any] = {}

    def _stream(self, column: str, part: str) -> Any:
        key = (column, part)
        if key not in self._streams:
            self._streams[key] = hashlib.sha256()
        return self._streams[key]

    def update(self, chunk: pa.Table) -> None:
        for name, column in zip(chunk.column_names, chunk.columns, strict=True):
            array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            n = len(array)
            if array.null_count:
                self._stream(name, "nulls").update(
                    array.is_null().to_numpy(zero_copy_only=False).tobytes()
                )
                array = pc.fill_null(array, _zero(array.type))
            else:
                self._stream(name, "nulls").update(bytes(n))
            if pa.types.is_string(array.type):
                offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[
                    array.offset : array.offset + n + 1
                ]
                self._stream(name, "lengths").update(np.diff(offsets).astype(np.int32).tobytes())
                data = array.buffers()[2]
                if data is not None and n:
                    self._stream(name, "data").update(memoryview(data)[offsets[0] : offsets[-1]])
            else:
                width = array.type.byte_width
                self._stream(name, "data").update(
                    memoryview(array.buffers()[1])[
                        array.offset * width : (array.offset + n) * width
                    ]
                )

    def hexdigest(self) -> str:
        total = hashlib.sha256()
        for key in sorted(self._streams):
            total.update("/".join(key).encode() + self._streams[key].digest())
        return total.hexdigest()


def _zero(data_type: pa.DataType) -> pa.Scalar:
    if pa.types.is_string(data_type):
        return pa.scalar("", data_type)
    if pa.types.is_decimal(data_type):
        return pa.scalar(Decimal(0), data_type)
    return pa.scalar(0, data_type)


def content_digest(chunks: Iterator[pa.Table]) -> str:
    digest = ContentDigest()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()
