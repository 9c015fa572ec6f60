"""Proof of correctness (issue 4): the shipped pipelines report exactly the planted differences.

Each schema is generated into a source and a target with drift planted in the target; every
pipeline of the schema's project template then runs, and every planted difference must be found
with exactly its keys (and columns), while the untouched tables pass every check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from prefect_ombudsman.connections import engine_for, resolve_connection
from prefect_ombudsman.datagen.drift import parse_drift
from prefect_ombudsman.datagen.generator import build_plan
from prefect_ombudsman.datagen.load import Target
from prefect_ombudsman.datagen.project_template import install_template
from prefect_ombudsman.datagen.warehouse import generate_warehouse
from prefect_ombudsman.demo import account_for_drift
from prefect_ombudsman.projects import load_project
from prefect_ombudsman.validation.execution import list_project_pipelines, run_project_pipeline

SCHEMAS = {
    "Retail": ("fact_sales", "dim_customer"),
    "Finance": ("fact_transactions", "dim_account"),
    "Healthcare": ("fact_visits", "dim_patient"),
}
ROWS = 2_000


def drift_spec(fact: str, dim: str) -> dict[str, Any]:
    """Every kind once or twice: few enough that all keys fit the comparison's samples."""
    return {
        "target": "target",
        "seed": 11,
        "tables": {
            fact: {
                "missing_rows": 2,
                "extra_rows": 2,
                "changed_values": 1,
                "nulls": 2,
                "orphan_fks": 2,
                "rounding": 2,
            },
            dim: {"truncated_strings": 2, "shifted_timestamps": 2, "changed_values": 1},
        },
    }


def _project(root: Path, schema: str, source: Any, target: Any) -> Path:
    folder = root / schema.lower()
    folder.mkdir(parents=True)
    install_template(schema, folder)
    config = yaml.safe_load((folder / "project.yaml").read_text())
    config.update(source=source, target=target)
    (folder / "project.yaml").write_text(yaml.safe_dump(config))
    return folder


def _prove(root: Path, schema: str, folder: Path) -> None:
    fact, dim = SCHEMAS[schema]
    project = load_project(folder.name, root)
    targets = [
        Target("source", engine_for("source", project=project)),
        Target("target", engine_for("target", project=project)),
    ]
    manifest_path = folder / "results" / "drift.json"
    generate_warehouse(
        build_plan(schema, ROWS, seed=42),
        targets,
        drift=parse_drift(drift_spec(fact, dim)),
        manifest_path=manifest_path,
    )
    manifest = json.loads(manifest_path.read_text())
    results = [
        run_project_pipeline(
            pid, project_id=folder.name, projects_dir=root, resolve=resolve_connection
        )
        for pid in list_project_pipelines(project)
    ]
    errors = [
        f"{s['name']}: {s.get('message')}"
        for r in results
        for s in r["steps"]
        if s["status"] == "ERROR"
    ]
    assert errors == [], errors
    account = account_for_drift(manifest, {"operations": [{"result": r} for r in results]})
    missed = [(f.table, f.kind, f.detail, f.found_by) for f in account.findings if not f.found]
    assert missed == [], missed
    assert account.false_alarms == []
    planted = {
        (t, k) for t, info in manifest["tables"].items() for k, n in info["counts"].items() if n
    }
    assert {(f.table, f.kind) for f in account.findings} == planted and len(planted) == 9
    assert len(account.untouched_tables) == 4 and account.untouched_checks > 10


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_sqlite_to_duckdb_reports_exactly_the_planted_differences(tmp_path: Path, schema: str):
    root = tmp_path / "projects"
    folder = _project(
        root, schema, "sqlite:///warehouse/source.db", "duckdb:///warehouse/target.duckdb"
    )
    (folder / "warehouse").mkdir(exist_ok=True)
    _prove(root, schema, folder)


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_postgresql_to_snowflake_reports_exactly_the_planted_differences(
    tmp_path: Path, schema: str, postgres_url: str, fakesnow_server: dict[str, Any]
):
    database = f"proof_{schema.lower()}_{tmp_path.name[-6:].replace('-', '_')}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    snowflake = {
        "kind": "snowflake",
        "account": "fakesnow",
        "user": "fake",
        "password": "snow",
        "database": database.upper(),
        "schema": "PUBLIC",
        "host": fakesnow_server["host"],
        "port": fakesnow_server["port"],
        "protocol": "http",
    }
    bootstrap = engine_for({**snowflake, "database": None, "schema": None})
    with bootstrap.begin() as conn:
        conn.execute(text(f"CREATE DATABASE IF NOT EXISTS {database.upper()}"))
    root = tmp_path / "projects"
    folder = _project(root, schema, postgres_url.rsplit("/", 1)[0] + f"/{database}", snowflake)
    _prove(root, schema, folder)
