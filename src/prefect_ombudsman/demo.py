"""`ombudsman demo`: the embedded default project `demo` (SQLite source, DuckDB target) and a real batch on it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from prefect_ombudsman.connections import get_engine
from prefect_ombudsman.projects import load_project, projects_root

DEMO_PROJECT = "demo"
PROJECT_YAML = """\
name: Demo migration
description: Embedded demo — SQLite stands in for SQL Server, DuckDB for Snowflake.
source: sqlite:///warehouse/source.db
target: duckdb:///warehouse/target.duckdb
schema_mappings: {main: main}
"""


def ensure_demo_project(root: Path | None = None) -> Path:
    """Create (or refresh) the `demo` project folder with its embedded databases."""
    root = root or projects_root()
    folder = root / DEMO_PROJECT
    (folder / "warehouse").mkdir(parents=True, exist_ok=True)
    (folder / "pipelines").mkdir(exist_ok=True)
    config = folder / "project.yaml"
    if not config.exists():
        config.write_text(PROJECT_YAML, encoding="utf-8")
    return folder


def seed_demo_tables(root: Path | None = None, rows: int = 1000) -> None:
    """A small table on both sides (the data generator replaces this with the Retail warehouse)."""
    project = load_project(DEMO_PROJECT, root)
    for alias in ("source", "target"):
        engine = get_engine(alias, project=project)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS demo_orders"))
            conn.execute(text("CREATE TABLE demo_orders (order_id INTEGER PRIMARY KEY, amount DECIMAL(12,2))"))
            conn.execute(
                text("INSERT INTO demo_orders VALUES (:id, :amount)"),
                [{"id": i, "amount": round(i * 1.25, 2)} for i in range(rows)],
            )
