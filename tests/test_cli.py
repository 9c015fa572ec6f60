"""The `ombudsman` CLI: exit codes of SPEC §10 and the --json summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefect_ombudsman.cli import app

runner = CliRunner()


def test_bad_input_exits_2_naming_the_field():
    result = runner.invoke(app, ["run", "custom", "sleep", "--max-parallel", "0"])
    assert result.exit_code == 2
    assert "max_parallel" in result.output


def test_bad_json_arguments_exit_2():
    result = runner.invoke(app, ["run", "custom", "sleep", "--args", "{nope"])
    assert result.exit_code == 2 and "--args" in result.output


def test_operations_lists_each_with_the_package_registering_it():
    result = runner.invoke(app, ["operations"])
    assert result.exit_code == 0
    assert {"noop", "sleep", "fail", "flaky", "sql_query"} <= set(result.output.split())
    assert "sql_query  (prefect-ombudsman)" in result.output
    assert "sleep  (ombudsman-testops)" in result.output  # the test-only plugin


@pytest.mark.usefixtures("prefect_api")
def test_run_custom_json_summary_and_exit_codes(tmp_projects: Path):
    ok = runner.invoke(app, ["run", "custom", "noop", "--repeat", "3", "--parallel", "--json"])
    assert ok.exit_code == 0, ok.output
    summary = json.loads(ok.stdout)
    assert summary["status"] == "completed" and summary["total_operations"] == 3
    assert [op["operation_id"] for op in summary["operations"]] == [
        "custom_0_noop",
        "custom_1_noop",
        "custom_2_noop",
    ]
    assert Path(summary["report_path"]).is_file()
    failed = runner.invoke(app, ["run", "custom", "noop", "fail", "--json"])
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["status"] == "partial_success"


@pytest.mark.usefixtures("prefect_api")
def test_demo_finds_every_planted_difference_on_embedded_defaults(tmp_projects: Path):
    result = runner.invoke(app, ["demo", "--rows", "3000", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (tmp_projects / "demo" / "project.yaml").is_file()
    assert out["datagen"]["status"] == "completed"
    drift = out["drift"]
    assert drift["all_found"] and drift["false_alarms"] == []
    kinds = {(f["table"], f["kind"]) for f in drift["findings"]}
    assert (
        ("fact_sales", "orphan_fks") in kinds
        and ("dim_customer", "truncated_strings") in kinds
        and len(kinds) == 8
    )
    assert all(f["found"] and "row_checksum" in f["found_by"] for f in drift["findings"])
    nulls = next(f for f in drift["findings"] if f["kind"] == "nulls")
    assert "nulls" in nulls["found_by"]
    assert "dim_product" in drift["untouched_tables"] and drift["untouched_checks"] > 20
    assert Path(out["report_path"]).is_file()


def test_console_script_is_installed():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ombudsman"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "run" in result.stdout


@pytest.mark.usefixtures("prefect_api")
def test_jobs_commands_read_a_finished_job(tmp_projects: Path):
    run = runner.invoke(app, ["run", "custom", "noop", "fail", "--name", "jobs-cli", "--json"])
    job_id = json.loads(run.stdout)["job_id"]
    shown = runner.invoke(app, ["jobs", "show", job_id])
    assert shown.exit_code == 0
    job = json.loads(shown.stdout)
    assert (
        job["status"] == "partial_success"
        and job["name"] == "jobs-cli"
        and len(job["operations"]) == 2
    )
    progress = json.loads(runner.invoke(app, ["jobs", "progress", job_id]).stdout)
    assert (
        progress["progress"]["completed_operations"] == 1
        and progress["progress"]["failed_operations"] == 1
    )
    listed = json.loads(runner.invoke(app, ["jobs", "list", "--type", "custom", "--json"]).stdout)
    assert job_id in {j["job_id"] for j in listed["jobs"]}
    report = runner.invoke(app, ["jobs", "report", job_id])
    assert json.loads(report.stdout)["job_id"] == job_id
    assert runner.invoke(app, ["jobs", "cancel", job_id]).exit_code == 1  # already finished
    assert runner.invoke(app, ["jobs", "show", "not-a-uuid"]).exit_code == 2
    assert runner.invoke(app, ["jobs", "list", "--status", "bogus"]).exit_code == 2
