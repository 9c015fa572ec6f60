"""Data generation benchmark (issue 3): the Retail schema generated and loaded, against the naive way.

    .venv/bin/python benchmarks/datagen.py                      # 1M fact rows, 10M-row memory run, 100k naive rows
    .venv/bin/python benchmarks/datagen.py --rows 200000 --big-rows 0 --naive-rows 10000   # quick look

Every measurement runs in a fresh child process (so its peak RSS is its own):
- generate only: every table of Retail (`--rows` rows in each of the two facts; dimensions scale),
  chunks built and dropped, nothing loaded;
- generate + load into DuckDB, SQLite and PostgreSQL, one target at a time (staging table + swap,
  each database's bulk path);
- `--big-rows` (default 10,000,000) fact rows generated and loaded into DuckDB: peak memory;
- 100,000 customer rows the naive way (one Faker call per field per row, as the Studio did:
  reference/studio-today.md §4.2, reference/db-infra.md §4 (a)) against our `dim_customer` (15 columns).
PostgreSQL: `--pg-url`, else a throwaway server (initdb in a temp dir, as tests/conftest.py does).
Goals (issue 3): >= 500,000 rows/s generate+load into DuckDB for the whole schema, >= 100x the
naive way, peak memory < 1 GiB for 10,000,000 fact rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GIB = 1024**3


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


# ----------------------------------------------------------------------------- children


def child_generate(rows: int, seed: int) -> dict[str, Any]:
    from prefect_ombudsman.datagen import build_plan, iter_chunks
    from prefect_ombudsman.datagen.pools import pools

    started = time.perf_counter()
    pools()
    pool_seconds = time.perf_counter() - started
    plan = build_plan("Retail", rows, seed)
    started = time.perf_counter()
    total = 0
    for table in plan.tables:
        for chunk in iter_chunks(plan, table):
            total += chunk.num_rows
    return {
        "rows": total,
        "seconds": time.perf_counter() - started,
        "pool_seconds": pool_seconds,
        "peak_rss": _peak_rss(),
    }


def child_load(rows: int, seed: int, url: str) -> dict[str, Any]:
    from prefect_ombudsman.connections import engine_for
    from prefect_ombudsman.datagen import Target, build_plan, generate_warehouse
    from prefect_ombudsman.datagen.pools import pools

    pools()  # built once per process (~0.3 s), not part of the rate
    engine = engine_for(url)
    plan = build_plan("Retail", rows, seed)
    started = time.perf_counter()
    result = generate_warehouse(plan, [Target("bench", engine)])
    seconds = time.perf_counter() - started
    load_seconds = sum(t["load_seconds"] for t in result["targets"][0]["tables"].values())
    return {
        "rows": result["rows_generated"],
        "seconds": seconds,
        "load_seconds": load_seconds,
        "peak_rss": _peak_rss(),
    }


def child_naive(rows: int) -> dict[str, Any]:
    """One Faker call per field per row (the Studio's way, with Faker instead of random.choice)."""
    from datetime import datetime

    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(42)
    start, end = datetime(2017, 1, 1), datetime(2024, 12, 31)
    started = time.perf_counter()
    out = []
    for key in range(1, rows + 1):
        out.append(
            (
                key,
                fake.first_name(),
                fake.last_name(),
                fake.unique.email(),
                fake.street_address(),
                fake.city(),
                fake.state_abbr(),
                fake.zipcode(),
                fake.date_of_birth(minimum_age=18, maximum_age=85),
                fake.date_time_between(start_date=start, end_date=end),
            )
        )
    return {"rows": len(out), "seconds": time.perf_counter() - started, "peak_rss": _peak_rss()}


def child_customers(rows: int, seed: int) -> dict[str, Any]:
    from prefect_ombudsman.datagen import build_plan, iter_chunks
    from prefect_ombudsman.datagen.pools import pools

    pools()
    plan = build_plan(
        "Retail", 1000, seed, tables={"dim_customer": rows}, table_name="dim_customer"
    )
    started = time.perf_counter()
    total = sum(chunk.num_rows for chunk in iter_chunks(plan, plan.tables[0]))
    return {"rows": total, "seconds": time.perf_counter() - started, "peak_rss": _peak_rss()}


CHILDREN = {
    "generate": child_generate,
    "load": child_load,
    "naive": child_naive,
    "customers": child_customers,
}


def run_child(name: str, *args: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", name, *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"child {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report


def _rate(measure: dict[str, Any]) -> float:
    return measure["rows"] / measure["seconds"] if measure["seconds"] else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="Rows per fact table (Retail has two facts)."
    )
    parser.add_argument(
        "--big-rows", type=int, default=10_000_000, help="Fact rows of the memory run (0: skip)."
    )
    parser.add_argument(
        "--naive-rows", type=int, default=100_000, help="Customer rows made the naive way."
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pg-url", help="PostgreSQL to load (default: a throwaway server).")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, *rest = args.child
        values = [int(v) if v.isdigit() else v for v in rest]
        print(json.dumps(CHILDREN[name](*values)))
        return

    sys.path.insert(0, str(Path(__file__).parent))
    from comparison import ThrowawayPostgres  # the shared throwaway-server helper of the benchmarks

    folder = Path(tempfile.mkdtemp(prefix="ombudsman-bench-datagen-"))
    # the benchmark's databases live in its scratch folder, outside any projects root (SPEC §11)
    allowed = os.environ.get("OMBUDSMAN_ALLOWED_PATHS")
    os.environ["OMBUDSMAN_ALLOWED_PATHS"] = os.pathsep.join(filter(None, [allowed, str(folder)]))
    measures: dict[str, dict[str, Any]] = {}
    print(
        f"Retail, {args.rows:,} rows in each fact table, seed {args.seed}; one child process per line\n",
        flush=True,
    )
    measures["generate only"] = run_child("generate", args.rows, args.seed)
    measures["generate+load DuckDB"] = run_child(
        "load", args.rows, args.seed, f"duckdb:///{folder / 'bench.duckdb'}"
    )
    measures["generate+load SQLite"] = run_child(
        "load", args.rows, args.seed, f"sqlite:///{folder / 'bench.db'}"
    )
    if args.pg_url:
        measures["generate+load PostgreSQL"] = run_child("load", args.rows, args.seed, args.pg_url)
    else:
        with ThrowawayPostgres() as url:
            measures["generate+load PostgreSQL"] = run_child("load", args.rows, args.seed, url)
    if args.big_rows:
        (folder / "bench.duckdb").unlink(missing_ok=True)
        measures[f"memory run: {args.big_rows:,} fact rows -> DuckDB"] = run_child(
            "load", args.big_rows, args.seed, f"duckdb:///{folder / 'big.duckdb'}"
        )
    naive = run_child("naive", args.naive_rows)
    ours = run_child("customers", args.naive_rows, args.seed)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()

    print(
        f"{'measure':<44} {'rows':>12} {'seconds':>9} {'rows/s':>12} {'load s':>8} {'peak RSS':>10}"
    )
    for name, m in measures.items():
        load = f"{m['load_seconds']:.2f}" if "load_seconds" in m else "-"
        print(
            f"{name:<44} {m['rows']:>12,} {m['seconds']:>9.2f} {_rate(m):>12,.0f} {load:>8} {m['peak_rss'] / 2**20:>8.0f} MB"
        )
    print(
        f"{'(pool build, once per process)':<44} {'':>12} {measures['generate only']['pool_seconds']:>9.2f}"
    )
    print()
    print(f"{'customers (dim_customer)':<44} {'rows':>12} {'seconds':>9} {'rows/s':>12}")
    print(
        f"{'naive: one Faker call per field per row':<44} {naive['rows']:>12,} {naive['seconds']:>9.2f} {_rate(naive):>12,.0f}"
    )
    print(
        f"{'ours: seeded pools + numpy/Arrow':<44} {ours['rows']:>12,} {ours['seconds']:>9.2f} {_rate(ours):>12,.0f}"
    )
    speedup = _rate(ours) / _rate(naive)
    duck = _rate(measures["generate+load DuckDB"])
    print("\ngoal                                             measured         target   met")
    print(
        f"{'generate+load into DuckDB, whole schema':<48} {duck:>10,.0f} r/s  >= 500,000   {'yes' if duck >= 500_000 else 'NO'}"
    )
    print(
        f"{'speed-up over the naive way':<48} {speedup:>10,.0f} x    >= 100       {'yes' if speedup >= 100 else 'NO'}"
    )
    if args.big_rows:
        big = measures[f"memory run: {args.big_rows:,} fact rows -> DuckDB"]
        ok = big["peak_rss"] < GIB and args.big_rows >= 10_000_000
        print(
            f"{f'peak memory, {args.big_rows:,} fact rows':<48} {big['peak_rss'] / 2**20:>10,.0f} MB   < 1,024 MB   {'yes' if ok else 'NO'}"
        )


if __name__ == "__main__":
    main()
