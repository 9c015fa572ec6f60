"""The batch_comparison flow: items from the request or the project's mapping; results per SPEC §7.3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from comparison_tables import create_table, duckdb_engine, sqlite_engine
from typer.testing import CliRunner

from prefect_ombudsman.flows.comparison import batch_comparison
from prefect_ombudsman.validation.registry import get_validator

RESULT_KEYS = {
    "table", "source_table", "target_table", "key_columns", "source_rows", "target_rows", "status",
    "missing_in_target", "extra_in_target", "changed", "samples",
}  # fmt: skip


@pytest.fixture
def project(tmp_projects: Path) -> Path:
    folder = tmp_projects / "cmp"
    folder.mkdir()
    (folder / "project.yaml").write_text(
        "name: Compare\nsource: sqlite:///src.db\ntarget: duckdb:///tgt.duckdb\nschema_mappings: {main: main}\n"
    )
    src, tgt = sqlite_engine(folder / "src.db"), duckdb_engine(folder / "tgt.duckdb")
    cols = [("id", "int"), ("name", "text")]
    create_table(src, "orders", cols, [[i, f"n{i}"] for i in range(50)], primary_key=["id"])
    create_table(
        tgt,
        "orders",
        cols,
        [[i, f"n{i}" if i != 7 else "changed"] for i in range(1, 50)],
        primary_key=["id"],
    )
    create_table(src, "items", cols, [[i, "x"] for i in range(5)], primary_key=["id"])
    create_table(tgt, "items", cols, [[i, "x"] for i in range(5)], primary_key=["id"])
    src.dispose()
    tgt.dispose()
    return folder


def test_flow_compares_each_item_and_reports_the_differences(
    prefect_api, project: Path, tmp_projects: Path
):
    state = batch_comparison(
        items=[{"table": "orders", "sample_size": 5}, {"table": "items"}],
        project_id="cmp",
        projects_dir=str(tmp_projects),
        return_state=True,
    )
    summary = state.result(raise_on_failure=False)
    assert summary["status"] == "partial_success"
    ops = {op["operation_id"]: op for op in summary["operations"]}
    assert set(ops) == {"compare_0_orders", "compare_1_items"}
    orders = ops["compare_0_orders"]
    assert orders["status"] == "failed" and set(orders["result"]) == RESULT_KEYS
    assert (orders["result"]["missing_in_target"], orders["result"]["changed"]) == (1, 1)
    assert orders["result"]["samples"] == {
        "missing_in_target": [0],
        "extra_in_target": [],
        "changed": [{"key": 7, "columns": ["name"]}],
    }
    assert ops["compare_1_items"]["status"] == "completed"
    assert ops["compare_1_items"]["result"]["status"] == "PASS"


def test_flow_takes_tables_from_the_project_mapping(prefect_api, project: Path, tmp_projects: Path):
    (project / "metadata").mkdir()
    mapping = {
        "source_connection": "source",
        "target_connection": "target",
        "tables": [
            {"status": "found_in_both", "source_schema": None, "source_table": "items",
             "target_schema": None, "target_table": "items"},
            {"status": "only_in_source", "source_schema": None, "source_table": "gone", "target_table": None},
        ],
    }  # fmt: skip
    (project / "metadata" / "mapping.json").write_text(json.dumps(mapping))
    summary = batch_comparison(project_id="cmp", from_mapping=True, projects_dir=str(tmp_projects))
    assert [op["operation_id"] for op in summary["operations"]] == ["compare_0_items"]
    assert summary["status"] == "completed"


def test_cli_run_compare_with_ad_hoc_urls(prefect_api, project: Path, tmp_projects: Path):
    from prefect_ombudsman.cli import app

    result = CliRunner().invoke(
        app,
        [
            "run", "compare", "--table", "orders",
            "--source-url", f"sqlite:///{project / 'src.db'}", "--target-url", f"duckdb:///{project / 'tgt.duckdb'}",
            "--projects-dir", str(tmp_projects), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert '"missing_in_target": 1' in result.output
    refused = CliRunner().invoke(app, ["run", "compare", "--source-url", "sqlite:///x.db"])
    assert refused.exit_code == 2


def test_row_checksum_is_a_registered_validator():
    assert get_validator("validate_row_checksum").name == "row_checksum"
