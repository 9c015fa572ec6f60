"""The two flows on the batch runner, the consolidated report, the CLI commands, Studio project.json."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from prefect_ombudsman.cli import app
from prefect_ombudsman.projects import load_project, studio_environment


@pytest.fixture(scope="module", autouse=True)
def _api(prefect_api):
    yield


def test_bulk_job_expands_batch_files_and_reports_per_table(project_factory, tmp_projects: Path):
    from prefect_ombudsman.flows import bulk_pipeline_execution

    folder = project_factory("retail", drift={"missing_sales": 2})
    (folder / "pipelines" / "nightly.yaml").write_text(
        "batch:\n  pipelines: [{file: sales.yaml}, customers.yaml]\n"
    )
    state = bulk_pipeline_execution(
        pipelines=[
            {"pipeline_id": "nightly"},
            {
                "pipeline_id": "customers",
                "config_override": {"steps": {"uniqueness": {"enabled": False}}},
            },
            {"pipeline_id": "ghost"},
        ],
        project_id="retail",
        parallel_execution=True,
        max_parallel=3,
        return_state=True,
    )
    summary = state.result(raise_on_failure=False)
    ops = {op["operation_id"]: op for op in summary["operations"]}
    assert list(ops) == [
        "pipeline_0_sales",
        "pipeline_1_customers",
        "pipeline_2_customers",
        "pipeline_3_ghost",
    ]
    assert (
        ops["pipeline_0_sales"]["status"] == "failed" and "FAIL" in ops["pipeline_0_sales"]["error"]
    )
    assert ops["pipeline_0_sales"]["metadata"]["from_batch"] == "nightly"
    assert (
        ops["pipeline_0_sales"]["result"]["summary"]["failed"] >= 1
    )  # the pipeline result travels with the failure
    assert ops["pipeline_1_customers"]["status"] == "completed"
    override_steps = {
        s["name"]: s["status"] for s in ops["pipeline_2_customers"]["result"]["steps"]
    }
    assert override_steps == {"record_counts": "PASS", "uniqueness": "SKIPPED"}
    assert "not found; searched" in ops["pipeline_3_ghost"]["error"]
    assert summary["status"] == "partial_success" and state.name == "PartialSuccess"
    run_files = sorted((folder / "results").glob("run_*.json"))
    assert len(run_files) == 3
    report = json.loads(Path(summary["validation_report_path"]).read_text())
    assert report["summary"]["total_pipelines"] == 4 and report["summary"]["pipelines_error"] == 1
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["fact_sales"]["failed"] >= 1 and tables["dim_customer"]["status"] == "PASS"
    assert (
        "row_count_mismatch" in report["failures_by_kind"]
        and "pipeline_error" in report["failures_by_kind"]
    )


def test_pipelines_job_writes_each_report_file_once(project_factory, monkeypatch):
    """The job report, its renderings and the consolidated report: one write each, locally and
    in result storage (the consolidated report's path is in the job report's only write)."""
    from prefect_ombudsman import atomic, reports, state_store
    from prefect_ombudsman.flows import bulk_pipeline_execution, pipelines

    project_factory("once")
    written: Counter[str] = Counter()
    stored: Counter[str] = Counter()
    write_text, write_files = atomic.write_text_atomic, state_store.write_job_files

    def counted_write(path: Path, text: str, **kwargs: Any) -> Path:
        written[Path(path).name] += 1
        return write_text(path, text, **kwargs)

    def counted_files(store: Any, job_id: str, files: dict[str, str]) -> None:
        stored.update(files.keys())
        write_files(store, job_id, files)

    monkeypatch.setattr(atomic, "write_text_atomic", counted_write)  # write_json_atomic's too
    monkeypatch.setattr(reports, "write_text_atomic", counted_write)
    monkeypatch.setattr(state_store, "write_job_files", counted_files)
    monkeypatch.setattr(pipelines, "write_job_files", counted_files)
    state = bulk_pipeline_execution(
        pipelines=[{"pipeline_id": "customers"}], project_id="once", return_state=True
    )
    summary = state.result(raise_on_failure=False)
    report, validation = Path(summary["report_path"]), Path(summary["validation_report_path"])
    job_files = {name: n for name, n in written.items() if summary["job_id"] in name}
    assert report.name in job_files and validation.name in job_files and len(job_files) >= 5
    assert set(job_files.values()) == {1}, job_files
    assert json.loads(report.read_text())["validation_report_path"] == str(validation)
    assert stored["report.json"] == 1 and stored["validation_report.json"] == 1, stored


def test_multi_project_job_uses_each_projects_own_databases(project_factory):
    from prefect_ombudsman.flows import multi_project_validation

    project_factory("clean")
    project_factory("drifted", drift={"orphans": 2})
    state = multi_project_validation(
        projects=[
            {"project_id": "clean"},
            {"project_id": "drifted", "pipeline_ids": ["sales"]},
            {"project_id": "nowhere"},
        ],
        parallel_execution=True,
        return_state=True,
    )
    summary = state.result(raise_on_failure=False)
    ops = {op["operation_id"]: op for op in summary["operations"]}
    assert ops["project_0_clean"]["status"] == "completed"
    assert ops["project_0_clean"]["result"]["total_pipelines"] == 2
    drifted = ops["project_1_drifted"]
    assert drifted["status"] == "failed" and drifted["result"]["total_pipelines"] == 1
    failing = [s for s in drifted["result"]["pipelines"][0]["steps"] if s["status"] == "FAIL"]
    assert [s["validator"] for s in failing] == ["foreign_keys"]
    assert "not found" in ops["project_2_nowhere"]["error"]
    report = json.loads(Path(summary["validation_report_path"]).read_text())
    assert {p["project_id"] for p in report["projects"]} == {"clean", "drifted", "nowhere"}
    assert (
        report["failures_by_kind"]["referential_integrity"]["failures"][0]["project_id"]
        == "drifted"
    )


def test_cli_run_pipelines_and_projects_exit_codes(project_factory, tmp_projects: Path):
    project_factory("cli")
    runner = CliRunner()
    ok = runner.invoke(
        app, ["run", "pipelines", "--project", "cli", "--json", "--projects-dir", str(tmp_projects)]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["completed"] == 2
    one = runner.invoke(
        app,
        [
            "run",
            "projects",
            "--project",
            "cli:sales",
            "--project",
            "missing",
            "--json",
            "--projects-dir",
            str(tmp_projects),
        ],
    )
    assert one.exit_code == 1
    bad = runner.invoke(
        app,
        ["run", "pipelines", "--project", "no_such_project", "--projects-dir", str(tmp_projects)],
    )
    assert bad.exit_code == 2 and "not found" in bad.output
    bad_parallel = runner.invoke(
        app,
        [
            "run",
            "pipelines",
            "--project",
            "cli",
            "--max-parallel",
            "0",
            "--projects-dir",
            str(tmp_projects),
        ],
    )
    assert bad_parallel.exit_code == 2 and "max_parallel" in bad_parallel.output


def test_studio_project_json_is_read(tmp_projects: Path):
    folder = tmp_projects / "studio_proj"
    folder.mkdir()
    (folder / "project.json").write_text(json.dumps({
        "name": "Studio", "sql_database": "SampleDW", "snowflake_database": "SAMPLEDW",
        "snowflake_schemas": ["PUBLIC", "DIM"], "schema_mappings": {"dbo": "PUBLIC"}, "azure_devops": {"pat_token": "x"},
    }))  # fmt: skip
    project = load_project("studio_proj", tmp_projects)
    assert project.config.name == "Studio" and project.config.schema_mappings == {"dbo": "PUBLIC"}
    assert project.config.source is None
    assert studio_environment(project) == {
        "MSSQL_DATABASE": "SampleDW",
        "SNOWFLAKE_DATABASE": "SAMPLEDW",
        "SNOWFLAKE_SCHEMA": "PUBLIC",
    }
    assert "pat_token" not in json.dumps(project.config.model_dump())
