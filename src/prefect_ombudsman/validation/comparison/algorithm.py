"""The algorithm: level 1 (bucket sums, both sides at once), level 2 (the failing buckets' rows,
in batches), level 3 (changed columns of sampled keys), on two threads; and one table's fingerprint."""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.engine import Connection, Engine

from prefect_ombudsman.dialects.types import merge_kinds
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.json_values import jsonable
from prefect_ombudsman.validation.comparison.models import (
    ChangedSample,
    ComparisonOptions,
    ComparisonOutcome,
    ComparisonResult,
    ComparisonSamples,
    ComparisonStats,
    Recipe,
)
from prefect_ombudsman.validation.comparison.plan import (
    LENGTH_PREFIXED,
    CanonicalField,
    Plan,
    TableSide,
    bucket_count,
    choose_buckets,
    choose_mode,
    choose_recipe,
    estimated_rows_of,
    plan_columns,
    reflect_side,
)
from prefect_ombudsman.validation.comparison.queries import MOD64, SideQueries, compile_sql, fold


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
        estimates = [estimated_rows_of(source, src_conn), estimated_rows_of(target, tgt_conn)]
        known = [e for e in estimates if e is not None]
        stats.estimated_rows = max(known) if known else None
        buckets = bucket_count(options.buckets, stats.estimated_rows)
        stats.buckets = buckets
        prepared: list[tuple[TableSide, Connection]] = []
        runner = _Runner([src_conn, tgt_conn], stats, cancel_check)
        try:
            for side, conn in ((source, src_conn), (target, tgt_conn)):
                side.dialect.prepare_comparison(conn, memory_limit_mb=options.memory_limit_mb)
                prepared.append((side, conn))
            mode = choose_mode(source, target, plan, options.hash_mode)
            stats.hash_mode = mode
            recipe = choose_recipe(source, target, options.hash_mode)
            stats.row_hash = "native" if mode == "native" else recipe
            bucket_by, stats.bucket_columns = choose_buckets(plan, mode)
            stats.bucket_by = bucket_by
            queries = [
                SideQueries(
                    side, fields, plan.keys, mode, buckets, bucket_by, stats.bucket_columns, recipe
                )
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
    source: TableSide,
    target: TableSide,
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
                h = fold(tuple(row[2 * nkeys :]))
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
    return jsonable(raw[0]) if len(raw) == 1 else [jsonable(v) for v in raw]


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
                h = fold(tuple(row[width:]))
                hashes[h] += 1
                if h not in first:
                    first[h] = {n: jsonable(v) for n, v in zip(names[i], row[:width], strict=True)}
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
    hash_mode: Literal["canonical", "native", "arithmetic"] = "canonical",
    memory_limit_mb: int | None = None,
) -> tuple[int, int]:
    """(row count, sum of the 64-bit row hashes mod 2^64) of one table, in one scan.

    `canonical` is the MD5 of the canonical row text, `arithmetic` the arithmetic row hash
    (dialects/arithmetic.py), `native` the engine's own hash.

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
            mode = "native" if hash_mode == "native" else "canonical"
            recipe: Recipe = "arithmetic" if hash_mode == "arithmetic" else "md5"
            query = SideQueries(side, fields, [], mode, 1, recipe=recipe).level1()
            rows, total = 0, 0
            for row in conn.execute(query):
                rows += int(row[1])
                total = (total + fold(row[2:])) % MOD64
        finally:
            side.dialect.finish_comparison(conn)
    return rows, total
