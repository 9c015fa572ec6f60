"""What a user waits for: whole `ombudsman` commands, first run and warm (issue 14 items 1-2).

In a fresh Prefect home and projects folder (no PREFECT_API_URL): `--help`, a trivial job
(`run custom noop`, one of the test operations `make setup` installs) and `jobs list`, through
the shared local server (the default) and through Prefect's temporary server per command
(`--no-daemon`, the behaviour before the shared server);
with `--demo` also `ombudsman demo`. Commands of the two modes are interleaved, so machine load
hits both alike. The local server is stopped at the end.

    .venv/bin/python benchmarks/cli_startup.py [--runs 3] [--demo]
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
    """Seconds the whole command took (None: it failed, e.g. the temporary server timed out)."""
    start = time.perf_counter()
    done = subprocess.run([OMBUDSMAN, *args], env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        print(f"ombudsman {' '.join(args)} exited {done.returncode}: {done.stderr[-300:]}")
        return None
    return elapsed


def row(label: str, values: list[float | None]) -> str:
    ok = [v for v in values if v is not None]
    failed = f" ({len(values) - len(ok)} of {len(values)} failed)" if len(ok) < len(values) else ""
    if not ok:
        return f"| {label}{failed} | | | |"
    return f"| {label}{failed} | {min(ok):.2f} | {statistics.median(ok):.2f} | {max(ok):.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="warm runs per command")
    parser.add_argument("--demo", action="store_true", help="also time `ombudsman demo`")
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
    results: dict[str, list[float | None]] = {}

    def add(label: str, seconds: float | None) -> None:
        results.setdefault(label, []).append(seconds)
        print(f"{label}: {seconds if seconds is None else round(seconds, 2)} s", file=sys.stderr)

    try:
        add("--help", timed(env, "--help"))
        # first runs on fresh homes: both servers migrate a new database
        add("run custom noop, first run, temporary server", timed(temporary, *noop))
        add("run custom noop, first run, shared local server", timed(env, *noop))
        if options.demo:
            add("demo, first run, shared local server (server warm)", timed(env, "demo", "--json"))
        for _ in range(options.runs):
            add("run custom noop, warm, temporary server", timed(temporary, *noop))
            add("run custom noop, warm, shared local server", timed(env, *noop))
            add("jobs list, temporary server", timed(temporary, "jobs", "list", "--json"))
            add("jobs list, shared local server", timed(env, "jobs", "list", "--json"))
            add("--help", timed(env, "--help"))
            if options.demo:
                add("demo, temporary server", timed(temporary, "demo", "--json"))
                add("demo, shared local server", timed(env, "demo", "--json"))
    finally:
        subprocess.run([OMBUDSMAN, "server", "stop"], env=env, capture_output=True, check=False)
    load = os.getloadavg()
    print(f"\nseconds, whole command; load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print("| command | min | median | max |\n|---|---|---|---|")
    for label, values in results.items():
        print(row(label, values))


if __name__ == "__main__":
    main()
