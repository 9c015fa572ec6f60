"""Catalog extraction speed and the per-server session bound (issue 5).

1. 500 tables x 20 columns, a primary key each and 499 foreign keys, on PostgreSQL, DuckDB and
   SQLite: `extract_catalog` (one query per kind) versus SQLAlchemy's per-table reflection loop
   (`get_columns` / `get_pk_constraint` / `get_foreign_keys` per table), best of N, same run.
2. 50 sources (50 databases on one PostgreSQL server) in one `bulk_metadata_extraction` job with
   max_parallel 8: wall time and the most sessions ever open at once on that server, seen by
   SQLAlchemy's pool and by a pg_stat_activity sampler, against the per-server bound.

    .venv/bin/python benchmarks/metadata.py [--tables 500] [--sources 50] [--repeat 3]

Goals: <= 0.5 s per database and >= 10x faster than the per-table loop; 50 sources with
max_parallel 8 never above the per-server session bound (default 4).
A PostgreSQL server of its own is started in a temp dir (initdb; needs the postgresql package).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from sqlalchemy import create_engine, event, inspect, text  # noqa: E402
from sqlalchemy.pool import Pool  # noqa: E402

from prefect_ombudsman.metadata.extract import extract_catalog  # noqa: E402


def ddl(tables: int, schema: str | None, *, table_level_fk: bool = False) -> list[str]:
    """t0..tN: id PK, ref -> previous table, 18 more columns of mixed types (20 columns each).
    `table_level_fk`: the key as a FOREIGN KEY clause (MariaDB ignores a column's REFERENCES)."""
    s = f"{schema}." if schema else ""
    types = ["VARCHAR(40)", "NUMERIC(12,2)", "DATE", "INTEGER", "TIMESTAMP", "BOOLEAN"]
    out = []
    for i in range(tables):
        cols = ", ".join(f"c{j} {types[j % len(types)]}" for j in range(18))
        if table_level_fk and i:
            cols += f", FOREIGN KEY (ref) REFERENCES {s}t{i - 1}(id)"
            ref = "ref INTEGER"
        else:
            ref = f"ref INTEGER REFERENCES {s}t{i - 1}(id)" if i else "ref INTEGER"
        out.append(f"CREATE TABLE {s}t{i} (id INTEGER PRIMARY KEY, {ref}, {cols})")
    return out


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def reflection_loop(engine: Any, schema: str | None, tables: int, limit: int | None = None) -> int:
    insp = inspect(engine)  # a fresh Inspector: nothing cached from an earlier run
    n = 0
    for i in range(tables if limit is None else min(limit, tables)):
        name = f"t{i}"
        n += len(insp.get_columns(name, schema=schema))
        insp.get_pk_constraint(name, schema=schema)
        insp.get_foreign_keys(name, schema=schema)
    return n


def check(catalog: Any, tables: int) -> str:
    cols = sum(len(t.columns) for t in catalog.tables)
    pks = sum(bool(t.primary_key) for t in catalog.tables)
    fks = sum(len(t.foreign_keys) for t in catalog.tables)
    ok = (len(catalog.tables), cols, pks, fks) == (tables, tables * 20, tables, tables - 1)
    return f"{len(catalog.tables)} tables, {cols} columns, {pks} PKs, {fks} FKs{'' if ok else '  <-- WRONG'}"


def sqlite_floor(path: Path, catalog: Any, repeat: int) -> tuple[float, float]:
    """The least an extraction returning validated catalogs can spend on SQLite, in two parts:
    the columns' pragma rows fetched with the bare sqlite3 module (no SQLAlchemy, no dicts), and
    pydantic validating that many columns in one call (the catalog's tables as plain dicts)."""
    import sqlite3

    from pydantic import TypeAdapter

    from prefect_ombudsman.metadata.catalog import CatalogTable

    con = sqlite3.connect(path)
    sql = (
        'SELECT t.name, p.cid, p.name, p.type, p."notnull", p.dflt_value, p.pk '
        "FROM pragma_table_list t JOIN pragma_table_info(t.name, t.schema) p "
        "WHERE t.type = 'table' AND t.schema = 'main'"
    )
    fetch, _ = best_of(repeat, lambda: con.execute(sql).fetchall())
    con.close()
    plain = [t.model_dump(by_alias=True) for t in catalog.tables]
    adapter = TypeAdapter(list[CatalogTable])
    validate, _ = best_of(repeat, lambda: adapter.validate_python(plain))
    return fetch, validate


def part1(
    pg_url: str, tables: int, repeat: int, work: Path, maria_url: str | None = None
) -> list[tuple[str, float, str, str]]:
    rows = []
    pg = create_engine(pg_url)
    with pg.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS bench CASCADE; CREATE SCHEMA bench"))
        conn.execute(text(";\n".join(ddl(tables, "bench"))))
        conn.execute(text("ANALYZE"))
    sqlite = create_engine(f"sqlite:///{work / 'bench.db'}")
    with sqlite.begin() as conn:
        for statement in ddl(tables, None):
            conn.execute(text(statement))
    duck = create_engine(f"duckdb:///{work / 'bench.duckdb'}")
    with duck.begin() as conn:
        for statement in ddl(tables, None):
            conn.execute(text(statement))
    databases: list[tuple[str, Any, str | None]] = [
        ("PostgreSQL 15", pg, "bench"),
        ("DuckDB", duck, "main"),
        ("SQLite", sqlite, None),
    ]
    if maria_url:
        from prefect_ombudsman.connections import engine_for

        maria = engine_for(maria_url)
        with maria.begin() as conn:
            for statement in ddl(tables, "bench", table_level_fk=True):
                conn.execute(text(statement))
            conn.execute(text("ANALYZE TABLE " + ", ".join(f"bench.t{i}" for i in range(tables))))
        databases.append(("MariaDB 10.11", maria, "bench"))
    for label, engine, schema in databases:
        seconds, catalog = best_of(
            repeat, lambda e=engine, s=schema: extract_catalog(e, connection="bench", schema=s)
        )
        try:
            loop, _ = best_of(
                min(repeat, 2), lambda e=engine, s=schema: reflection_loop(e, s, tables)
            )
            loop_text = f"{loop * 1000:9.0f} ms"
            ratio = f"{loop / seconds:6.1f}x"
        except Exception as exc:
            first = str(exc).splitlines()[0][:70]
            sample = 20
            try:
                started = time.perf_counter()
                insp = inspect(engine)
                for i in range(sample):
                    insp.get_columns(f"t{i}", schema=schema)
                per = (time.perf_counter() - started) / sample
                loop_text = f"FAIL ({type(exc).__name__}: {first}); get_columns alone ~{per * tables * 1000:.0f} ms extrapolated"
                ratio = f"{per * tables / seconds:6.1f}x (vs get_columns alone)"
            except Exception:
                loop_text, ratio = f"FAIL ({first})", "n/a"
        rows.append((label, seconds, loop_text, ratio + "   " + check(catalog, tables)))
        if label == "SQLite":
            fetch, validate = sqlite_floor(work / "bench.db", catalog, repeat)
            rows.append(
                (
                    "  SQLite floor",
                    fetch + validate,
                    f"pragma rows {fetch * 1000:.0f} ms + validation {validate * 1000:.0f} ms",
                    f"(10x the loop would need <= {loop / 10 * 1000:.0f} ms)"
                    if loop_text[-2:] == "ms"
                    else "",
                )
            )
    for _, engine, _ in databases:
        engine.dispose()
    return rows


def part2(pg_url: str, sources: int, work: Path) -> dict[str, Any]:
    from prefect.testing.utilities import prefect_test_harness

    from prefect_ombudsman.flows.metadata import bulk_metadata_extraction
    from prefect_ombudsman.metadata.sessions import sessions_per_server

    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE src_template"))
    tmpl = create_engine(pg_url.rsplit("/", 1)[0] + "/src_template")
    with tmpl.begin() as conn:
        conn.execute(text(";\n".join(ddl(20, "public"))))
    tmpl.dispose()
    with admin.connect() as conn:
        for i in range(sources):
            conn.execute(text(f"CREATE DATABASE src_{i} TEMPLATE src_template"))

    lock = threading.Lock()
    active: set[int] = set()
    peak = {"pool": 0, "pg_stat_activity": 0}

    def checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if getattr(getattr(dbapi_conn, "info", None), "dbname", "").startswith("src_"):
            with lock:
                active.add(id(record))
                peak["pool"] = max(peak["pool"], len(active))

    def checkin(dbapi_conn: Any, record: Any) -> None:
        with lock:
            active.discard(id(record))

    stop = threading.Event()

    over: list[Any] = []

    def sampler() -> None:
        with admin.connect() as conn:
            while not stop.wait(0.005):
                rows = conn.execute(
                    text(
                        "SELECT pid, datname, state, backend_start, clock_timestamp() FROM pg_stat_activity "
                        "WHERE datname LIKE 'src\\_%'"
                    )
                ).all()
                peak["pg_stat_activity"] = max(peak["pg_stat_activity"], len(rows))
                if len(rows) > sessions_per_server() and len(over) < 3:
                    over.append(rows)

    event.listen(Pool, "checkout", checkout)
    event.listen(Pool, "checkin", checkin)
    base = pg_url.rsplit("/", 1)[0]
    items = [{"connection": f"{base}/src_{i}", "schema_name": "public"} for i in range(sources)]
    thread = threading.Thread(target=sampler, daemon=True)
    with prefect_test_harness(server_startup_timeout=180):
        thread.start()
        started = time.perf_counter()
        state = bulk_metadata_extraction(
            items=items,
            parallel_execution=True,
            max_parallel=8,
            projects_dir=str(work / "projects"),
            return_state=True,
        )
        wall = time.perf_counter() - started
        stop.set()
        thread.join()
        summary = state.result(raise_on_failure=False)
    event.remove(Pool, "checkout", checkout)
    event.remove(Pool, "checkin", checkin)
    admin.dispose()
    ops = summary["operations"]
    return {
        "status": summary["status"],
        "completed": summary["completed"],
        "wall": wall,
        "bound": sessions_per_server(),
        "peak_pool": peak["pool"],
        "peak_pg": peak["pg_stat_activity"],
        "peak_reported": max(
            op["result"]["session_limit"]["in_use_at_start"] for op in ops if op.get("result")
        ),
        "over": over,
        "mean_extract_ms": sum(op["result"]["duration_ms"] for op in ops if op.get("result"))
        / max(1, len(ops)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=500)
    parser.add_argument("--sources", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--mariadb", action="store_true", help="Also MariaDB (a throwaway server of its own)."
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ombudsman-bench-md-"))
    # the benchmarks' shared throwaway servers
    from comparison import ThrowawayMariaDB, ThrowawayPostgres

    try:
        with ThrowawayPostgres("-c max_connections=200") as url:
            if args.mariadb:
                with ThrowawayMariaDB() as maria_url:
                    report(url, args, work, maria_url)
            else:
                report(url, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(url: str, args: argparse.Namespace, work: Path, maria_url: str | None = None) -> None:
    print(
        f"Catalog of {args.tables} tables x 20 columns, 1 PK each, {args.tables - 1} FKs (best of {args.repeat})"
    )
    print(
        f"{'database':<14} {'extract_catalog':>16}   {'per-table reflection loop':<28} speed-up   catalog"
    )
    for label, seconds, loop_text, rest in part1(url, args.tables, args.repeat, work, maria_url):
        flag = "" if label.startswith(" ") else "ok" if seconds <= 0.5 else "SLOW"
        print(f"{label:<14} {seconds * 1000:12.0f} ms {flag:<4} {loop_text:<28} {rest}")
    print("\nGoals: <= 500 ms per database; >= 10x faster than the per-table loop.\n")
    result = part2(url, args.sources, work)
    print(
        f"{args.sources} sources (databases) on one PostgreSQL server, one job, max_parallel 8, "
        f"per-server bound {result['bound']}:"
    )
    print(
        f"  job {result['status']}: {result['completed']} completed in {result['wall']:.1f} s "
        f"(mean extraction {result['mean_extract_ms']:.0f} ms)"
    )
    print(
        f"  most sessions open at once: {result['peak_pool']} (SQLAlchemy pool events), "
        f"{result['peak_pg']} (pg_stat_activity sampler), {result['peak_reported']} (reported by the extractions)"
    )
    ok = max(result["peak_pool"], result["peak_reported"]) <= result["bound"]
    print(
        f"  goal (sessions this process holds): never above {result['bound']} -> {'ok' if ok else 'EXCEEDED'}"
    )
    for rows in result["over"]:
        print(
            "  pg_stat_activity above the bound at one sample (pid, db, state, backend_start, now):"
        )
        for row in rows:
            print("    ", tuple(str(v) for v in row))


if __name__ == "__main__":
    main()
