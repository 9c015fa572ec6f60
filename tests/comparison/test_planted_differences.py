"""Property-style proof: random tables with random planted differences; the comparison reports
exactly the planted set (counts, keys, changed columns) across engine pairs."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from comparison_tables import create_table, duckdb_engine, fakesnow_engine, sqlite_engine
from sqlalchemy import text

from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.validation.comparison import ComparisonOptions, compare_tables

VALUE_COLUMNS = [
    ("name", "text"),
    ("amount", "dec"),
    ("ratio", "float"),
    ("flag", "bool"),
    ("on_day", "date"),
    ("at_ts", "ts"),
    ("at_tz", "tstz"),
]
TEXT_ALPHABET = "abcXYZ ü汉🦆:~;|0"


def _value(rng: random.Random, kind: str) -> Any:
    if rng.random() < 0.1:
        return None
    if kind == "text":
        return "".join(rng.choice(TEXT_ALPHABET) for _ in range(rng.randint(0, 8)))
    if kind == "dec":
        return Decimal(rng.randint(-(10**8), 10**8)) / 1000
    if kind == "float":
        return round(rng.uniform(-1e4, 1e4), 4)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "date":
        return date(1960, 1, 1) + timedelta(days=rng.randint(0, 40000))
    if kind == "ts":
        return datetime(1960, 1, 1) + timedelta(microseconds=rng.randint(0, 3 * 10**15))
    zone = timezone(timedelta(minutes=rng.choice([-330, -60, 0, 120, 345])))
    return datetime(1990, 1, 1, tzinfo=UTC).astimezone(zone) + timedelta(
        microseconds=rng.randint(0, 10**15)
    )


def _changed(rng: random.Random, kind: str, old: Any) -> Any:
    while True:
        new = _value(rng, kind)
        if new != old:
            return new


KEY_LAYOUTS = {
    "int": [("id", "int")],
    "int_pair": [("k1", "bigint"), ("k2", "int")],
    "composite": [("k1", "int"), ("k2", "text")],
    "string": [("code", "text")],
}


def _key(rng: random.Random, layout: str, i: int) -> tuple[Any, ...]:
    if layout == "int":
        return (i * 7 + rng.randint(0, 6),)
    if layout == "int_pair":  # negative, huge and strided values: key buckets must agree anyway
        return (rng.choice([-(2**62), -3, 0, 2**40]) + i % 3, i * 1024 - 70_000)
    if layout == "composite":
        return (i % 13, f"k{i}é")
    return (f"c:{i}~{rng.choice('ab')}",)


def plant(seed: int, layout: str, rows: int = 150) -> dict[str, Any]:
    """Source rows, target rows, and exactly what differs between them."""
    rng = random.Random(seed)
    keys_seen: set[tuple[Any, ...]] = set()
    source = []
    for i in range(rows):
        key = _key(rng, layout, i)
        if key in keys_seen:
            continue
        keys_seen.add(key)
        source.append(list(key) + [_value(rng, k) for _, k in VALUE_COLUMNS])
    nkey = len(KEY_LAYOUTS[layout])
    target = [list(r) for r in source]
    order = list(range(len(target)))
    rng.shuffle(order)
    n_missing, n_changed, n_extra = rng.randint(0, 6), rng.randint(0, 6), rng.randint(0, 6)
    missing_idx, changed_idx = order[:n_missing], order[n_missing : n_missing + n_changed]
    changed: dict[tuple[Any, ...], set[str]] = {}
    for idx in changed_idx:
        row = target[idx]
        cols = rng.sample(range(len(VALUE_COLUMNS)), rng.randint(1, 2))
        for c in cols:
            row[nkey + c] = _changed(rng, VALUE_COLUMNS[c][1], row[nkey + c])
        changed[tuple(row[:nkey])] = {VALUE_COLUMNS[c][0] for c in cols}
    missing = {tuple(target[i][:nkey]) for i in missing_idx}
    target = [r for i, r in enumerate(target) if i not in set(missing_idx)]
    extra = set()
    for j in range(n_extra):
        key = _key(rng, layout, rows + 1000 + j)
        extra.add(key)
        target.append(list(key) + [_value(rng, k) for _, k in VALUE_COLUMNS])
    rng.shuffle(target)
    return {
        "source": source,
        "target": target,
        "missing": missing,
        "extra": extra,
        "changed": changed,
    }


def _as_key(sample: Any) -> tuple[Any, ...]:
    return tuple(sample) if isinstance(sample, list) else (sample,)


def assert_reports_exactly(result: Any, planted: dict[str, Any]) -> None:
    assert result.missing_in_target == len(planted["missing"])
    assert result.extra_in_target == len(planted["extra"])
    assert result.changed == len(planted["changed"])
    assert {_as_key(k) for k in result.samples.missing_in_target} == planted["missing"]
    assert {_as_key(k) for k in result.samples.extra_in_target} == planted["extra"]
    got_changed = {_as_key(s.key): set(s.columns) for s in result.samples.changed}
    assert got_changed == planted["changed"]
    expected_pass = not (planted["missing"] or planted["extra"] or planted["changed"])
    assert result.status == ("PASS" if expected_pass else "FAIL")
    assert result.source_rows == len(planted["source"])
    assert result.target_rows == len(planted["target"])


def _load_pair(src, tgt, name: str, layout: str, planted: dict[str, Any]) -> list[str]:
    keys = KEY_LAYOUTS[layout]
    columns = keys + VALUE_COLUMNS
    create_table(src, name, columns, planted["source"], primary_key=[k for k, _ in keys])
    create_table(tgt, name, columns, planted["target"], primary_key=[k for k, _ in keys])
    return [k for k, _ in keys]


OPTIONS = ComparisonOptions(sample_size=50, buckets=64, max_rows_in_memory=40)
#: how each layout is bucketed across engines (canonical hash): integer keys by key arithmetic
CANONICAL_BUCKETS = {
    "int": "key",
    "int_pair": "key",
    "composite": "canonical key hash",
    "string": "canonical key hash",
}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("layout", ["int", "int_pair", "composite", "string"])
def test_sqlite_to_duckdb_reports_exactly_the_planted_rows(tmp_path: Path, seed: int, layout: str):
    src, tgt = sqlite_engine(tmp_path / "s.db"), duckdb_engine(tmp_path / "t.duckdb")
    planted = plant(seed, layout)
    keys = _load_pair(src, tgt, "facts", layout, planted)
    outcome = compare_tables(
        src, tgt, "facts", options=OPTIONS.model_copy(update={"key_columns": keys})
    )
    assert outcome.stats.hash_mode == "canonical"
    assert outcome.stats.bucket_by == CANONICAL_BUCKETS[layout]
    assert_reports_exactly(outcome.result, planted)


@pytest.fixture(scope="module")
def snow(fakesnow_server):
    return fakesnow_engine(fakesnow_server, "PLANT")


@pytest.fixture(scope="module")
def pg(postgres_url: str):
    engine = get_engine(spec_from_url(postgres_url))
    with engine.begin() as conn:
        conn.execute(text("create schema if not exists cmp_src"))
        conn.execute(text("create schema if not exists cmp_tgt"))
    return engine


@pytest.mark.parametrize(
    "seed,layout", [(4, "int"), (11, "int_pair"), (5, "composite"), (6, "string")]
)
def test_postgresql_to_fakesnow_reports_exactly_the_planted_rows(pg, snow, seed: int, layout: str):
    planted = plant(seed, layout, rows=120)
    keys = _load_pair(pg, snow, f"facts_{layout}", layout, planted)
    outcome = compare_tables(
        pg, snow, f"facts_{layout}", options=OPTIONS
    )  # keys from the primary key
    assert outcome.result.key_columns == keys
    assert outcome.stats.bucket_by == CANONICAL_BUCKETS[layout]
    assert_reports_exactly(outcome.result, planted)


@pytest.mark.parametrize("mode", ["native", "canonical"])
@pytest.mark.parametrize(
    "seed,layout", [(7, "int"), (12, "int_pair"), (8, "composite"), (9, "string")]
)
def test_postgresql_to_postgresql_reports_exactly_the_planted_rows(
    pg, seed: int, layout: str, mode: str
):
    planted = plant(seed, layout)
    keys = KEY_LAYOUTS[layout]
    columns = keys + VALUE_COLUMNS
    pk = [k for k, _ in keys]
    create_table(pg, f"cmp_src.f_{layout}", columns, planted["source"], primary_key=pk)
    create_table(pg, f"cmp_tgt.f_{layout}", columns, planted["target"], primary_key=pk)
    outcome = compare_tables(
        pg,
        pg,
        f"cmp_src.f_{layout}",
        f"cmp_tgt.f_{layout}",
        options=OPTIONS.model_copy(update={"hash_mode": mode}),
    )
    assert outcome.stats.hash_mode == mode
    # same engine, native hash: a non-integer key is bucketed by the engine's hash of the key
    expected = CANONICAL_BUCKETS[layout]
    assert outcome.stats.bucket_by == (
        "key hash" if mode == "native" and expected != "key" else expected
    )
    assert_reports_exactly(outcome.result, planted)


def test_identical_tables_pass_in_one_scan(tmp_path: Path):
    src, tgt = sqlite_engine(tmp_path / "s.db"), duckdb_engine(tmp_path / "t.duckdb")
    planted = plant(10, "int")
    planted["target"] = [list(r) for r in planted["source"]]
    planted.update(missing=set(), extra=set(), changed={})
    _load_pair(src, tgt, "same", "int", planted)
    outcome = compare_tables(src, tgt, "same", options=OPTIONS)
    assert_reports_exactly(outcome.result, planted)
    assert outcome.stats.scans_per_side == 1 and outcome.stats.failing_buckets == 0


def test_keyless_tables_compare_as_multisets_with_duplicates(tmp_path: Path):
    src, tgt = sqlite_engine(tmp_path / "s.db"), duckdb_engine(tmp_path / "t.duckdb")
    columns = [("name", "text"), ("amount", "dec")]
    base = [
        ["a", Decimal("1.000")],
        ["a", Decimal("1.000")],
        ["b", None],
        ["", Decimal("2.500")],
        [None, None],
    ]
    target = [
        ["a", Decimal("1.000")],
        ["b", None],
        ["b", None],
        ["", Decimal("2.500")],
        [None, None],
        ["c", Decimal("0")],
    ]
    create_table(src, "bag", columns, base)
    create_table(tgt, "bag", columns, target)
    result = compare_tables(src, tgt, "bag", options=ComparisonOptions(buckets=4)).result
    assert result.key_columns == []
    assert (result.missing_in_target, result.extra_in_target, result.changed) == (1, 2, 0)
    assert result.samples.missing_in_target == [{"name": "a", "amount": 1}]
    assert sorted(result.samples.extra_in_target, key=repr) == sorted(
        [{"name": "b", "amount": None}, {"name": "c", "amount": 0}], key=repr
    )


def test_null_keys_are_rejected_with_a_clear_error(tmp_path: Path):
    src, tgt = sqlite_engine(tmp_path / "s.db"), duckdb_engine(tmp_path / "t.duckdb")
    create_table(src, "nk", [("id", "int"), ("name", "text")], [[1, "a"], [None, "b"]])
    create_table(tgt, "nk", [("id", "int"), ("name", "text")], [[1, "a"], [2, "b"]])
    with pytest.raises(
        ConfigurationError, match=r"source table nk has 1 row\(s\) with NULL in key column\(s\) id"
    ):
        compare_tables(src, tgt, "nk", options=ComparisonOptions(key_columns=["id"]))


def test_trailing_spaces_of_fixed_length_text_are_ignored(tmp_path: Path, pg):
    tgt = duckdb_engine(tmp_path / "t.duckdb")
    create_table(
        pg, "padded", [("id", "int"), ("code", "char5")], [[1, "ab"], [2, ""]], primary_key=["id"]
    )
    create_table(
        tgt,
        "padded",
        [("id", "int"), ("code", "char5")],
        [[1, "ab  "], [2, "   "]],
        primary_key=["id"],
    )
    assert compare_tables(pg, tgt, "padded").result.status == "PASS"


def test_unknown_table_and_column_errors_name_them(tmp_path: Path):
    src, tgt = sqlite_engine(tmp_path / "s.db"), duckdb_engine(tmp_path / "t.duckdb")
    create_table(src, "t1", [("id", "int")], [[1]])
    create_table(tgt, "t1", [("id", "int")], [[1]])
    with pytest.raises(ConfigurationError, match="target table 'nope' not found"):
        compare_tables(src, tgt, "t1", "nope")
    with pytest.raises(ConfigurationError, match="key column 'zz' is not in source table t1"):
        compare_tables(src, tgt, "t1", options=ComparisonOptions(key_columns=["zz"]))
