"""Canonical key buckets: text, composite and mixed-type keys and keyless tables are bucketed by a
function of columns computed alike on every engine (the canonical hash of the key, or integer
arithmetic), so planted differences are found exactly across engines and level 2 hashes only the
rows of the failing buckets (counted through SQLite's row-hash function)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from comparison_tables import create_table, duckdb_engine, fakesnow_engine, sqlite_engine
from sqlalchemy import select

from prefect_ombudsman.dialects import sqlite as sqlite_dialect
from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.dialects.sqlite import field_spec
from prefect_ombudsman.json_values import jsonable
from prefect_ombudsman.validation.comparison import (
    ComparisonOptions,
    SideQueries,
    canonical_key_bucket,
    compare_tables,
    key_bucket,
    plan_columns,
    reflect_side,
)

VALUES = [
    ("name", "text"),
    ("amount", "dec"),
    ("ratio", "float"),
    ("on_day", "date"),
    ("at_ts", "ts"),
]
LAYOUTS: dict[str, list[tuple[str, str]]] = {
    "string": [("code", "text")],
    "composite": [("k1", "int"), ("k2", "text")],
    "mixed": [("day", "date"), ("code", "text"), ("amt", "dec")],
    # no key: bucketed by the integer column / the canonical hash of amount, on_day, at_ts / rows
    "keyless_int": [("n", "int")],
    "keyless_cheap": [],
    "keyless_text": [],
}
EXPECTED_BUCKETS = {
    "string": ("canonical key hash", ["code"]),
    "composite": ("canonical key hash", ["k1", "k2"]),
    "mixed": ("canonical key hash", ["day", "code", "amt"]),
    "keyless_int": ("key", ["n"]),
    "keyless_cheap": ("canonical key hash", ["amount", "on_day", "at_ts"]),
    "keyless_text": ("row hash", []),
}
OPTIONS = ComparisonOptions(sample_size=50, buckets=64, max_rows_in_memory=40)


def _key(layout: str, i: int) -> tuple[Any, ...]:
    if layout == "string":
        return (f"s:{i}~é",)
    if layout == "composite":
        return (i % 11, f"k{i}🦆")
    if layout == "mixed":
        return (date(2000, 1, 1) + timedelta(days=i % 40), f"m{i % 7}", Decimal(f"{i}.125"))
    if layout == "keyless_int":
        return (i * 3,)
    return ()


def _columns(layout: str) -> list[tuple[str, str]]:
    if layout == "keyless_text":
        return [("name", "text"), ("ratio", "float")]
    return LAYOUTS[layout] + VALUES


def _row(rng: random.Random, layout: str, i: int) -> list[Any]:
    # amount is unique per row (i / 8 at scale 3) so keyless samples can be identified by it
    values = {
        "name": "".join(rng.choice("abXY ü:~;|") for _ in range(rng.randint(0, 6))),
        "amount": Decimal(i) / 8,
        "ratio": round(rng.uniform(-100, 100), 3),
        "on_day": date(1965, 1, 1) + timedelta(days=rng.randint(0, 30000)),
        "at_ts": None if rng.random() < 0.1 else date(2001, 1, 1) + timedelta(days=i),
    }
    if layout == "keyless_text":
        values["name"] = f"row {i} " + values["name"]
    return list(_key(layout, i)) + [values[n] for n, _ in _columns(layout)[len(LAYOUTS[layout]) :]]


def plant(seed: int, layout: str, rows: int = 160) -> dict[str, Any]:
    """Source and target rows with planted missing, extra and changed rows."""
    rng = random.Random(seed)
    source = [_row(rng, layout, i) for i in range(rows)]
    target = [list(r) for r in source]
    order = list(range(rows))
    rng.shuffle(order)
    missing_idx = set(order[:5])
    changed_idx = order[5:9]
    nkey = len(LAYOUTS[layout])
    for idx in changed_idx:
        target[idx][nkey] = f"changed {idx}"  # the first value column (name)
    extra = [_row(rng, layout, rows + 100 + j) for j in range(3)]
    target = [r for i, r in enumerate(target) if i not in missing_idx] + extra
    rng.shuffle(target)
    return {
        "source": source,
        "target": target,
        "missing": [source[i] for i in missing_idx],
        "changed": [source[i] for i in changed_idx],
        "extra": extra,
        "nkey": nkey,
    }


def _norm(values: Any) -> tuple[str, ...]:
    """A key or row value as text comparable across engines (dates, decimals, strings)."""
    values = values if isinstance(values, (list, tuple)) else [values]
    out = []
    for v in values:
        v = jsonable(v)
        try:
            out.append(str(Decimal(str(v)).normalize()))
        except ArithmeticError:
            out.append(str(v))
    return tuple(out)


def assert_exact(outcome: Any, planted: dict[str, Any], layout: str) -> None:
    result, nkey = outcome.result, planted["nkey"]
    assert (outcome.stats.bucket_by, outcome.stats.bucket_columns) == EXPECTED_BUCKETS[layout]
    assert result.source_rows == len(planted["source"])
    assert result.target_rows == len(planted["target"])
    assert result.status == "FAIL"
    if nkey and not layout.startswith("keyless"):
        assert result.missing_in_target == len(planted["missing"])
        assert result.extra_in_target == len(planted["extra"])
        assert result.changed == len(planted["changed"])
        assert {_norm(k) for k in result.samples.missing_in_target} == {
            _norm(r[:nkey]) for r in planted["missing"]
        }
        assert {_norm(k) for k in result.samples.extra_in_target} == {
            _norm(r[:nkey]) for r in planted["extra"]
        }
        assert {_norm(s.key): tuple(s.columns) for s in result.samples.changed} == {
            _norm(r[:nkey]): ("name",) for r in planted["changed"]
        }
        return
    # a multiset: a changed row is one missing plus one extra row; rows named by their amount
    # (keyless_text: by their name, which starts with the row number)
    assert result.changed == 0
    assert result.missing_in_target == len(planted["missing"]) + len(planted["changed"])
    assert result.extra_in_target == len(planted["extra"]) + len(planted["changed"])
    names = [n for n, _ in _columns(layout)]
    marker = "name" if layout == "keyless_text" else "amount"
    pick = names.index(marker)

    def mark(value: Any) -> str:
        return str(value).split(" ")[1] if marker == "name" else _norm(value)[0]

    got_missing = Counter(mark(r[marker]) for r in result.samples.missing_in_target)
    got_extra = Counter(mark(r[marker]) for r in result.samples.extra_in_target)
    assert got_missing == Counter(mark(r[pick]) for r in planted["missing"] + planted["changed"])
    changed_marks = [
        mark(r[pick]) if marker == "amount" else str(planted["source"].index(r))
        for r in planted["changed"]
    ]
    assert got_extra == Counter([mark(r[pick]) for r in planted["extra"]] + changed_marks)


PAIRS = ["sqlite-duckdb", "postgresql-duckdb", "duckdb-postgresql", "postgresql-snowflake"]


def _engines(pair: str, tmp_path: Path, request: pytest.FixtureRequest) -> list[Any]:
    out = []
    for i, kind in enumerate(pair.split("-")):
        if kind == "sqlite":
            out.append(sqlite_engine(tmp_path / f"{i}.db"))
        elif kind == "duckdb":
            out.append(duckdb_engine(tmp_path / f"{i}.duckdb"))
        elif kind == "postgresql":
            out.append(get_engine(spec_from_url(request.getfixturevalue("postgres_url"))))
        else:
            out.append(fakesnow_engine(request.getfixturevalue("fakesnow_server"), "XENG"))
    return out


@pytest.mark.parametrize("recipe", ["arithmetic", "md5"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("pair", PAIRS)
def test_planted_differences_are_found_exactly_across_engines(
    tmp_path: Path, request: pytest.FixtureRequest, pair: str, layout: str, recipe: str
):
    src, tgt = _engines(pair, tmp_path, request)
    planted = plant(sum(map(ord, pair + layout)), layout)
    name = f"x_{layout}_{recipe}_{pair.replace('-', '_')}"
    keys = [k for k, _ in LAYOUTS[layout]] if not layout.startswith("keyless") else []
    create_table(src, name, _columns(layout), planted["source"], primary_key=keys)
    create_table(tgt, name, _columns(layout), planted["target"], primary_key=keys)
    outcome = compare_tables(
        src,
        tgt,
        name,
        options=OPTIONS.model_copy(update={"key_columns": keys, "hash_mode": recipe}),
    )
    assert (outcome.stats.hash_mode, outcome.stats.row_hash) == ("canonical", recipe)
    assert_exact(outcome, planted, layout)


@pytest.mark.parametrize("kind", ["sqlite", "duckdb", "postgresql", "snowflake"])
def test_canonical_key_bucket_is_the_python_reference_on_every_engine(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
):
    engine = _engines(f"{kind}", tmp_path, request)[0]
    columns = LAYOUTS["mixed"]
    rows = [list(_key("mixed", i)) for i in range(0, 400, 7)] + [
        [date(1969, 12, 31), "", Decimal("-0.125")],
        [date(2100, 2, 28), "~:;|ü汉", Decimal("99999.125")],
    ]
    create_table(engine, "ckb", columns, rows, primary_key=[c for c, _ in columns])
    side = reflect_side("source", engine, "ckb")
    plan = plan_columns(side, side, ComparisonOptions())
    queries = SideQueries(
        side,
        plan.source_fields,
        plan.keys,
        "canonical",
        1024,
        "canonical key hash",
        ["day", "code", "amt"],
    )
    spec = ",".join(field_spec(f) for f in queries.bucket_fields)
    with engine.connect() as conn:
        side.dialect.prepare_comparison(conn)  # type: ignore[attr-defined]
        query = select(queries.table.c.amt, queries.key_bucket())
        got = {_norm(a): int(b) for a, b in conn.execute(query)}
    want = {_norm(r[2]): canonical_key_bucket(spec, r, 1024) for r in rows}
    assert got == want
    assert len(set(want.values())) > len(rows) // 2  # the buckets spread


def test_keyless_integer_buckets_put_null_with_zero():
    assert key_bucket([None, 5], 1 << 20) == key_bucket([0, 5], 1 << 20)


def test_unchanged_buckets_are_not_hashed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Level 2 filters on the key's canonical hash first: SQLite's row-hash function (the
    arithmetic one, which the cross-engine path runs) runs once per row at level 1 and then only
    for the rows of the failing buckets, which the Python reference predicts from the differing
    keys alone; the level-2 rows transferred are those rows too."""
    calls: Counter[str] = Counter()
    real = sqlite_dialect._sqlite_row_arith

    def counting(spec: str, *values: Any) -> int:
        calls[spec] += 1
        return real(spec, *values)

    monkeypatch.setattr(sqlite_dialect, "_sqlite_row_arith", counting)
    src, tgt = sqlite_engine(tmp_path / "s.db"), duckdb_engine(tmp_path / "t.duckdb")
    columns = [("code", "text"), ("qty", "int"), ("note", "text")]
    n = 4000
    source = [[f"code-{i:05d}", i % 13, f"note {i}"] for i in range(n)]
    target = [list(r) for r in source if r[0] != "code-00017"]
    target[1234][2] = "changed"
    target.append(["code-99999", 1, "new"])
    create_table(src, "big", columns, source, primary_key=["code"])
    create_table(tgt, "big", columns, target, primary_key=["code"])

    outcome = compare_tables(src, tgt, "big", options=ComparisonOptions(sample_size=5))
    result, stats = outcome.result, outcome.stats
    assert (result.missing_in_target, result.extra_in_target, result.changed) == (1, 1, 1)
    assert result.samples.missing_in_target == ["code-00017"]
    assert result.samples.extra_in_target == ["code-99999"]
    assert result.samples.changed[0].key == source[1235][0]
    assert stats.bucket_by == "canonical key hash" and stats.buckets == 64
    key_spec = "text|text|0|1"
    row_spec = "text|text|0|1,int|int|0|0,text|text|0|1"

    def bucket(code: str) -> int:
        return canonical_key_bucket(key_spec, [code], stats.buckets)

    failing = {bucket(c) for c in ("code-00017", "code-99999", source[1235][0])}
    assert stats.failing_buckets == len(failing)
    in_failing = [sum(1 for r in rows if bucket(r[0]) in failing) for rows in (source, target)]
    # SQLite (the source): every row's key and row hash at level 1, every key again at level 2,
    # and the row hash of the failing buckets' rows only
    assert calls[key_spec] == 2 * n
    assert calls[row_spec] == n + in_failing[0]
    assert in_failing[0] < n // 10
    # rows on the wire: the buckets, then exactly the failing buckets' rows, then 2 changed rows
    level1 = len({bucket(r[0]) for r in source}) + len({bucket(r[0]) for r in target})
    assert stats.rows_transferred == level1 + sum(in_failing) + 2
