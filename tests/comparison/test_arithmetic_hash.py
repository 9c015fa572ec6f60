"""The arithmetic row hash (the cross-engine canonical path) is the same on SQLite, DuckDB,
PostgreSQL, Snowflake (fakesnow) and MariaDB and equals a reference written here from the spec
(docs/comparison.md, "The arithmetic row hash"), not from the plugin's code; its T-SQL compiles;
and planted differences it must see (a value changed by one prime, by 10^-scale, NULL against
0 or '', two columns' values swapped, one microsecond) are found exactly across engines."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlglot
from comparison_tables import create_table, duckdb_engine, fakesnow_engine, sqlite_engine
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from test_canonical_hash import COLUMNS, ROWS, _mssql_side

from prefect_ombudsman.dialects import dialect_for
from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.validation.comparison import (
    MOD64,
    ComparisonOptions,
    SideQueries,
    compare_tables,
    compile_sql,
    fold,
    plan_columns,
    reflect_side,
    table_fingerprint,
)
from prefect_ombudsman.validation.comparison.plan import choose_recipe
from support import MariaDbServer

# ---- the reference, from the spec only

P = (2**31 - 1, 2**31 - 19)
EPOCH_DAY = date(1970, 1, 1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def spec_constants(lane: int, column: int) -> tuple[int, int]:
    """SHA-256 of `prefect-ombudsman row hash <lane> <column>`: bytes 0-7 give the coefficient
    (mod p-1, plus 1), bytes 8-15 the NULL constant (mod p)."""
    seed = hashlib.sha256(f"prefect-ombudsman row hash {lane} {column}".encode()).digest()
    return int.from_bytes(seed[:8], "big") % (P[lane] - 1) + 1, int.from_bytes(
        seed[8:16], "big"
    ) % P[lane]


def md5_low60(value: str) -> int:
    return int(hashlib.md5(value.encode("utf-8")).hexdigest()[-15:], 16)


def text_part(values: list[str | None]) -> str:
    """The text-like values' canonical text: `<length>:<text>` each, NULL `~`."""
    return "".join("~" if v is None else f"{len(v)}:{v}" for v in values)


def scaled(value: Any, scale: int) -> int:
    exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return int(exact.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP).scaleb(scale))


def golden_integers(row: tuple) -> tuple[dict[int, int | None], str]:
    """x of each non-text golden column (test_canonical_hash.COLUMNS) by position, one rule per
    type, and the text part (name, code)."""
    id_, name, code, amount, ratio, flag, on_day, at_ts, at_tz = row
    micros = timedelta(microseconds=1)
    numbers = {
        0: id_,
        3: None if amount is None else scaled(amount, 3),
        4: None if ratio is None else scaled(ratio, 6),
        5: None if flag is None else int(flag),
        6: None if on_day is None else (on_day - EPOCH_DAY).days,
        7: None if at_ts is None else (at_ts.replace(tzinfo=UTC) - EPOCH) // micros,
        8: None if at_tz is None else (at_tz - EPOCH) // micros,
    }
    return numbers, text_part([name, None if code is None else code.rstrip(" ")])


def spec_hash(numbers: dict[int, int | None], count: int, text: str | None) -> int:
    lanes = []
    for lane, p in enumerate(P):
        total = 0
        for i, x in numbers.items():
            a, n = spec_constants(lane, i)
            total += n if x is None else (x * a) % p
        if text is not None:
            total += md5_low60(text) * spec_constants(lane, count)[0] % p
        lanes.append(total % p)
    return lanes[0] * 2**31 + lanes[1]


def golden_hash(row: tuple) -> int:
    numbers, text = golden_integers(row)
    return spec_hash(numbers, len(COLUMNS), text)


def reference_fingerprint() -> tuple[int, int]:
    return len(ROWS), sum(golden_hash(r) for r in ROWS) % MOD64


def test_reference_is_what_the_spec_says_on_a_hand_computed_row():
    (a0, n0), (a1, n1) = spec_constants(0, 0), spec_constants(1, 0)
    t0, t1 = spec_constants(0, 2)[0], spec_constants(1, 2)[0]
    m = md5_low60("2:ab")
    want = ((5 * a0 + m * t0) % P[0]) * 2**31 + (5 * a1 + m * t1) % P[1]
    assert spec_hash({0: 5}, 2, "2:ab") == want
    assert spec_hash({0: None}, 2, None) == n0 * 2**31 + n1
    assert 0 <= golden_hash(ROWS[0]) < 2**62
    numbers = [golden_integers(r)[0] for r in ROWS]
    assert numbers[1][4] == 0 and numbers[4][3] == -1  # -0.0 and -0.001 at their scales
    assert golden_integers(ROWS[2])[1] == "~~"


# ---- every engine against the reference


@pytest.fixture(scope="module")
def mariadb_url() -> Iterator[str]:
    try:
        server = MariaDbServer(prefix="ombudsman-maria-arith-")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


MARIA_GOLDEN = (
    "CREATE TABLE golden (id INT PRIMARY KEY, "
    "name VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, code CHAR(5), "
    "amount DECIMAL(12,3), ratio DOUBLE, flag BOOLEAN, on_day DATE, at_ts DATETIME(6), "
    "at_tz DATETIME(6))"
)


def _maria_golden(url: str) -> Engine:
    engine = get_engine(spec_from_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS golden"))
        conn.execute(text(MARIA_GOLDEN))
        rows = [
            (*r[:8], None if r[8] is None else r[8].astimezone(UTC).replace(tzinfo=None))
            for r in ROWS
        ]  # no time zone type: the UTC time
        conn.execute(
            text("INSERT INTO golden VALUES (:a, :b, :c, :d, :e, :f, :g, :h, :i)"),
            [dict(zip("abcdefghi", r, strict=True)) for r in rows],
        )
    return engine


@pytest.fixture(scope="module")
def engines(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, fakesnow_server, mariadb_url
) -> dict[str, Engine]:
    folder: Path = tmp_path_factory.mktemp("arith")
    out = {
        "sqlite": sqlite_engine(folder / "a.db"),
        "duckdb": duckdb_engine(folder / "a.duckdb"),
        "postgresql": get_engine(spec_from_url(postgres_url)),
        "snowflake": fakesnow_engine(fakesnow_server, "ARITH"),
    }
    for engine in out.values():
        create_table(engine, "golden", COLUMNS, ROWS, primary_key=["id"])
    out["mariadb"] = _maria_golden(mariadb_url)
    return out


KINDS = ["sqlite", "duckdb", "postgresql", "snowflake", "mariadb"]


@pytest.mark.parametrize("kind", KINDS)
def test_same_rows_give_the_reference_fingerprint(engines, kind):
    assert table_fingerprint(engines[kind], "golden", hash_mode="arithmetic") == (
        reference_fingerprint()
    )


@pytest.mark.parametrize("kind", KINDS)
def test_each_row_hash_and_key_bucket_match_the_reference(engines, kind):
    engine = engines[kind]
    side = reflect_side("table", engine, "golden")
    plan = plan_columns(side, side, ComparisonOptions(key_columns=["id"]))
    queries = SideQueries(
        side, plan.source_fields, plan.keys, "canonical", 64, "canonical key hash", ["id", "name"]
    )
    assert queries.recipe == "arithmetic"
    with engine.connect() as conn:
        side.dialect.prepare_comparison(conn)
        parts = side.dialect.hash_parts_arithmetic(queries.hash_columns())
        rows = conn.execute(select(queries.table.c.id, queries.key_bucket(), *parts)).all()
        side.dialect.finish_comparison(conn)
    got = {int(r[0]): (int(r[1]), fold(r[2:])) for r in rows}
    want = {}
    for row in ROWS:
        key_hash = spec_hash({0: row[0]}, 2, text_part([row[1]]))
        want[row[0]] = (key_hash & 63, golden_hash(row))
    assert got == want


@pytest.mark.parametrize("bucket_by", ["row hash", "key", "canonical key hash"])
@pytest.mark.parametrize("kind", ["duckdb", "postgresql", "mariadb"])
def test_each_row_computes_its_text_md5_once(engines, kind, bucket_by):
    """Both lanes read the text values' MD5 number: the SQL computes it once per row (neither
    PostgreSQL nor MariaDB shares a repeated call), and the buckets still sum to the reference.
    A canonical key bucket of a text key adds the key's MD5, once (lane 1 alone)."""
    engine = engines[kind]
    side = reflect_side("table", engine, "golden")
    plan = plan_columns(side, side, ComparisonOptions(key_columns=["id"]))
    by_text = bucket_by == "canonical key hash"
    queries = SideQueries(
        side, plan.source_fields, plan.keys, "canonical", 64, bucket_by,
        ["id", "name"] if by_text else None,
    )  # fmt: skip
    level1 = compile_sql(queries.level1(), engine)
    level2 = compile_sql(queries.level2().params(buckets=[1, 2]), engine)
    md5s = 2 if by_text else 1
    assert level1.lower().count("md5(") == md5s and level2.lower().count("md5(") == md5s
    with engine.connect() as conn:
        side.dialect.prepare_comparison(conn)
        sums = conn.execute(queries.level1()).all()
        if kind == "postgresql" and bucket_by == "row hash":
            explained = conn.exec_driver_sql("EXPLAIN VERBOSE " + level1)
            outputs = [line for (line,) in explained if "Output:" in line]
        side.dialect.finish_comparison(conn)
    assert sum(row[1] for row in sums) == len(ROWS)
    assert sum(fold(row[2:]) for row in sums) % MOD64 == reference_fingerprint()[1]
    if kind == "postgresql" and bucket_by == "row hash":
        assert max(line.count("md5(") for line in outputs) == 1


@pytest.mark.parametrize(
    ("source", "target", "recipe"),
    [
        ("mariadb", "mariadb", "md5"),
        ("mariadb", "duckdb", "md5"),
        ("postgresql", "mariadb", "md5"),
        ("postgresql", "postgresql", "md5"),
        ("postgresql", "duckdb", "md5"),
        ("duckdb", "duckdb", "arithmetic"),
        ("sqlite", "duckdb", "arithmetic"),
        ("duckdb", "snowflake", "arithmetic"),
        ("sqlserver", "snowflake", "arithmetic"),
    ],
)
def test_a_side_that_prefers_md5_makes_the_pair_hash_by_md5(source, target, recipe):
    """MariaDB and PostgreSQL declare the arithmetic recipe slower than MD5 there; other pairs
    keep it; a recipe asked for by name is taken when both sides give it."""
    sides = [SimpleNamespace(dialect=dialect_for(kind)) for kind in (source, target)]
    assert choose_recipe(*sides, "auto") == recipe  # type: ignore[arg-type]
    assert choose_recipe(*sides, "canonical") == recipe  # type: ignore[arg-type]
    assert choose_recipe(*sides, "md5") == "md5"  # type: ignore[arg-type]
    assert choose_recipe(*sides, "arithmetic") == "arithmetic"  # type: ignore[arg-type]


def test_arithmetic_asked_of_a_database_without_it_names_the_database():
    sides = [SimpleNamespace(dialect=dialect_for(kind)) for kind in ("duckdb", "generic")]
    assert not sides[1].dialect.arithmetic_hash
    assert choose_recipe(*sides, "auto") == "md5"  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="'arithmetic' is not available on generic"):
        choose_recipe(*sides, "arithmetic")  # type: ignore[arg-type]


def test_tsql_arithmetic_recipe_compiles_to_valid_tsql():
    side = _mssql_side()
    plan = plan_columns(side, side, ComparisonOptions())
    for bucket_by in ("key", "canonical key hash"):
        queries = SideQueries(side, plan.source_fields, plan.keys, "canonical", 4096, bucket_by)
        assert queries.recipe == "arithmetic"
        level1 = compile_sql(queries.level1(), side.engine.dialect)
        level2 = compile_sql(queries.level2().params(buckets=[1, 2]), side.engine.dialect)
        for sql in (level1, level2):
            sqlglot.parse_one(sql, read="tsql")  # raises on invalid T-SQL
        upper = level1.upper()
        assert "% 2147483629" in level1 and "% 2147483647" in level1
        # lane 0 shifted above lane 1 and the text hash masked, both in BIGINT (T-SQL reads such
        # literals as NUMERIC, which `&` refuses)
        assert "* CAST(2147483648 AS BIGINT)" in level1
        assert "HASHBYTES('MD5'" in upper and "& CAST(1152921504606846975 AS BIGINT)" in level1
        assert "DATETIME2(3)" in level1 and "SWITCHOFFSET" in upper
        assert "DATEDIFF_BIG(MICROSECOND" in upper
        assert "SUM(CAST(" in upper and "NUMERIC(38, 0)" in upper
        # no whole-row text: only text-like columns are hashed, each on its own
        assert "CONCAT" not in upper and "+ ';'" not in level1


# ---- planted differences the hash must see, across engines

DRIFT_COLUMNS = [
    ("id", "int"),
    ("big", "bigint"),
    ("a", "int"),
    ("b", "int"),
    ("amount", "dec"),
    ("name", "text"),
    ("ts", "ts"),
    ("flag", "bool"),
    ("ratio", "float"),
]


def drift_rows() -> list[list[Any]]:
    return [
        [
            i,
            i * 1_000_003 - 500_000_000,
            i % 5,
            (i * 7) % 5,
            Decimal(i) / 8,
            f"n{i}",
            datetime(2020, 1, 1) + timedelta(seconds=i),
            i % 2 == 0,
            i / 4,
        ]
        for i in range(60)
    ]


#: row id -> (column index, new value): each a change a weak hash could miss
CHANGES: dict[int, tuple[str, list[tuple[int, Any]]]] = {
    3: ("big", [(1, 3 * 1_000_003 - 500_000_000 + P[0])]),  # by exactly p0
    4: ("big", [(1, 4 * 1_000_003 - 500_000_000 + P[1])]),  # by exactly p1
    5: ("amount", [(4, Decimal(5) / 8 + Decimal("0.001"))]),  # by 10^-scale
    6: ("name", [(5, None)]),  # text -> NULL
    7: ("name", [(5, "")]),  # text -> ''
    9: ("a", [(2, None)]),  # 4 -> NULL
    11: ("ts", [(6, datetime(2020, 1, 1) + timedelta(seconds=11, microseconds=1))]),  # 1 µs
    13: ("flag", [(7, True)]),
    14: ("ratio", [(8, 14 / 4 + 0.000001)]),  # by 10^-float_scale
}
SWAPPED = 12  # a and b swapped: (2, 4) -> (4, 2)


def _drifted(rows: list[list[Any]]) -> list[list[Any]]:
    out = [list(r) for r in rows]
    for row_id, (_, edits) in CHANGES.items():
        for index, value in edits:
            out[row_id][index] = value
    out[SWAPPED][2], out[SWAPPED][3] = out[SWAPPED][3], out[SWAPPED][2]
    out[10][2] = None  # 0 -> NULL on row 10 (a = 10 % 5 = 0)
    return out


def _engine(kind: str, tmp_path: Path, request: pytest.FixtureRequest, i: int) -> Engine:
    if kind == "sqlite":
        return sqlite_engine(tmp_path / f"{i}.db")
    if kind == "duckdb":
        return duckdb_engine(tmp_path / f"{i}.duckdb")
    if kind == "postgresql":
        return get_engine(spec_from_url(request.getfixturevalue("postgres_url")))
    if kind == "snowflake":
        return fakesnow_engine(request.getfixturevalue("fakesnow_server"), "ADRIFT")
    return get_engine(spec_from_url(request.getfixturevalue("mariadb_url")))


def _create(engine: Engine, name: str, rows: list[list[Any]]) -> None:
    if engine.dialect.name != "mysql":
        create_table(engine, name, DRIFT_COLUMNS, rows, primary_key=["id"])
        return
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        conn.execute(
            text(
                f"CREATE TABLE {name} (id INT PRIMARY KEY, big BIGINT, a INT, b INT, "
                "amount DECIMAL(12,3), name VARCHAR(50) COLLATE utf8mb4_bin, ts DATETIME(6), "
                "flag BOOLEAN, ratio DOUBLE)"
            )
        )
        conn.execute(
            text(f"INSERT INTO {name} VALUES (:a, :b, :c, :d, :e, :f, :g, :h, :i)"),
            [dict(zip("abcdefghi", r, strict=True)) for r in rows],
        )


@pytest.mark.parametrize(
    ("pair", "hash_mode", "recipe"),
    [
        ("sqlite-duckdb", "auto", "arithmetic"),
        ("postgresql-duckdb", "arithmetic", "arithmetic"),
        ("postgresql-snowflake", "arithmetic", "arithmetic"),
        ("mariadb-duckdb", "arithmetic", "arithmetic"),
        ("mariadb-duckdb", "auto", "md5"),  # MariaDB prefers MD5 (arithmetic_hash_preferred)
        ("postgresql-mariadb", "auto", "md5"),
        ("postgresql-duckdb", "auto", "md5"),  # so does PostgreSQL
        ("sqlite-duckdb", "md5", "md5"),
    ],
)
def test_planted_drift_is_found_exactly_by_the_canonical_hash(
    tmp_path: Path, request: pytest.FixtureRequest, pair: str, hash_mode: str, recipe: str
):
    kinds = pair.split("-")
    src, tgt = (_engine(k, tmp_path, request, i) for i, k in enumerate(kinds))
    name = f"drift_{pair.replace('-', '_')}"
    rows = drift_rows()
    _create(src, name, rows)
    _create(tgt, name, _drifted(rows))
    options = ComparisonOptions(
        key_columns=["id"],
        sample_size=50,
        buckets=4,
        hash_mode=hash_mode,  # type: ignore[arg-type]
    )
    outcome = compare_tables(src, tgt, name, options=options)
    result = outcome.result
    assert (outcome.stats.hash_mode, outcome.stats.row_hash) == ("canonical", recipe)
    want = {row_id: [column] for row_id, (column, _) in CHANGES.items()}
    want[SWAPPED] = ["a", "b"]
    want[10] = ["a"]
    assert (result.missing_in_target, result.extra_in_target) == (0, 0)
    assert result.changed == len(want)
    assert {s.key: s.columns for s in result.samples.changed} == want
    # equal tables on the two engines compare equal (no false difference from types)
    _create(tgt, name, rows)
    same = compare_tables(src, tgt, name, options=options)
    assert same.result.status == "PASS" and same.stats.row_hash == recipe
