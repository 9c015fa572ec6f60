"""What a user waits for: whole `ombudsman` commands, first run and warm (issue 14 items 1-2).

In a fresh Prefect home and projects folder (no PREFECT_API_URL): `--help`, trivial jobs
(`run custom noop` with 1 and with 5 noop operations, test operations `make setup` installs),
`run compare` of one table between two small DuckDB files (20,000 rows, 20 differences) and
`jobs list`, in these modes:

- **warm service**: the default; the shared local server and the warm execution service run, the
  command is a thin client;
- **in process**: the shared local server runs, the job runs in the command
  (`OMBUDSMAN_EXEC_SERVICE=0`, the behaviour before the execution service);
- **temporary server**: Prefect's temporary server per command (`--no-daemon`, the behaviour before
  the shared server; `--no-temporary` leaves it out);
- **first run**: nothing running on a fresh Prefect home (server and service start).

Commands of the modes are interleaved, so machine load hits them alike. Everything started is
stopped at the end.

    .venv/bin/python benchmarks/cli_startup.py [--runs 3] [--demo] [--no-temporary]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OMBUDSMAN = str(Path(sys.executable).parent / "ombudsman")


def timed(env: dict[str, str], *args: str) -> float | None:
    """Seconds the whole command took (None: it failed, e.g. the temporary server timed out; a
    comparison that finds the planted differences exits 1 with its summary)."""
    start = time.perf_counter()
    done = subprocess.run([OMBUDSMAN, *args], env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 and not (done.returncode == 1 and done.stdout.startswith("{")):
        print(f"ombudsman {' '.join(args)} exited {done.returncode}: {done.stderr[-300:]}")
        return None
    return elapsed


def row(label: str, values: list[float | None]) -> str:
    ok = [v for v in values if v is not None]
    failed = f" ({len(values) - len(ok)} of {len(values)} failed)" if len(ok) < len(values) else ""
    if not ok:
        return f"| {label}{failed} | | | |"
    return f"| {label}{failed} | {min(ok):.2f} | {statistics.median(ok):.2f} | {max(ok):.2f} |"


def duckdb_pair(folder: Path, rows: int = 20_000, differences: int = 20) -> tuple[str, str]:
    """Two DuckDB files with table `orders`; the target misses / changes a few rows."""
    import duckdb

    urls = []
    for name, drop in (("source", 0), ("target", differences)):
        path = folder / f"{name}.duckdb"
        with duckdb.connect(str(path)) as conn:
            conn.execute(
                "CREATE TABLE orders AS SELECT i AS id, i * 10 AS amount, 'c' || (i % 97) AS code "
                f"FROM range({rows}) t(i)"
            )
            if drop:
                conn.execute(f"DELETE FROM orders WHERE id < {drop // 2}")
                conn.execute(f"UPDATE orders SET amount = -1 WHERE id >= {rows - drop // 2}")
        urls.append(f"duckdb:///{path}")
    return urls[0], urls[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="warm runs per command")
    parser.add_argument("--demo", action="store_true", help="also time `ombudsman demo`")
    parser.add_argument(
        "--no-temporary", action="store_true", help="leave out Prefect's temporary server"
    )
    parser.add_argument(
        "--temporary-timeout",
        type=float,
        help="PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS for the temporary server "
        "(default: Prefect's 20 s, which a busy machine misses)",
    )
    options = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="localserver-cli-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL",)}
    env.update(PREFECT_HOME=str(root / "home"), OMBUDSMAN_PROJECTS_DIR=str(root / "projects"))
    # the temporary server gets a Prefect home of its own, so the two never share a database
    temporary = env | {"OMBUDSMAN_NO_DAEMON": "1", "PREFECT_HOME": str(root / "home-temporary")}
    if options.temporary_timeout:
        temporary["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = str(
            options.temporary_timeout
        )
    noop = ("run", "custom", "noop", "--json")
    noop5 = ("run", "custom", "noop", "--repeat", "5", "--json")
    (root / "projects" / "data").mkdir(parents=True)
    source, target = duckdb_pair(root / "projects" / "data")  # inside the projects root
    compare = ("run", "compare", "--table", "orders", "--key", "id", "--json")
    compare += ("--source-url", source, "--target-url", target)
    in_process = env | {"OMBUDSMAN_EXEC_SERVICE": "0"}
    first_homes = [env]
    results: dict[str, list[float | None]] = {}

    def add(label: str, seconds: float | None) -> None:
        results.setdefault(label, []).append(seconds)
        print(f"{label}: {seconds if seconds is None else round(seconds, 2)} s", file=sys.stderr)

    def fresh(tag: str) -> dict[str, str]:
        fresh_env = env | {"PREFECT_HOME": str(root / f"home-{tag}")}
        first_homes.append(fresh_env)
        return fresh_env

    try:
        add("--help", timed(env, "--help"))
        # first runs on fresh homes: the servers migrate a new database, the service imports
        if not options.no_temporary:
            add("run custom noop, first run, temporary server", timed(temporary, *noop))
        add("run custom noop, first run, warm service (server + service start)", timed(env, *noop))
        add("run compare, first run, warm service", timed(fresh("c"), *compare))
        add(
            "run compare, first run, in process",
            timed(fresh("ci") | {"OMBUDSMAN_EXEC_SERVICE": "0"}, *compare),
        )
        if options.demo:
            add("demo, first run, shared local server (server warm)", timed(env, "demo", "--json"))
        for _ in range(options.runs):
            if not options.no_temporary:
                add("run custom noop, temporary server", timed(temporary, *noop))
            add("run custom noop, in process", timed(in_process, *noop))
            add("run custom noop, warm service", timed(env, *noop))
            add("run custom noop x5, in process", timed(in_process, *noop5))
            add("run custom noop x5, warm service", timed(env, *noop5))
            add("run compare (DuckDB 20k rows), in process", timed(in_process, *compare))
            add("run compare (DuckDB 20k rows), warm service", timed(env, *compare))
            if not options.no_temporary:
                add("jobs list, temporary server", timed(temporary, "jobs", "list", "--json"))
            add("jobs list, shared local server", timed(env, "jobs", "list", "--json"))
            add("--help", timed(env, "--help"))
            if options.demo:
                add("demo, temporary server", timed(temporary, "demo", "--json"))
                add("demo, shared local server", timed(env, "demo", "--json"))
    finally:
        for home_env in first_homes:
            subprocess.run(
                [OMBUDSMAN, "server", "stop"], env=home_env, capture_output=True, check=False
            )
    load = os.getloadavg()
    print(f"\nseconds, whole command; load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print("| command | min | median | max |\n|---|---|---|---|")
    for label, values in results.items():
        print(row(label, values))


if __name__ == "__main__":
    main()
