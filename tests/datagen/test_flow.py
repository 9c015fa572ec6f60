"""The `batch_data_generation` flow and `ombudsman run generate`: per-operation errors, defaults, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefect_ombudsman.cli import app
from prefect_ombudsman.connections import engine_for
from prefect_ombudsman.datagen.verify import stored_digest
from prefect_ombudsman.flows.datagen import batch_data_generation, job_seed

pytestmark = pytest.mark.usefixtures("prefect_api")


def _project(root: Path, name: str = "shop") -> Path:
    folder = root / name
    (folder / "data").mkdir(parents=True)
    (folder / "project.yaml").write_text(
        "name: Shop\nsource: sqlite:///data/source.db\ntarget: duckdb:///data/target.duckdb\n",
        encoding="utf-8",
    )
    return folder


def test_items_fail_alone_and_default_targets_are_the_projects(tmp_projects: Path):
    folder = _project(tmp_projects)
    drift = {"tables": {"fact_sales": {"missing_rows": 3, "changed_values": 2}}}
    state = batch_data_generation(
        items=[
            {"schema_type": "Retail", "row_count": 2000, "seed": 3, "drift": drift},
            {
                "schema_type": "finance",
                "row_count": 100,
                "targets": ["postgresql+psycopg://postgres@127.0.0.1:1/none"],
            },
            {"schema_type": "Healthcare", "row_count": 500, "table_name": "dim_patient"},
            {"schema_type": "Healthcare", "row_count": 500, "table_name": "fact_returns"},
        ],
        project_id="shop",
        max_retries=1,
        return_state=True,
    )
    summary = state.result(raise_on_failure=False)
    assert summary["status"] == "partial_success"
    ops = {op["operation_id"]: op for op in summary["operations"]}
    assert list(ops) == [
        "datagen_0_Retail",
        "datagen_1_Finance",
        "datagen_2_Healthcare",
        "datagen_3_Healthcare",
    ]
    assert [ops[o]["status"] for o in ops] == ["completed", "failed", "completed", "failed"]

    retail = ops["datagen_0_Retail"]["result"]
    assert retail["seed"] == 3 and retail["seed_source"] == "request"
    assert [t["target"] for t in retail["targets"]] == ["source", "target"]
    manifest = Path(retail["drift"]["manifest_path"])
    assert manifest.parent == folder / "results" / "drift" and manifest.name.endswith(
        "_datagen_0_Retail.json"
    )
    assert json.loads(manifest.read_text())["tables"]["fact_sales"]["counts"]["missing_rows"] == 3
    source = engine_for(f"sqlite:///{folder / 'data' / 'source.db'}")
    target = engine_for(f"duckdb:///{folder / 'data' / 'target.duckdb'}")
    assert stored_digest(source, "Retail", "dim_customer") == stored_digest(
        target, "Retail", "dim_customer"
    )
    assert stored_digest(source, "Retail", "fact_sales") != stored_digest(
        target, "Retail", "fact_sales"
    )
    target.dispose()

    assert (
        "target 'postgresql+psycopg://postgres@127.0.0.1:1/none'"
        in ops["datagen_1_Finance"]["error"]
    )
    healthcare = ops["datagen_2_Healthcare"]["result"]
    assert healthcare["seed_source"] == "random" and healthcare["seed"] == job_seed(
        summary["job_id"], 2
    )
    assert [t["table"] for t in healthcare["tables"]] == ["dim_patient"]
    assert "valid tables: dim_date, dim_patient" in ops["datagen_3_Healthcare"]["error"]

    # the run page shows what was produced: rows per table and target, every table (never cut)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = {
            a.key: a
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[summary["job_id"]])
                )
            )
        }
    rows = json.loads(artifacts["ombudsman-batch-data-generation-tables"].data)
    retail_rows = [r for r in rows if r["operation_id"] == "datagen_0_Retail"]
    assert {r["target"] for r in retail_rows} == {"source", "target"}
    assert len(retail_rows) == 2 * len(retail["tables"])
    sales = [r for r in retail_rows if r["table"].endswith("fact_sales")]
    assert {r["rows_generated"] for r in sales} == {2000}
    assert [r["drift"] for r in sorted(sales, key=lambda r: r["target"])] == [False, True]
    card = artifacts["ombudsman-batch-data-generation-generated"].data
    assert "| table | generated | source (loaded) | target (loaded) |" in card
    assert "| fact_sales | 2,000 |" in card and "`datagen_1_Finance`: failed" in card


def _flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


def test_cli_refuses_bad_input_with_exit_2(tmp_path: Path):
    runner = CliRunner()
    bad_schema = runner.invoke(
        app, ["run", "generate", "--schema", "Insurance", "--target", "sqlite:///x.db"]
    )
    assert bad_schema.exit_code == 2 and "valid schema types: Retail, Finance, Healthcare" in _flat(
        bad_schema.output
    )
    bad_rows = runner.invoke(app, ["run", "generate", "--schema", "Retail", "--rows", "0"])
    assert bad_rows.exit_code == 2 and "row_count" in _flat(bad_rows.output)
    drift = tmp_path / "drift.yaml"
    drift.write_text("tables:\n  fact_sales:\n    rounding: {count: 2, columns: [quantity]}\n")
    bad_drift = runner.invoke(app, ["run", "generate", "--schema", "Retail", "--drift", str(drift)])
    assert bad_drift.exit_code == 2 and "allowed columns: unit_price" in _flat(bad_drift.output)


def test_cli_generates_with_drift_and_prints_the_summary(tmp_path: Path, tmp_projects: Path):
    drift = tmp_path / "drift.yaml"
    drift.write_text(
        "Retail:\n  tables:\n    fact_inventory: {extra_rows: 5}\nFinance:\n  tables:\n    fact_balances: {missing_rows: 2}\n"
    )
    result = CliRunner().invoke(
        app,
        [
            "run",
            "generate",
            "--schema",
            "Retail",
            "--schema",
            "Finance",
            "--rows",
            "1500",
            "--seed",
            "42",
            "--target",
            f"sqlite:///{tmp_path / 's.db'}",
            "--target",
            f"duckdb:///{tmp_path / 't.duckdb'}",
            "--drift",
            str(drift),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    results = {op["operation_id"]: op["result"] for op in summary["operations"]}
    assert results["datagen_0_Retail"]["drift"]["counts"] == {"fact_inventory": {"extra_rows": 5}}
    assert results["datagen_1_Finance"]["drift"]["counts"] == {"fact_balances": {"missing_rows": 2}}
    assert results["datagen_0_Retail"]["seed"] == results["datagen_1_Finance"]["seed"] == 42
    assert results["datagen_0_Retail"]["summary"].startswith("Retail seed 42: ")
