"""The canonical row hash is the same on SQLite, DuckDB, PostgreSQL and Snowflake (fakesnow),
and equals a reference written here from the spec (docs/comparison.md, "The canonical row hash"),
independent of the plugin's own Python implementation (the function SQLite runs); the T-SQL recipe
compiles to valid T-SQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlglot
from comparison_tables import create_table, duckdb_engine, fakesnow_engine, sqlite_engine
from sqlalchemy import select
from sqlalchemy.dialects import mssql

from prefect_ombudsman.dialects.base import dialect_for
from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.dialects.sqlite import canonical_row_hash, canonical_row_text
from prefect_ombudsman.validation.comparison import (
    MOD64,
    CanonicalField,
    ComparisonOptions,
    SideQueries,
    TableSide,
    compile_sql,
    plan_columns,
    table_fingerprint,
)

COLUMNS = [
    ("id", "int"),
    ("name", "text"),
    ("code", "char5"),
    ("amount", "dec"),
    ("ratio", "float"),
    ("flag", "bool"),
    ("on_day", "date"),
    ("at_ts", "ts"),
    ("at_tz", "tstz"),
]
SPEC = ",".join(
    [
        "int|int|0|0",
        "text|text|0|1",
        "char|char|0|1",
        "decimal|decimal|3|0",
        "float|float|6|0",
        "bool|bool|0|0",
        "date|date|0|0",
        "timestamp|timestamp|0|0",
        "timestamp|timestamp|0|0",
    ]
)
PLUS2 = timezone(timedelta(hours=2))
MINUS530 = timezone(-timedelta(hours=5, minutes=30))
ROWS = [
    (
        1,
        "plain",
        "ab",
        Decimal("1.500"),
        0.25,
        True,
        date(2024, 1, 2),
        datetime(2024, 1, 2, 3, 4, 5, 123456),
        datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=PLUS2),
    ),
    (
        2,
        "",
        "",
        Decimal("0.000"),
        -0.0,
        False,
        date(1969, 12, 31),
        datetime(1969, 12, 31, 23, 59, 59, 999999),
        datetime(2000, 1, 1, tzinfo=UTC),
    ),
    (3, None, None, None, None, None, None, None, None),
    (
        4,
        "ünïcødé 🦆 汉字 e\u0301",
        "x",
        Decimal("-123456789.125"),
        1e10,
        True,
        date(2000, 2, 29),
        datetime(2000, 2, 29, 12),
        datetime(2021, 6, 30, 23, 0, 0, 1, tzinfo=MINUS530),
    ),
    (
        5,
        "a:b~c;d|1:",
        "a b",
        Decimal("-0.001"),
        3.141592,
        False,
        date(1900, 1, 1),
        datetime(1900, 1, 1, 0, 0, 0, 5),
        datetime(1999, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
    ),
    (
        6,
        "trailing  ",
        "ZZZZZ",
        Decimal("99999.999"),
        -2.5e-5,
        True,
        date(2099, 12, 31),
        datetime(2099, 12, 31, 23, 59, 59),
        datetime(1970, 1, 1, 0, 0, 0, tzinfo=PLUS2),
    ),
    (7, "~", "0:", Decimal("5"), 1.0, None, date(1970, 1, 1), datetime(1970, 1, 1), None),
]


# ---- the reference, from the spec's table only (per column of the golden table, in order)
EPOCH_DAY = date(1970, 1, 1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def _number(text: str) -> str:
    """Fixed-scale text with `-0` written `0` (a zero has no sign)."""
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def _spec_fields(row: tuple) -> list[str | None]:
    """Each value's canonical text: the table of docs/comparison.md, one rule per column type."""
    (id_, name, code, amount, ratio, flag, on_day, at_ts, at_tz) = row
    return [
        None if id_ is None else str(id_),  # integer: decimal digits
        name,  # text: as is
        None if code is None else code.rstrip(" "),  # CHAR: trailing spaces trimmed
        None
        if amount is None
        else _number(f"{amount.quantize(Decimal('0.001')):f}"),  # DECIMAL(_, 3)
        None if ratio is None else _number(f"{ratio:.6f}"),  # FLOAT as DECIMAL(38, 6)
        None if flag is None else ("1" if flag else "0"),  # boolean 0/1
        None if on_day is None else str((on_day - EPOCH_DAY).days),  # days since 1970-01-01
        None if at_ts is None else str((at_ts.replace(tzinfo=UTC) - EPOCH) // MICROSECOND),
        None if at_tz is None else str((at_tz - EPOCH) // MICROSECOND),  # the UTC instant
    ]


TEXT_LIKE = [False, True, True, False, False, False, False, False, False]


def spec_row_text(row: tuple) -> str:
    """NULL `~`; text-like `<length in characters>:<text>`; numbers and times `<text>;`."""
    return "".join(
        "~" if text is None else (f"{len(text)}:{text}" if text_like else f"{text};")
        for text, text_like in zip(_spec_fields(row), TEXT_LIKE, strict=True)
    )


def spec_row_hash(row: tuple) -> int:
    """MD5 of the UTF-8 text; the last 8 bytes of the digest, big-endian, signed 64-bit."""
    digest = hashlib.md5(spec_row_text(row).encode("utf-8")).digest()
    return int.from_bytes(digest[8:], "big", signed=True)


def reference_fingerprint() -> tuple[int, int]:
    """Row count and the sum of the row hashes mod 2^64."""
    return len(ROWS), sum(spec_row_hash(row) for row in ROWS) % 2**64


def test_spec_reference_writes_the_texts_the_spec_describes():
    by_id = {row[0]: row for row in ROWS}
    assert spec_row_text(by_id[3]) == "3;" + "~" * 8
    assert spec_row_text(by_id[7]) == "7;1:~2:0:5.000;1.000000;~0;0;~"
    assert spec_row_text(by_id[2]) == "2;0:0:0.000;0.000000;0;-1;-1;946684800000000;"
    assert spec_row_text(by_id[1]).startswith("1;5:plain2:ab1.500;0.250000;1;19724;")


def test_plugin_canonical_text_follows_the_spec_reference():
    """The plugin's Python canonical form (what SQLite runs) against the reference, row by row."""
    for row in ROWS:
        assert canonical_row_text(SPEC, row) == spec_row_text(row), row[0]
        assert canonical_row_hash(SPEC, row) == spec_row_hash(row), row[0]


def test_plugin_canonical_text_keeps_null_empty_and_field_boundaries_apart():
    a = canonical_row_text("text|text|0|1,text|text|0|1", ("ab", "c"))
    b = canonical_row_text("text|text|0|1,text|text|0|1", ("a", "bc"))
    assert a != b
    assert canonical_row_text("text|text|0|1", ("",)) != canonical_row_text(
        "text|text|0|1", (None,)
    )
    assert canonical_row_text("text|text|0|1", ("~",)) != canonical_row_text(
        "text|text|0|1", (None,)
    )
    assert canonical_row_text("decimal|decimal|2|0", (Decimal("-0.001"),)) == "0.00;"
    assert canonical_row_text(
        "timestamp|timestamp|0|0", ("2024-01-01 10:00:00+02:00",)
    ) == canonical_row_text("timestamp|timestamp|0|0", (datetime(2024, 1, 1, 8, tzinfo=UTC),))


@pytest.fixture(scope="module")
def engines(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, fakesnow_server
) -> dict[str, object]:
    folder: Path = tmp_path_factory.mktemp("canonical")
    out = {
        "sqlite": sqlite_engine(folder / "c.db"),
        "duckdb": duckdb_engine(folder / "c.duckdb"),
        "postgresql": get_engine(spec_from_url(postgres_url)),
        "snowflake": fakesnow_engine(fakesnow_server, "CANON"),
    }
    for engine in out.values():
        create_table(engine, "golden", COLUMNS, ROWS, primary_key=["id"])
    return out


@pytest.mark.parametrize("kind", ["sqlite", "duckdb", "postgresql", "snowflake"])
def test_same_rows_give_the_reference_fingerprint(engines, kind):
    assert table_fingerprint(engines[kind], "golden") == reference_fingerprint()


@pytest.mark.parametrize("kind", ["duckdb", "postgresql", "snowflake"])
def test_each_row_hash_matches_the_spec_reference(engines, kind):
    engine = engines[kind]
    from prefect_ombudsman.validation.comparison import reflect_side

    side = reflect_side("table", engine, "golden")
    source = TableSide("source", engine, side.dialect, None, "golden", side.columns, ["id"])
    plan = plan_columns(source, source, ComparisonOptions())
    queries = SideQueries(source, plan.source_fields, plan.keys, "canonical", 1, recipe="md5")
    with engine.connect() as conn:
        side.dialect.prepare_comparison(conn)
        hashes = queries.hash_columns()
        parts = side.dialect.hash_parts(hashes)
        rows = conn.execute(select(queries.table.c.id, *parts)).all()
    from prefect_ombudsman.validation.comparison import fold

    got = {int(r[0]): fold(r[1:]) for r in rows}
    want = {row[0]: spec_row_hash(row) % MOD64 for row in ROWS}
    assert got == want


def _mssql_side() -> TableSide:
    dialect = mssql.dialect()
    dialect.server_version_info = (16, 0, 1000)
    dialect._setup_version_attributes()
    fake_engine = type("E", (), {"dialect": dialect, "url": "mssql+pyodbc://"})()
    columns = {
        "id": {"name": "id", "type": mssql.INTEGER(), "nullable": False},
        "name": {"name": "name", "type": mssql.NVARCHAR(100), "nullable": True},
        "code": {"name": "code", "type": mssql.NCHAR(5), "nullable": True},
        "amount": {"name": "amount", "type": mssql.DECIMAL(12, 3), "nullable": True},
        "ratio": {"name": "ratio", "type": mssql.FLOAT(), "nullable": True},
        "flag": {"name": "flag", "type": mssql.BIT(), "nullable": True},
        "day": {"name": "day", "type": mssql.DATE(), "nullable": True},
        "at": {"name": "at", "type": mssql.DATETIME(), "nullable": True},
        "at2": {"name": "at2", "type": mssql.DATETIME2(7), "nullable": True},
        "at_tz": {"name": "at_tz", "type": mssql.DATETIMEOFFSET(), "nullable": True},
        "guid": {"name": "guid", "type": mssql.UNIQUEIDENTIFIER(), "nullable": True},
        "blob": {"name": "blob", "type": mssql.VARBINARY(16), "nullable": True},
        "t": {"name": "t", "type": mssql.TIME(), "nullable": True},
    }
    return TableSide(
        "source", fake_engine, dialect_for("sqlserver"), "dbo", "fact_sales", columns, ["id"]
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("bucket_by", ["row hash", "key", "canonical key hash"])
def test_tsql_md5_recipe_compiles_to_valid_tsql(bucket_by):
    side = _mssql_side()
    plan = plan_columns(side, side, ComparisonOptions())
    queries = SideQueries(
        side, plan.source_fields, plan.keys, "canonical", 4096, bucket_by, recipe="md5"
    )
    sa_dialect = side.engine.dialect
    level1 = compile_sql(queries.level1(), sa_dialect)
    level2 = compile_sql(queries.level2().params(buckets=[1, 2]), sa_dialect)
    level3 = compile_sql(queries.level3([(1,), (2,)]), sa_dialect)
    for sql in (level1, level2, level3):
        sqlglot.parse_one(sql, read="tsql")  # raises on invalid T-SQL
    assert "HASHBYTES('MD5'" in level1.replace("hashbytes('MD5'", "HASHBYTES('MD5'")
    assert "COLLATE Latin1_General_100_BIN2_UTF8" in level1
    assert "SUM(CAST(" in level1.upper() and "NUMERIC(38, 0)" in level1.upper()
    assert "DATETIME2(3)" in level1  # DATETIME rounded to its millisecond ticks
    assert "SWITCHOFFSET" in level1.upper()
    assert "[fact_sales]" in level1 or "fact_sales" in level1
    if bucket_by == "row hash":
        assert "& 4095" in level1
    elif bucket_by == "canonical key hash":  # MD5 of the key's text; level 2 filters on it first
        assert level1.upper().count("HASHBYTES('MD5'") == 2 and "& 4095" in level1
        inner = level2[level2.index("FROM (") :]
        assert "WHERE" in inner and inner.index("WHERE") < inner.index(") AS _omb_rows")
        assert "HASHBYTES" in inner[inner.index("WHERE") :].upper()
    else:  # key arithmetic in BIGINT; level 2 filters on the key before hashing
        assert "% 2147483647 AS BIGINT" in level1 and "% 4096" in level1
        inner = level2[level2.index("FROM (") :]
        assert "WHERE" in inner and inner.index("WHERE") < inner.index(") AS _omb_rows")


def test_canonical_field_is_plain_dataclass():
    field = CanonicalField("a", "int", "int", 0, False, True, None)
    assert field.bound("x").expr == "x" and field.expr is None
