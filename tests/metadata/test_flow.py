"""`bulk_metadata_extraction` on a real Prefect API: files, mapping, artifacts, bad input, limits."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import Pool
from typer.testing import CliRunner

from prefect_ombudsman.cli import app, split_source
from prefect_ombudsman.connections import engine_for
from prefect_ombudsman.deployments.limits import _limit_cache as _gcl_cache
from prefect_ombudsman.executors.metadata import gcl_name
from prefect_ombudsman.flows.metadata import bulk_metadata_extraction
from prefect_ombudsman.metadata.catalog import Catalog
from prefect_ombudsman.metadata.sessions import SLOTS
from support import free_port

pytestmark = pytest.mark.usefixtures("prefect_api")


def _run(**params: Any) -> tuple[Any, dict[str, Any]]:
    state = bulk_metadata_extraction(**params, return_state=True)
    return state, state.result(raise_on_failure=False)


def _ops(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operation_id"]: op for op in summary["operations"]}


@pytest.fixture
def retail_project(tmp_projects: Path) -> Path:
    """SQLite source and DuckDB target; the target lacks dim_store, has extra_table, and balance changed type."""
    folder = tmp_projects / "retail"
    (folder / "data").mkdir(parents=True)
    (folder / "project.yaml").write_text(
        "name: Retail\nsource: sqlite:///data/source.db\ntarget: duckdb:///data/target.duckdb\n"
    )
    common = [
        "CREATE TABLE dim_customer (customer_id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL, {balance})",
        "CREATE TABLE fact_sales (sale_id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES dim_customer (customer_id), "
        "amount NUMERIC(10,2))",
    ]
    source = create_engine(f"sqlite:///{folder / 'data' / 'source.db'}")
    with source.begin() as conn:
        for ddl in common:
            conn.execute(text(ddl.format(balance="balance NUMERIC(12,2)")))
        conn.execute(
            text("CREATE TABLE dim_store (store_id INTEGER PRIMARY KEY, city VARCHAR(30))")
        )
        conn.execute(text("INSERT INTO dim_customer VALUES (1, 'Ann', 1.5), (2, 'Bob', 2.5)"))
    source.dispose()
    target = create_engine(f"duckdb:///{folder / 'data' / 'target.duckdb'}")
    with target.begin() as conn:
        for ddl in common:
            conn.execute(text(ddl.format(balance="balance VARCHAR(20)")))
        conn.execute(text("CREATE TABLE extra_table (id INTEGER)"))
    target.dispose()
    return tmp_projects


def test_source_and_target_catalogs_mapping_and_artifacts(retail_project: Path):
    state, summary = _run(
        items=[{"connection": "source"}, {"connection": "target", "schema_name": "main"}],
        project_id="retail",
        projects_dir=str(retail_project),
        exact_counts=True,
    )
    assert state.is_completed(), summary
    ops = _ops(summary)
    assert set(ops) == {"metadata_0_source_all", "metadata_1_target_main"}
    source_result = ops["metadata_0_source_all"]["result"]
    assert source_result["role"] == "source" and source_result["dialect"] == "sqlite"
    assert {t["name"]: t["row_count"] for t in source_result["tables"]} == {
        "dim_customer": 2,
        "dim_store": 0,
        "fact_sales": 0,
    }

    metadata = retail_project / "retail" / "metadata"
    source = Catalog.load(metadata / "source.json")
    target = Catalog.load(metadata / "target.json")
    assert source.table("main", "fact_sales").foreign_keys[0].referred_table == "dim_customer"
    assert target.dialect == "duckdb" and target.table("main", "extra_table") is not None

    mapping = json.loads((metadata / "mapping.json").read_text())
    assert summary["mapping_path"] == str(metadata / "mapping.json")
    status = {(m["source_table"], m["target_table"]): m["status"] for m in mapping["tables"]}
    assert status == {
        ("dim_customer", "dim_customer"): "found_in_both",
        ("fact_sales", "fact_sales"): "found_in_both",
        ("dim_store", None): "only_in_source",
        (None, "extra_table"): "only_in_target",
    }
    customer = next(m for m in mapping["tables"] if m["source_table"] == "dim_customer")
    balance = next(c for c in customer["columns"] if c["name"] == "balance")
    assert (balance["source_type"], balance["target_type"], balance["differences"]) == (
        "NUMERIC(12,2)",
        "VARCHAR",
        ["type"],
    )
    assert mapping["summary"]["columns_with_type_differences"] == 1

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[summary["job_id"]])
            )
        )
    tables = {
        a.key: a
        for a in artifacts
        if a.type == "table" and (a.key or "").startswith("ombudsman-metadata-")
    }
    assert {"ombudsman-metadata-source", "ombudsman-metadata-target"} <= set(tables)
    rows = tables["ombudsman-metadata-source"].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert {r["table"] for r in rows} == {"dim_customer", "dim_store", "fact_sales"}


def test_bad_input_fails_only_its_own_operation(retail_project: Path):
    state, summary = _run(
        items=[
            {
                "connection": f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
            },  # unreachable
            {"connection": "source", "schema_name": "no_such_schema"},
            {"connection": "target", "table_names": ["DIM_CUSTOMER", "no_such_table"]},
            {"connection": "source", "table_names": ["nothing_here"]},
            {"connection_type": "sqlserver"},  # legacy word: the project's source
        ],
        project_id="retail",
        projects_dir=str(retail_project),
        max_retries=0,
    )
    assert state.name == "PartialSuccess"
    ops = list(summary["operations"])
    unreachable, missing_schema, partial, none_found, legacy = ops
    assert unreachable["status"] == "failed" and "connect" in unreachable["error"].lower()
    assert (
        missing_schema["status"] == "failed"
        and "schema 'no_such_schema' not found" in missing_schema["error"]
    )
    assert partial["status"] == "completed"
    assert [t["name"] for t in partial["result"]["tables"]] == ["dim_customer"]
    assert [(p["kind"], p["table"]) for p in partial["result"]["problems"]] == [
        ("missing_table", "no_such_table")
    ]
    assert (
        none_found["status"] == "failed"
        and "none of the tables nothing_here exist" in none_found["error"]
    )
    assert none_found["result"]["problems"][0]["kind"] == "missing_table"
    assert legacy["operation_id"] == "metadata_4_sqlserver_all" and legacy["status"] == "completed"
    assert legacy["result"]["role"] == "source"


@pytest.fixture
def bulk_pg_schema(postgres_url: str) -> str:
    """A schema of 150 tables, so that one extraction lasts long enough for extractions to overlap."""
    schema = f"bulk_{uuid.uuid4().hex[:6]}"
    ddl = [f"CREATE SCHEMA {schema}"] + [
        f"CREATE TABLE {schema}.t{i} (id int primary key, a varchar(20), b numeric(10,2), c date, "
        f"ref int references {schema}.t{max(i - 1, 0)}(id))"
        for i in range(150)
    ]
    with engine_for(postgres_url).begin() as conn:
        conn.execute(text(";\n".join(ddl)))
    return schema


def _session_probe(port: int) -> tuple[dict[str, int], Any]:
    """Count connections checked out of any pool to the PostgreSQL server on `port`, and the peak."""
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}
    active: set[int] = set()

    def checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        info = getattr(dbapi_conn, "info", None)
        if getattr(info, "port", None) != port:
            return
        with lock:
            active.add(id(record))
            state["peak"] = max(state["peak"], len(active))

    def checkin(dbapi_conn: Any, record: Any) -> None:
        with lock:
            active.discard(id(record))

    event.listen(Pool, "checkout", checkout)
    event.listen(Pool, "checkin", checkin)

    def remove() -> None:
        event.remove(Pool, "checkout", checkout)
        event.remove(Pool, "checkin", checkin)

    return state, remove


def test_sources_on_one_server_never_exceed_the_session_bound(
    postgres_url: str, postgres_port: int, bulk_pg_schema: str, tmp_projects: Path
):
    sessions, remove = _session_probe(postgres_port)
    try:
        state, summary = _run(
            items=[{"connection": postgres_url, "schema_name": bulk_pg_schema} for _ in range(16)],
            parallel_execution=True,
            max_parallel=8,
            sessions_per_server=3,
            projects_dir=str(tmp_projects),
        )
    finally:
        remove()
    assert state.is_completed(), summary
    held = [op["result"]["session_limit"]["in_use_at_start"] for op in summary["operations"]]
    assert all(op["result"]["session_limit"]["limit"] == 3 for op in summary["operations"])
    assert max(held) <= 3 and sessions["peak"] <= 3
    assert sessions["peak"] >= 2, "extractions never overlapped: the bound was not exercised"
    assert all(len(op["result"]["tables"]) == 150 for op in summary["operations"])
    assert SLOTS.stats(f"postgresql://127.0.0.1:{postgres_port}")["in_use"] == 0


def test_prefect_global_concurrency_limit_is_used_when_it_exists(
    postgres_url: str, postgres_port: int, bulk_pg_schema: str, tmp_projects: Path
):
    name = gcl_name(f"postgresql://127.0.0.1:{postgres_port}")
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    _gcl_cache.clear()
    sessions, remove = _session_probe(postgres_port)
    try:
        state, summary = _run(
            items=[{"connection": postgres_url, "schema_name": bulk_pg_schema} for _ in range(4)],
            parallel_execution=True,
            max_parallel=4,
            sessions_per_server=4,
            projects_dir=str(tmp_projects),
        )
    finally:
        remove()
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name(name)
        _gcl_cache.clear()
    assert state.is_completed(), summary
    assert {op["result"]["session_limit"]["global_limit"] for op in summary["operations"]} == {name}
    assert sessions["peak"] == 1  # the Prefect limit (1) is tighter than the in-process one (4)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("source", ("source", None)),
        ("source:dim", ("source", "dim")),
        ("sqlite:///data/a.db", ("sqlite:///data/a.db", None)),
        ("duckdb:///data/a.duckdb:main", ("duckdb:///data/a.duckdb", "main")),
        ("postgresql://u:pw@h:5432/db", ("postgresql://u:pw@h:5432/db", None)),
        ("postgresql://u:pw@h:5432/db:Sales", ("postgresql://u:pw@h:5432/db", "Sales")),
        ("postgresql://h:5432", ("postgresql://h:5432", None)),
    ],
)
def test_cli_source_argument_splits_schema(value: str, expected: tuple):
    assert split_source(value) == expected


def test_cli_run_metadata_json_and_bad_input(retail_project: Path):
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "run",
            "metadata",
            "--source",
            "source:main",
            "--source",
            "target",
            "--project",
            "retail",
            "--projects-dir",
            str(retail_project),
            "--exact-counts",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [op["operation_id"] for op in summary["operations"]] == [
        "metadata_0_source_main",
        "metadata_1_target_all",
    ]
    assert summary["operations"][0]["result"]["tables"][0]["row_count_exact"] is True
    assert (retail_project / "retail" / "metadata" / "mapping.json").exists()
    again = runner.invoke(
        app,
        ["run", "metadata", "--project", "retail", "--projects-dir", str(retail_project), "--json"],
    )
    assert again.exit_code == 0, again.output
    assert [op["operation_id"] for op in json.loads(again.stdout)["operations"]] == [
        "metadata_0_source_all",
        "metadata_1_target_all",
    ]
    refused = runner.invoke(app, ["run", "metadata"])
    assert refused.exit_code == 2 and "--project" in refused.output
    refused = runner.invoke(app, ["run", "metadata", "--source", "source", "--max-parallel", "0"])
    assert refused.exit_code == 2 and "max_parallel" in refused.output
    refused = runner.invoke(
        app, ["run", "metadata", "--source", "source", "--sessions-per-server", "0"]
    )
    assert refused.exit_code == 2 and "sessions_per_server" in refused.output
