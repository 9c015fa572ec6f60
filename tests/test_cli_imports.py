"""Lean start-up: `ombudsman --help` and `ombudsman jobs list` load no engine (DuckDB, Arrow,
numpy, pandas, Faker, SQLAlchemy and its drivers, Snowflake) and not Prefect's server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# top-level packages (and Prefect's server package) a command that only reads jobs never needs
FORBIDDEN = (
    "duckdb",
    "duckdb_engine",
    "numpy",
    "pyarrow",
    "pandas",
    "faker",
    "sqlalchemy",
    "psycopg",
    "pyodbc",
    "snowflake",
    "sqlglot",
    "fakesnow",
    "prefect.server",
)

# Runs the command in a fresh interpreter, then lists what it imported (the command's own exit
# is caught so the list is always written).
PROBE = """
import json, sys
from prefect_ombudsman.cli import app
try:
    app(args=sys.argv[2:], standalone_mode=False)
except SystemExit:
    pass
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
"""


def imported_by(args: list[str], tmp_path: Path, env: dict[str, str], expect: str) -> list[str]:
    listing = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(listing), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert listing.exists() and expect in done.stdout, done.stderr[-3000:]
    modules = json.loads(listing.read_text())
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))


def test_help_imports_no_engine_and_no_prefect_server(tmp_path: Path):
    assert imported_by(["--help"], tmp_path, dict(os.environ), "Usage") == []


@pytest.mark.usefixtures("prefect_api")
def test_jobs_list_imports_no_engine_and_no_prefect_server(tmp_path: Path):
    from prefect.settings import get_current_settings

    env = dict(os.environ, PREFECT_API_URL=str(get_current_settings().api.url))
    assert imported_by(["jobs", "list", "--json"], tmp_path, env, '"jobs"') == []
