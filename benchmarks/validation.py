"""Validation engine benchmark (issue 4).

    .venv/bin/python benchmarks/validation.py                       # 1M rows, DuckDB and PostgreSQL, plus the bulk job
    .venv/bin/python benchmarks/validation.py --rows 200000 --engines duckdb --skip-bulk
    .venv/bin/python benchmarks/validation.py --engines postgresql postgresql-keys --skip-bulk

Part 1: a fact table pair (`--rows`, default 1,000,000) with a 10,000-row dimension, identical on
both sides (two DuckDB files; two PostgreSQL databases), through one pipeline with record_counts,
nulls, statistics, metric_sums, uniqueness and foreign_keys. Printed side by side: the pipeline's
wall time (best of 3 runs; the first run, which also opens pooled connections, printed too), the table scans per side, the rows pulled to Python, and the baseline measured in the
same run: one plain `SELECT COUNT(*)` per side (and, for context, one full-column scan
`SELECT SUM(amount)` per side), the floor (the checks' aggregates as one hand-written SELECT
per side, both sides at once: `floor_sql`), and the 1-minute load average when the row was measured.
`postgresql-keys` is the same PostgreSQL pair with the constraints a migrated fact table
usually has (PRIMARY KEY sales_key, NOT NULL keys/date/measures, PRIMARY KEY on the dimension):
the validation reads them from the catalog and skips COUNT(DISTINCT) and COUNT(col) there.
Part 2: `--bulk-pipelines` (200) pipelines over `--bulk-tables` (20) DuckDB table pairs in one
`bulk_pipeline_execution` job with max_parallel 8 (a temporary Prefect server; its start is not
timed): pipelines per minute.
PostgreSQL: `--pg-url`, else a throwaway server (initdb in a temp dir) is started and stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

PIPELINE = """
steps:
  - {name: record_counts, config: {table: fact_sales}}
  - {name: nulls, config: {table: fact_sales}}
  - {name: statistics, config: {table: fact_sales, columns: [quantity, amount]}}
  - {name: metric_sums, config: {table: fact_sales, metric_cols: [quantity, amount]}}
  - {name: uniqueness, config: {table: fact_sales, columns: [sales_key]}}
  - {name: foreign_keys, config: {table: fact_sales, fk_column: customer_key, ref_table: dim_customer, ref_column: customer_key}}
"""

DUCK_FACT = """
CREATE OR REPLACE TABLE fact_sales AS
SELECT i::BIGINT AS sales_key, (i % 10000 + 1)::INTEGER AS customer_key, DATE '2022-01-01' + (i % 730)::INTEGER AS sale_date,
       (i % 7 + 1)::INTEGER AS quantity, ((i % 100000) / 100.0)::DECIMAL(12,2) AS amount,
       CASE WHEN i % 5 = 0 THEN NULL ELSE 'note ' || (i % 97) END AS note
FROM range({n}) r(i)"""
DUCK_DIM = """
CREATE OR REPLACE TABLE dim_customer AS
SELECT i::INTEGER + 1 AS customer_key, 'CUST' || i AS customer_id, 'user' || i || '@example.com' AS email FROM range(10000) r(i)"""
PG_FACT = """
CREATE TABLE fact_sales AS
SELECT i::BIGINT AS sales_key, (i % 10000 + 1)::INTEGER AS customer_key, DATE '2022-01-01' + (i % 730)::INTEGER AS sale_date,
       (i % 7 + 1)::INTEGER AS quantity, ((i % 100000) / 100.0)::NUMERIC(12,2) AS amount,
       CASE WHEN i % 5 = 0 THEN NULL ELSE 'note ' || (i % 97) END AS note
FROM generate_series(0, {n} - 1) AS g(i)"""
PG_DIM = """
CREATE TABLE dim_customer AS
SELECT i + 1 AS customer_key, 'CUST' || i AS customer_id, 'user' || i || '@example.com' AS email FROM generate_series(0, 9999) AS g(i)"""


def build_duckdb(folder: Path, n: int) -> tuple[str, str]:
    import duckdb

    urls = []
    for side in ("src", "tgt"):
        path = folder / f"{side}_{n}.duckdb"
        con = duckdb.connect(str(path))
        con.execute(DUCK_FACT.format(n=n))
        con.execute(DUCK_DIM)
        con.close()
        urls.append(f"duckdb:///{path}")
    return urls[0], urls[1]


PG_KEYS = (
    "ALTER TABLE fact_sales ADD PRIMARY KEY (sales_key), ALTER COLUMN customer_key SET NOT NULL, "
    "ALTER COLUMN sale_date SET NOT NULL, ALTER COLUMN quantity SET NOT NULL, "
    "ALTER COLUMN amount SET NOT NULL",
    "ALTER TABLE dim_customer ADD PRIMARY KEY (customer_key)",
)


def build_postgres(base_url: str, n: int, keys: bool = False) -> tuple[str, str]:
    import psycopg

    plain = base_url.replace("postgresql+psycopg://", "postgresql://")
    suffix = "_keys" if keys else ""
    names = [f"bench_val_src_{n}{suffix}", f"bench_val_tgt_{n}{suffix}"]
    with psycopg.connect(plain, autocommit=True) as con:
        existing = {r[0] for r in con.execute("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                con.execute(f"CREATE DATABASE {name}")
    base = base_url.rpartition("/")[0]
    for name in names:
        with psycopg.connect(f"{plain.rpartition('/')[0]}/{name}", autocommit=True) as con:
            if not con.execute("SELECT to_regclass('fact_sales')").fetchone()[0]:
                con.execute(PG_FACT.format(n=n))
                con.execute(PG_DIM)
                for statement in PG_KEYS if keys else ():
                    con.execute(statement)
                con.execute("VACUUM ANALYZE fact_sales")
                con.execute("VACUUM ANALYZE dim_customer")
    return f"{base}/{names[0]}", f"{base}/{names[1]}"


def timed_scalar(engine: Any, sql: str) -> float:
    from sqlalchemy import text

    with engine.connect() as conn:
        conn.execute(text(sql)).scalar()  # warm
        started = time.perf_counter()
        conn.execute(text(sql)).scalar()
        return time.perf_counter() - started


def floor_sql(keys: bool) -> str:
    """The six checks' aggregates as one hand-written SELECT: what any exact validation must compute.

    Where the catalog proves a fact (`keys`: PRIMARY KEY sales_key, NOT NULL keys and measures),
    the COUNT(DISTINCT) and the COUNT(col) of NOT NULL columns are left out, as the pipeline does.
    The foreign-key check is covered by MIN/MAX(customer_key) (the orphan proof by range; the
    10,000-row dimension's own query is not counted).
    """
    counts = (
        "COUNT(note)"
        if keys
        else ", ".join(
            f"COUNT({c})"
            for c in ("sales_key", "customer_key", "sale_date", "quantity", "amount", "note")
        )
    )
    distinct = "" if keys else ", COUNT(DISTINCT sales_key)"
    return (
        f"SELECT COUNT(*), {counts}, MIN(quantity), MAX(quantity), SUM(quantity), STDDEV_SAMP(quantity), "
        f"MIN(amount), MAX(amount), SUM(amount), STDDEV_SAMP(amount), MIN(customer_key), MAX(customer_key)"
        f"{distinct} FROM fact_sales"
    )


def timed_both_sides(engines: list[Any], sql: str, runs: int = 3) -> float:
    """Best wall time of `sql` run on both sides at once (as the pipeline runs its two sides)."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import text

    conns = [e.connect() for e in engines]
    try:
        best = float("inf")
        with ThreadPoolExecutor(len(conns)) as pool:
            for _ in range(runs + 1):  # the first run warms caches
                started = time.perf_counter()
                list(pool.map(lambda c: c.execute(text(sql)).all(), conns))
                best = min(best, time.perf_counter() - started)
        return best
    finally:
        for conn in conns:
            conn.close()


def run_pipeline_bench(
    engine_name: str, src_url: str, tgt_url: str, runs: int = 3, keys: bool = False
) -> dict[str, Any]:
    from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
    from prefect_ombudsman.validation import Side, parse_pipeline, run_pipeline

    src, tgt = get_engine(spec_from_url(src_url)), get_engine(spec_from_url(tgt_url))
    count = [timed_scalar(e, "SELECT COUNT(*) FROM fact_sales") for e in (src, tgt)]
    scan = [timed_scalar(e, "SELECT SUM(amount) FROM fact_sales") for e in (src, tgt)]
    floor = timed_both_sides([src, tgt], floor_sql(keys))
    pipeline = parse_pipeline(PIPELINE, pipeline_id="bench")
    walls = []
    for _ in range(runs):  # the first run also opens the pool's connections
        started = time.perf_counter()
        result = run_pipeline(pipeline, Side("source", src), Side("target", tgt), max_workers=4)
        walls.append(time.perf_counter() - started)
    wall = min(walls)
    bad = [(s["name"], s["status"], s["message"]) for s in result["steps"] if s["status"] != "PASS"]
    stats = result["stats"]
    return {
        "engine": engine_name,
        "wall_s": wall,
        "first_s": walls[0],
        "count_s": max(count),
        "scan_s": max(scan),
        "floor_s": floor,
        "fact_scans": [
            stats[side]["table_scans"].get(
                "fact_sales",
                stats[side]["table_scans"].get(
                    "public.fact_sales", stats[side]["table_scans"].get("main.fact_sales", 0)
                ),
            )
            for side in ("source", "target")
        ],
        "queries": [stats[side]["queries"] for side in ("source", "target")],
        "rows_pulled": [stats[side]["rows_pulled"] for side in ("source", "target")],
        "problems": bad,
        "load": os.getloadavg()[0],
    }


def bulk_bench(
    folder: Path, pipelines: int, tables: int, rows: int, max_parallel: int
) -> dict[str, Any]:
    import duckdb

    root = folder / "projects"
    project = root / "bulk"
    (project / "pipelines").mkdir(parents=True, exist_ok=True)
    (project / "project.yaml").write_text(
        "name: bulk\nsource: duckdb:///data/src.duckdb\ntarget: duckdb:///data/tgt.duckdb\n"
    )
    (project / "data").mkdir(exist_ok=True)
    for side in ("src", "tgt"):
        con = duckdb.connect(str(project / "data" / f"{side}.duckdb"))
        for t in range(tables):
            con.execute(
                f"CREATE OR REPLACE TABLE t{t} AS SELECT i::BIGINT AS id, (i % 7)::INTEGER AS q, ((i % 1000) / 10.0)::DECIMAL(10,1) AS amount, "
                f"CASE WHEN i % 9 = 0 THEN NULL ELSE 'x' || (i % 13) END AS label FROM range({rows}) r(i)"
            )
        con.close()
    ids = []
    for p in range(pipelines):
        t = p % tables
        (project / "pipelines" / f"p{p:03d}.yaml").write_text(
            f"steps:\n  - {{name: record_counts, config: {{table: t{t}}}}}\n  - {{name: nulls, config: {{table: t{t}}}}}\n"
            f"  - {{name: metric_sums, config: {{table: t{t}, metric_cols: [q, amount]}}}}\n"
            f"  - {{name: uniqueness, config: {{table: t{t}, columns: [id]}}}}\n"
        )
        ids.append(f"p{p:03d}")
    os.environ["OMBUDSMAN_PROJECTS_DIR"] = str(root)
    from prefect.testing.utilities import prefect_test_harness

    from prefect_ombudsman.flows import bulk_pipeline_execution

    with prefect_test_harness(server_startup_timeout=180):
        started = time.perf_counter()
        state = bulk_pipeline_execution(
            pipelines=[{"pipeline_id": i} for i in ids], project_id="bulk", parallel_execution=True, max_parallel=max_parallel,
            projects_dir=str(root), return_state=True,
        )  # fmt: skip
        wall = time.perf_counter() - started
    summary = state.result(raise_on_failure=False)
    return {"pipelines": pipelines, "tables": tables, "rows": rows, "wall_s": wall, "completed": summary["completed"],
            "failed": summary["failed"], "per_minute": pipelines / wall * 60}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["duckdb", "postgresql", "postgresql-keys"],
        choices=["duckdb", "postgresql", "postgresql-keys"],
    )
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--bulk-pipelines", type=int, default=200)
    parser.add_argument("--bulk-tables", type=int, default=20)
    parser.add_argument("--bulk-rows", type=int, default=10_000)
    parser.add_argument("--max-parallel", type=int, default=8)
    parser.add_argument("--skip-bulk", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    folder = Path(tempfile.mkdtemp(prefix="ombudsman-bench-validation-"))
    os.environ["PREFECT_HOME"] = str(
        folder / "prefect-home"
    )  # a private Prefect database for the bulk job
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    rows = []
    try:
        if "duckdb" in args.engines:
            rows.append(run_pipeline_bench("duckdb -> duckdb", *build_duckdb(folder, args.rows)))
        variants = [
            keys
            for keys in (False, True)
            if ("postgresql-keys" if keys else "postgresql") in args.engines
        ]
        if variants:
            from contextlib import nullcontext

            from comparison import ThrowawayPostgres

            with nullcontext(args.pg_url) if args.pg_url else ThrowawayPostgres() as url:
                for keys in variants:
                    name = "postgresql -> postgresql" + (" (keys)" if keys else "")
                    rows.append(
                        run_pipeline_bench(name, *build_postgres(url, args.rows, keys), keys=keys)
                    )
        print(
            f"\nPipeline (record_counts, nulls, statistics, metric_sums, uniqueness, foreign_keys) on {args.rows:,} fact rows"
        )
        print(
            f"{'engines':31} {'1st run s':>9} {'pipeline s':>10} {'COUNT(*) s':>10} {'ratio':>7} {'SUM scan s':>10} {'ratio':>7} {'floor s':>8} {'ratio':>6} {'fact scans/side':>16} {'queries/side':>13} {'rows pulled':>12} {'load':>5}"
        )
        for r in rows:
            print(
                f"{r['engine']:31} {r['first_s']:9.3f} {r['wall_s']:10.3f} {r['count_s']:10.4f} {r['wall_s'] / max(r['count_s'], 1e-9):7.1f} "
                f"{r['scan_s']:10.4f} {r['wall_s'] / max(r['scan_s'], 1e-9):7.1f} {r['floor_s']:8.3f} {r['wall_s'] / max(r['floor_s'], 1e-9):6.2f} {str(r['fact_scans']):>16} {str(r['queries']):>13} {str(r['rows_pulled']):>12} {r['load']:5.2f}"
            )
            if r["problems"]:
                print("   steps not PASS:", r["problems"])
        print(
            "ratio = pipeline / that figure. COUNT(*) and SUM scan: one side alone (PostgreSQL may use parallel\n"
            "workers there); floor: the checks' aggregates as one hand-written SELECT per side, both sides at once\n"
            "(the least SQL an exact validation of these six checks runs; see floor_sql)."
        )
        if not args.skip_bulk:
            b = bulk_bench(
                folder, args.bulk_pipelines, args.bulk_tables, args.bulk_rows, args.max_parallel
            )
            print(
                f"\nBulk job: {b['pipelines']} pipelines over {b['tables']} DuckDB table pairs ({b['rows']:,} rows each), max_parallel {args.max_parallel}"
            )
            print(
                f"wall {b['wall_s']:.1f} s, {b['completed']} completed, {b['failed']} failed -> {b['per_minute']:.0f} pipelines/minute"
            )
    finally:
        from prefect_ombudsman.dialects.engines import dispose_engines

        dispose_engines()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
