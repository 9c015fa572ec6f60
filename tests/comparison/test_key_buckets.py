"""Key buckets: the bucket of an integer key is computed alike on every engine, so level 2 hashes
only the rows of the failing buckets; the bucket count follows the table size; DuckDB's
memory_limit is held only while a comparison runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from comparison_tables import create_table, duckdb_engine, fakesnow_engine, sqlite_engine
from sqlalchemy import column, select, table, text

from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.validation.comparison import (
    ComparisonOptions,
    compare_tables,
    key_bucket,
    key_bucket_sql,
)

EDGE_KEYS = [
    -(2**63),
    -(2**62) - 12345,
    -(2**31),
    -2147483647,
    -1,
    0,
    1,
    2147483646,
    2147483647,
    2**31,
    2**40 + 7,
    2**63 - 1,
]
PAIRS = [[a, b] for a, b in zip(EDGE_KEYS, reversed(EDGE_KEYS), strict=True)]


@pytest.fixture(scope="module")
def pg(postgres_url: str):
    return get_engine(spec_from_url(postgres_url))


@pytest.fixture(scope="module")
def snow(fakesnow_server):
    return fakesnow_engine(fakesnow_server, "KEYB")


def _engine(kind: str, tmp_path: Path, pg, snow):
    if kind == "sqlite":
        return sqlite_engine(tmp_path / "k.db")
    if kind == "duckdb":
        return duckdb_engine(tmp_path / "k.duckdb")
    return pg if kind == "postgresql" else snow


@pytest.mark.parametrize("kind", ["sqlite", "duckdb", "postgresql", "snowflake"])
@pytest.mark.parametrize("buckets", [1, 4, 16384])
def test_key_bucket_sql_matches_the_python_reference(tmp_path: Path, pg, snow, kind, buckets):
    engine = _engine(kind, tmp_path, pg, snow)
    name = f"keyb_{buckets}"
    create_table(engine, name, [("k1", "bigint"), ("k2", "bigint")], PAIRS)
    t = table(name, column("k1"), column("k2"))
    k1, k2 = t.c.k1, t.c.k2
    query = select(k1, k2, key_bucket_sql([k1], buckets), key_bucket_sql([k1, k2], buckets))
    with engine.connect() as conn:
        rows = {(int(a), int(b)): (int(x), int(y)) for a, b, x, y in conn.execute(query)}
    assert rows == {
        (a, b): (key_bucket([a], buckets), key_bucket([a, b], buckets)) for a, b in PAIRS
    }


@pytest.mark.parametrize("stride", [1, 2, 10, 1000, 1024, 65536, 86400])
def test_sequential_and_strided_keys_spread_evenly_over_the_buckets(stride: int):
    counts = [0] * 1024
    for i in range(1024 * 20):
        counts[key_bucket([i * stride], 1024)] += 1
    assert min(counts) >= 10 and max(counts) <= 30  # 20 expected per bucket


def _rows(n: int, changed: set[int] = frozenset()) -> list[list[object]]:
    return [[i, f"name {i}" + ("!" if i in changed else ""), i % 7] for i in range(n)]


COLUMNS = [("id", "int"), ("name", "text"), ("qty", "int")]


def test_a_changed_row_fails_one_key_bucket_and_only_its_rows_are_hashed_again(tmp_path: Path):
    src, tgt = sqlite_engine(tmp_path / "s.db"), duckdb_engine(tmp_path / "t.duckdb")
    create_table(src, "big", COLUMNS, _rows(4000), primary_key=["id"])
    create_table(tgt, "big", COLUMNS, _rows(4000, changed={1234}), primary_key=["id"])
    outcome = compare_tables(src, tgt, "big", options=ComparisonOptions(key_columns=["id"]))
    result, stats = outcome.result, outcome.stats
    assert (result.changed, result.missing_in_target, result.extra_in_target) == (1, 0, 0)
    assert result.samples.changed[0].key == 1234
    assert result.samples.changed[0].columns == ["name"]
    assert stats.bucket_by == "key"
    assert stats.buckets == 64  # 4000 rows / 64 per bucket, rounded up to a power of two
    assert stats.failing_buckets == 1  # the row hash would fail two: the old and the new hash
    per_bucket = 4000 // stats.buckets
    level1, level2, level3 = 2 * stats.buckets, 2 * per_bucket, 2
    assert stats.rows_transferred <= level1 + level2 + 10 + level3


def test_small_tables_get_few_buckets(tmp_path: Path):
    src, tgt = sqlite_engine(tmp_path / "s.db"), duckdb_engine(tmp_path / "t.duckdb")
    create_table(src, "tiny", COLUMNS, _rows(3), primary_key=["id"])
    create_table(tgt, "tiny", COLUMNS, _rows(3), primary_key=["id"])
    outcome = compare_tables(src, tgt, "tiny", options=ComparisonOptions(key_columns=["id"]))
    assert outcome.result.status == "PASS"
    assert outcome.stats.buckets == 1 and outcome.stats.rows_transferred == 2


def test_postgresql_estimate_sizes_the_buckets_of_a_never_analyzed_table(pg):
    create_table(pg, "est_src", COLUMNS, _rows(3000), primary_key=["id"])
    create_table(pg, "est_tgt", COLUMNS, _rows(3000, changed={7}), primary_key=["id"])
    outcome = compare_tables(pg, pg, "est_src", "est_tgt")
    assert outcome.result.changed == 1 and outcome.result.samples.changed[0].key == 7
    assert outcome.stats.estimated_rows is not None and outcome.stats.estimated_rows > 0
    assert 1 < outcome.stats.buckets < 16384


def test_duckdb_memory_limit_is_held_during_the_comparison_and_restored(tmp_path: Path):
    src, tgt = duckdb_engine(tmp_path / "s.duckdb"), duckdb_engine(tmp_path / "t.duckdb")
    create_table(src, "m", COLUMNS, _rows(500), primary_key=["id"])
    create_table(tgt, "m", COLUMNS, _rows(500, changed={3}), primary_key=["id"])

    def limit() -> str:
        with tgt.connect() as conn:
            return str(conn.execute(text("SELECT current_setting('memory_limit')")).scalar())

    before = limit()
    seen: list[str] = []
    outcome = compare_tables(
        src,
        tgt,
        "m",
        options=ComparisonOptions(key_columns=["id"], memory_limit_mb=48),
        cancel_check=lambda: seen.append(limit()),
    )
    assert outcome.result.changed == 1
    assert seen and set(seen) == {"48.0 MiB"}
    assert limit() == before
