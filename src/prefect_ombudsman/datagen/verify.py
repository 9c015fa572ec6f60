"""Read a generated table back and fingerprint it, to prove two targets (or two runs) hold the same rows.

The fingerprint is a SHA-256 over the rows in key order, each value in a canonical text form
(decimals at the column's scale, ISO dates and timestamps, NULL distinct from empty), so a
SQLite REAL, a DuckDB DECIMAL and a Snowflake NUMBER of the same value hash the same. It reads
every row: meant for tests, checks and small tables, not for validating 100M-row facts (the
validation engine does that in SQL).
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from prefect_ombudsman.datagen.catalog import Column, TableSpec, sa_table
from prefect_ombudsman.datagen.schemas import get_schema
from prefect_ombudsman.dialects.base import dialect_for


def canonical(column: Column, value: Any) -> str:
    if value is None:
        return "\\N"
    kind = column.type.kind
    if kind in ("int32", "int64"):
        return str(int(value))
    if kind == "decimal":
        number = (
            value
            if isinstance(value, Decimal)
            else Decimal(repr(value) if isinstance(value, float) else str(value))
        )
        return str(
            number.quantize(Decimal(1).scaleb(-(column.type.scale or 0)), rounding=ROUND_HALF_UP)
        )
    if kind == "date":
        if isinstance(value, datetime):
            value = value.date()
        return value.isoformat() if isinstance(value, date) else str(value)[:10]
    if kind == "timestamp":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return str(value)


def stored_digest(
    engine: Engine, schema_type: str, table: str | TableSpec, *, name: str | None = None
) -> dict[str, Any]:
    """`{rows, sha256}` of one generated table as stored in `engine`'s database (`name`: a copy's name)."""
    spec = table if isinstance(table, TableSpec) else get_schema(schema_type).table(table)
    sa_tbl = sa_table(spec, dialect_for(engine), name=name)
    digest = hashlib.sha256()
    rows = 0
    query = sa.select(*sa_tbl.columns).order_by(sa_tbl.c[spec.key.name])
    with engine.connect() as connection:
        result = connection.execution_options(yield_per=20_000).execute(query)
        for row in result:
            digest.update(
                "\x1f".join(
                    canonical(c, v) for c, v in zip(spec.columns, row, strict=True)
                ).encode()
            )
            digest.update(b"\x1e")
            rows += 1
    return {"rows": rows, "sha256": digest.hexdigest()}


def read_rows(engine: Engine, schema_type: str, table: str) -> dict[Any, dict[str, str]]:
    """Every row by key, values canonical (small tables: tests and drift checks)."""
    spec = get_schema(schema_type).table(table)
    sa_tbl = sa_table(spec, dialect_for(engine))
    out: dict[Any, dict[str, str]] = {}
    with engine.connect() as connection:
        for row in connection.execute(sa.select(*sa_tbl.columns)):
            values = {c.name: canonical(c, v) for c, v in zip(spec.columns, row, strict=True)}
            out[int(values[spec.key.name])] = values
    return out
