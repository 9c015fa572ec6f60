"""Row comparison benchmark: ours vs reladiff (`-a hashdiff`) on the same data (issue 6).

    .venv/bin/python benchmarks/comparison.py --rows 1000000 --engines duckdb postgresql

Builds, once per size, a 10-column source table and two targets (identical, and with 100
differences: 40 changed, 30 missing, 30 extra) in two separate DuckDB files and two separate
PostgreSQL databases, then times in fresh processes: our comparison (`--ours`: auto, the
engine's native hash on same-engine pairs; canonical, the cross-engine path, i.e. the arithmetic
row hash; md5, the canonical MD5-of-text hash it replaced), reladiff, and the floor (one
arithmetic canonical-hash scan per side, both sides at once). Prints wall time, peak RSS, rows
transferred and the differences found. reladiff lives only in a separate venv
(`--reladiff /tmp/bench-venv/bin/reladiff`; create it with `python -m venv /tmp/bench-venv &&
/tmp/bench-venv/bin/pip install reladiff duckdb==2.0.1 psycopg2-binary`).
PostgreSQL: `--pg-url postgresql+psycopg://user@host:port/postgres`, else a throwaway server is
started with initdb in a temp dir (Debian's postgresql package) and stopped at the end.
MariaDB (`--engines ... mariadb`): a throwaway server started with mariadb-install-db in a temp
dir (Debian's mariadb-server package); reladiff reaches it with `mysql://` (its venv needs
`pip install mysql-connector-python`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

COLUMNS = ["id", "qty", "amount", "name", "sku", "ts", "d", "flag", "ratio", "region"]
DUCK_SELECT = """
    SELECT i::BIGINT AS id, (i * 7) % 1000 AS qty, ((i % 100000) / 100.0)::DECIMAL(12,2) AS amount,
           'customer_' || (i % 50000) AS name, 'SKU-' || (i % 997) AS sku,
           TIMESTAMP '2020-01-01' + to_seconds(i % 100000000) AS ts, DATE '2020-01-01' + (i % 1500)::INT AS d,
           i % 2 = 0 AS flag, (i % 1000) / 8.0::DOUBLE AS ratio, ((i * 31) % 7)::INT AS region
    FROM range({n}) r(i)"""
PG_SELECT = """
    SELECT i::BIGINT AS id, (i * 7) % 1000 AS qty, ((i % 100000) / 100.0)::NUMERIC(12,2) AS amount,
           'customer_' || (i % 50000) AS name, 'SKU-' || (i % 997) AS sku,
           TIMESTAMP '2020-01-01' + (i % 100000000) * INTERVAL '1 second' AS ts, DATE '2020-01-01' + (i % 1500)::INT AS d,
           i % 2 = 0 AS flag, ((i % 1000) / 8.0)::DOUBLE PRECISION AS ratio, ((i * 31) % 7)::INT AS region
    FROM generate_series(0, {n} - 1) AS g(i)"""
MARIA_SELECT = """
    SELECT seq AS id, (seq * 7) % 1000 AS qty, CAST((seq % 100000) / 100.0 AS DECIMAL(12,2)) AS amount,
           CONCAT('customer_', seq % 50000) AS name, CONCAT('SKU-', seq % 997) AS sku,
           TIMESTAMP '2020-01-01 00:00:00' + INTERVAL (seq % 100000000) SECOND AS ts,
           DATE '2020-01-01' + INTERVAL (seq % 1500) DAY AS d, seq % 2 = 0 AS flag,
           CAST((seq % 1000) / 8.0 AS DOUBLE) AS ratio, CAST((seq * 31) % 7 AS SIGNED) AS region
    FROM seq_0_to_{last}"""
# 100 differences: 40 changed, 30 missing in target, 30 extra in target
DIFF_SQL = [
    "UPDATE {t} SET name = name || '!' WHERE id % {step} = 1 AND id < {step} * 40",
    "DELETE FROM {t} WHERE id % {step} = 2 AND id < {step} * 30",
    "INSERT INTO {t} SELECT id + {n}, qty, amount, name, sku, ts, d, flag, ratio, region FROM {t} "
    "WHERE id % {step} = 5 AND id < {step} * 30",
]


# ----------------------------------------------------------------------------- data


def build_duckdb(folder: Path, n: int) -> tuple[str, str]:
    import duckdb

    src, tgt = folder / f"src_{n}.duckdb", folder / f"tgt_{n}.duckdb"
    if not (src.exists() and tgt.exists()):
        for path in (src, tgt):
            path.unlink(missing_ok=True)
        con = duckdb.connect(str(src))
        con.execute("SET enable_progress_bar = false")
        con.execute("CREATE TABLE t AS " + DUCK_SELECT.format(n=n))
        con.close()
        con = duckdb.connect(str(tgt))
        con.execute("SET enable_progress_bar = false")
        con.execute("CREATE TABLE t_same AS " + DUCK_SELECT.format(n=n))
        con.execute("CREATE TABLE t_diff AS " + DUCK_SELECT.format(n=n))
        for sql in DIFF_SQL:
            con.execute(sql.format(t="t_diff", n=n, step=n // 100))
        con.close()
    return f"duckdb:///{src}", f"duckdb:///{tgt}"


def build_postgres(base_url: str, n: int) -> tuple[str, str]:
    import psycopg

    plain = base_url.replace("postgresql+psycopg://", "postgresql://")
    root, _, _ = plain.rpartition("/")
    names = (f"bench_src_{n}", f"bench_tgt_{n}")
    with psycopg.connect(plain, autocommit=True) as admin:
        existing = {r[0] for r in admin.execute("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                admin.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(f"{root}/{names[0]}", autocommit=True) as con:
        if not con.execute("SELECT to_regclass('t')").fetchone()[0]:
            con.execute("CREATE TABLE t AS " + PG_SELECT.format(n=n))
            con.execute("ALTER TABLE t ADD PRIMARY KEY (id)")
            con.execute("VACUUM ANALYZE t")
    with psycopg.connect(f"{root}/{names[1]}", autocommit=True) as con:
        if not con.execute("SELECT to_regclass('t_diff')").fetchone()[0]:
            for table in ("t_same", "t_diff"):
                con.execute(f"CREATE TABLE {table} AS " + PG_SELECT.format(n=n))
            for sql in DIFF_SQL:
                con.execute(sql.format(t="t_diff", n=n, step=n // 100))
            for table in ("t_same", "t_diff"):
                con.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
                con.execute(f"VACUUM ANALYZE {table}")
    base = base_url.rpartition("/")[0]
    return f"{base}/{names[0]}", f"{base}/{names[1]}"


def build_mariadb(base_url: str, n: int) -> tuple[str, str]:
    """Source `bench_src_<n>.t`, targets `bench_tgt_<n>.t_same` / `t_diff` (databases)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(base_url, isolation_level="AUTOCOMMIT")
    src, tgt = f"bench_src_{n}", f"bench_tgt_{n}"
    columns = (
        "(id BIGINT PRIMARY KEY, qty BIGINT, amount DECIMAL(12,2), "
        "name VARCHAR(40) COLLATE utf8mb4_bin, sku VARCHAR(20) COLLATE utf8mb4_bin, ts DATETIME, "
        "d DATE, flag BOOLEAN, ratio DOUBLE, region INT)"
    )
    with engine.connect() as con:
        for table in (f"{src}.t", f"{tgt}.t_same", f"{tgt}.t_diff"):
            schema = table.split(".")[0]
            con.execute(text(f"CREATE DATABASE IF NOT EXISTS {schema} CHARACTER SET utf8mb4"))
            found = con.execute(
                text("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = :s "
                     "AND table_name = :t"), {"s": schema, "t": table.split(".")[1]},
            ).scalar()  # fmt: skip
            if found:
                continue
            con.execute(text(f"CREATE TABLE {table} {columns}"))
            con.execute(text(f"INSERT INTO {table} " + MARIA_SELECT.format(last=n - 1)))
            if table.endswith("t_diff"):
                for sql in DIFF_SQL:
                    con.execute(text(sql.format(t=table, n=n, step=n // 100).replace(
                        "name || '!'", "CONCAT(name, '!')")))  # fmt: skip
            con.execute(text(f"ANALYZE TABLE {table}"))
    engine.dispose()
    base = base_url.rpartition("/")[0]
    return f"{base}/{src}", f"{base}/{tgt}"


class ThrowawayMariaDB:
    """mariadb-install-db + mariadbd in a temp dir on a free port, 127.0.0.1 only."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ombudsman-bench-maria-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.user = ["--user=root"] if os.geteuid() == 0 else []
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        import pymysql

        data, socket_path = self.root / "data", self.root / "mysqld.sock"
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", *self.user,
                        "--auth-root-authentication-method=socket", "--skip-test-db"],
                       check=True, capture_output=True)  # fmt: skip
        with open(self.root / "log", "ab") as log:
            self.process = subprocess.Popen(
                ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}", *self.user,
                 f"--socket={socket_path}", f"--port={self.port}", "--bind-address=127.0.0.1",
                 "--skip-log-bin", "--innodb-buffer-pool-size=512M",
                 "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
                 "--performance-schema=OFF", "--skip-name-resolve", "--character-set-server=utf8mb4",
                 "--max-connections=300"],
                stdout=log, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                admin = pymysql.connect(unix_socket=str(socket_path), user="root", autocommit=True)
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(
                        "MariaDB did not start: " + (self.root / "log").read_text()
                    ) from None
                time.sleep(0.2)
        with admin.cursor() as cursor:
            cursor.execute("CREATE USER 'bench'@'%' IDENTIFIED BY 'bench'")
            cursor.execute("GRANT ALL PRIVILEGES ON *.* TO 'bench'@'%'")
            cursor.execute("CREATE DATABASE bench")
        admin.close()
        return f"mysql+pymysql://bench:bench@127.0.0.1:{self.port}/bench"

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=120)
        shutil.rmtree(self.root, ignore_errors=True)


class ThrowawayPostgres:
    """initdb + pg_ctl in a temp dir on a free port (as tests/conftest.py does)."""

    def __init__(self, extra_options: str = "") -> None:
        self.extra_options = extra_options  # more `-c name=value` server settings
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
        if not bins:
            raise SystemExit("PostgreSQL is not installed; give --pg-url")
        self.bin = bins[-1]
        self.root = Path(tempfile.mkdtemp(prefix="ombudsman-bench-pg-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def __enter__(self) -> str:
        if self.prefix:
            shutil.chown(self.root, "postgres", "postgres")
        data = self.root / "data"
        subprocess.run([*self.prefix, str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--no-locale"], check=True, capture_output=True)  # fmt: skip
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c shared_buffers=512MB "
                   f"{self.extra_options}")  # fmt: skip
        subprocess.run([*self.prefix, str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.root / "log"), "-w",
                        "-o", options, "start"], check=True, capture_output=True)  # fmt: skip
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def __exit__(self, *exc: Any) -> None:
        subprocess.run([*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w",
                        "stop"], capture_output=True)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


# ----------------------------------------------------------------------------- measured runs (child processes)


def child_ours(src: str, tgt: str, table: str, target_table: str, mode: str) -> dict[str, Any]:
    from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
    from prefect_ombudsman.validation.comparison import ComparisonOptions, compare_tables

    started = time.perf_counter()
    outcome = compare_tables(
        get_engine(spec_from_url(src)),
        get_engine(spec_from_url(tgt)),
        table,
        target_table,
        options=ComparisonOptions(
            key_columns=["id"], hash_mode=mode, sample_size=100, memory_limit_mb=32
        ),
    )
    r, s = outcome.result, outcome.stats
    phases = ", ".join(f"{k} {v:.2f}" for k, v in s.seconds.items() if k != "total")
    return {
        "inner_s": round(time.perf_counter() - started, 3),
        "found": f"{r.missing_in_target}/{r.extra_in_target}/{r.changed}",
        "rows_transferred": s.rows_transferred,
        "detail": f"{s.hash_mode} hash ({s.row_hash}), buckets by {s.bucket_by}: {s.failing_buckets}/{s.buckets} failing, "
        f"{s.scans_per_side} scans/side ({phases} s)",
    }


def child_floor(src: str, tgt: str, table: str, target_table: str) -> dict[str, Any]:
    from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
    from prefect_ombudsman.validation.comparison import table_fingerprint

    out: dict[str, Any] = {}

    def scan(label: str, url: str, name: str) -> None:
        t0 = time.perf_counter()
        table_fingerprint(get_engine(spec_from_url(url)), name, hash_mode="arithmetic")
        out[label] = round(time.perf_counter() - t0, 3)

    started = time.perf_counter()
    threads = [
        threading.Thread(target=scan, args=a)
        for a in (("src", src, table), ("tgt", tgt, target_table))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "inner_s": round(time.perf_counter() - started, 3),
        "rows_transferred": 2,
        "detail": f"per side {out}",
    }


def measure(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, float, str, str]:
    """(wall seconds, peak RSS MiB, stdout, stderr) of one child process; the peak is the largest
    VmHWM of its process tree, sampled from /proc (`TreePeak`: ru_maxrss would carry this large
    process's own peak into every child it forks)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
    )
    peak = TreePeak(proc.pid, None).start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    return wall, peak.stop(), out, err


# ----------------------------------------------------------------------------- peak memory
# Shared with peers.py: the largest peak resident set of a command's process tree.


def parent_pids() -> dict[int, int]:
    """pid -> parent pid of every process (/proc/<pid>/stat: the field after the state; the name
    before it, in parentheses, may hold spaces and parentheses)."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone since the scan
    return parents


def descendants(roots: list[int], parents: dict[int, int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a process in KiB; 0 when it is gone or holds no memory (a zombie)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class TreePeak:
    """The largest VmHWM among `pid`, its descendants and those of `service` (not `service`
    itself), sampled every 50 ms in a thread from `start()` to `stop()` (MiB)."""

    def __init__(self, pid: int, service: int | None) -> None:
        self.pid, self.service = pid, service
        self.peaks: dict[int, int] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            roots = [self.pid] + ([self.service] if self.service else [])
            for pid in {self.pid} | descendants(roots, parent_pids()):
                self.peaks[pid] = max(self.peaks.get(pid, 0), peak_rss_kib(pid))
            if self.done.wait(0.05):
                return

    def start(self) -> TreePeak:
        self.thread.start()
        return self

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return max(self.peaks.values(), default=0) / 1024


def reladiff_url(url: str) -> str:
    return (
        url.replace("postgresql+psycopg://", "postgresql://")
        .replace("duckdb:///", "duckdb://")
        .replace("mysql+pymysql://", "mysql://")
    )


def reladiff_command(binary: str, src: str, tgt: str, table: str, target_table: str) -> list[str]:
    return [binary, reladiff_url(src), table, reladiff_url(tgt), target_table, "-k", "id",
            *[a for c in COLUMNS[1:] for a in ("-c", c)], "-a", "hashdiff", "--stats"]  # fmt: skip


def reladiff_found(out: str, err: str) -> str:
    """missing/extra/changed from reladiff's --stats output (or its last error line)."""
    numbers = {}
    for line in out.splitlines():
        for marker, key in (
            ("exclusive to table A", "missing"),
            ("exclusive to table B", "extra"),
            ("rows updated", "changed"),
        ):
            if marker in line:
                numbers[key] = line.split()[0]
    if not numbers and err.strip():
        return "error: " + err.strip().splitlines()[-1][:120]
    return (
        f"{numbers.get('missing', '?')}/{numbers.get('extra', '?')}/{numbers.get('changed', '?')}"
    )


def run_reladiff(binary: str, src: str, tgt: str, table: str, target_table: str) -> dict[str, Any]:
    wall, rss, out, err = measure(reladiff_command(binary, src, tgt, table, target_table))
    return {
        "wall_s": round(wall, 2),
        "peak_mib": round(rss),
        "found": reladiff_found(out, err),
        "rows_transferred": "n/a",
        "detail": "",
    }


def run_child(kind: str, *args: str) -> dict[str, Any]:
    wall, rss, out, err = measure([sys.executable, __file__, "--child", kind, *args])
    try:
        data = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {
            "wall_s": round(wall, 2),
            "peak_mib": round(rss),
            "found": "error: " + err.strip()[-200:],
        }
    return {"wall_s": round(wall, 2), "peak_mib": round(rss), **data}


def print_goals(rows_out: list[tuple[str, str, dict[str, Any], float]]) -> None:
    """Ours (auto) against the issue's goals: identical <= 1.5x floor, 100 diffs <= 0.33x reladiff,
    peak memory <= 256 MiB, every difference found (30/30/40); ours (canonical), the cross-engine
    path, with 100 diffs <= 0.2x reladiff (issue 14)."""
    cases: dict[str, dict[str, dict[str, Any]]] = {}
    for label, tool, r, _ in rows_out:
        cases.setdefault(label, {})[tool] = r
    print("\ngoals (ours auto):")
    for label, runs in cases.items():
        ours, floor, rel = (
            runs.get("ours (auto)", {}),
            runs.get("floor (1 canonical scan/side)", {}),
            runs.get("reladiff -a hashdiff", {}),
        )
        canonical = runs.get("ours (canonical)", {})
        if not label.endswith(" 0 diffs") and canonical.get("wall_s") and rel.get("wall_s"):
            ratio = canonical["wall_s"] / rel["wall_s"]
            print(f"{label:34} ours canonical {canonical['wall_s']:>7.2f} s = {ratio:.2f}x reladiff "
                  f"({'ok' if ratio <= 0.2 else 'MISSED'} <= 0.2x)  found {canonical.get('found')}")  # fmt: skip
        wall, mib = ours.get("wall_s"), ours.get("peak_mib")
        if wall is None:
            continue
        identical = label.endswith(" 0 diffs")
        parts = [f"{label:34} ours {wall:>7.2f} s"]
        if identical and floor.get("wall_s"):
            ratio = wall / floor["wall_s"]
            parts.append(f"= {ratio:.2f}x floor ({'ok' if ratio <= 1.5 else 'MISSED'} <= 1.5x)")
        if not identical and isinstance(rel.get("wall_s"), float):
            ratio = wall / rel["wall_s"]
            parts.append(
                f"= {ratio:.2f}x reladiff ({'ok' if ratio <= 0.33 else 'MISSED'} <= 0.33x)"
            )
        expected = "0/0/0" if identical else "30/30/40"
        parts.append(
            f"found {ours.get('found')} ({'ok' if ours.get('found') == expected else 'MISSED'})"
        )
        parts.append(
            f"peak {mib} MiB ({'ok' if mib is not None and mib <= 256 else 'MISSED'} <= 256)"
        )
        print("  ".join(parts))  # fmt: skip


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["duckdb", "postgresql"],
        choices=["duckdb", "postgresql", "mariadb"],
    )
    parser.add_argument("--diffs", type=int, nargs="+", default=[0, 100], choices=[0, 100])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "ombudsman-bench-data"
    )
    parser.add_argument("--pg-url", default=None)
    parser.add_argument(
        "--reladiff",
        default="/tmp/ombudsman-peers/venvs/reladiff/bin/reladiff",
        help="reladiff in its own venv (benchmarks/peers.py creates this one; install "
        "mysql-connector-python into it for MariaDB).",
    )
    parser.add_argument(
        "--ours",
        nargs="+",
        default=["auto", "canonical"],
        choices=["auto", "canonical", "md5"],
        help="Our runs: auto (native on same-engine pairs), canonical (cross-engine path: the "
        "arithmetic row hash), md5 (the canonical MD5-of-text hash).",
    )
    parser.add_argument(
        "--skip-canonical", action="store_true", help="Same as --ours auto (kept for old commands)."
    )
    parser.add_argument("--skip-floor", action="store_true", help="No floor run.")
    parser.add_argument("--skip-reladiff", action="store_true", help="No reladiff run.")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_ours(*rest) if kind == "ours" else child_floor(*rest)
        print(json.dumps(result))
        return
    args.data_dir.mkdir(parents=True, exist_ok=True)
    server = ThrowawayPostgres() if "postgresql" in args.engines and not args.pg_url else None
    pg_url = server.__enter__() if server else args.pg_url
    maria = ThrowawayMariaDB() if "mariadb" in args.engines else None
    try:
        maria_url = maria.__enter__() if maria else ""
        rows_out: list[tuple[str, str, dict[str, Any], float]] = []
        for n in args.rows:
            for engine in args.engines:
                t0 = time.perf_counter()
                if engine == "duckdb":
                    src, tgt = build_duckdb(args.data_dir, n)
                elif engine == "mariadb":
                    src, tgt = build_mariadb(maria_url, n)
                else:
                    src, tgt = build_postgres(pg_url, n)
                print(
                    f"# data {engine} {n:,} rows ready in {time.perf_counter() - t0:.1f} s",
                    flush=True,
                )
                for diffs in args.diffs:
                    target_table = "t_diff" if diffs else "t_same"
                    label = f"{engine} {n:,} rows, {diffs} diffs"
                    runs = []
                    if not args.skip_floor:
                        runs.append(
                            (
                                "floor (1 canonical scan/side)",
                                run_child("floor", src, tgt, "t", target_table),
                            )
                        )
                    modes = ["auto"] if args.skip_canonical else args.ours
                    for mode in modes:
                        runs.append(
                            (f"ours ({mode})", run_child("ours", src, tgt, "t", target_table, mode))
                        )
                    if Path(args.reladiff).exists() and not args.skip_reladiff:
                        runs.append(
                            (
                                "reladiff -a hashdiff",
                                run_reladiff(args.reladiff, src, tgt, "t", target_table),
                            )
                        )
                    load = os.getloadavg()[0]
                    for tool, r in runs:
                        rows_out.append((label, tool, r, load))
                        print(f"{label:34} {tool:30} wall {r.get('wall_s', '?'):>7} s  peak {r.get('peak_mib', '?'):>5} MiB  "
                              f"rows {r.get('rows_transferred', '?'):>8}  found {r.get('found', '-'):>12}  load {load:.1f}  "
                              f"{r.get('detail', '')}", flush=True)  # fmt: skip
        print(
            "\nfound = missing in target / extra in target / changed (reladiff: from its --stats); "
            "load = 1-minute load average after the case (2-core machine)."
        )
        print_goals(rows_out)
    finally:
        if maria:
            maria.__exit__(None, None, None)
        if server:
            server.__exit__(None, None, None)


if __name__ == "__main__":
    main()
