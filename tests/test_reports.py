"""CSV, JUnit XML and HTML job reports."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from xml.etree import ElementTree as ET

from prefect_ombudsman.reports import html_page, junit_xml, operations_csv, write_reports

SUMMARY = {
    "job_id": "j1",
    "job_type": "bulk_pipeline_execution",
    "name": "Nightly <validation>",
    "status": "partial_success",
    "total_operations": 3,
    "completed": 1,
    "failed": 1,
    "skipped": 1,
    "duration_ms": 1500,
    "operations": [
        {
            "operation_id": "pipeline_0_facts",
            "operation_type": "pipeline_execution",
            "status": "failed",
            "duration_ms": 900,
            "error": "pipeline facts failed: 1 FAIL",
            "metadata": {"attempts": 1},
            "result": {
                "steps": [
                    {
                        "name": "row_count",
                        "validator": "record_counts",
                        "status": "PASS",
                        "table": "fact_sales",
                        "duration_ms": 10,
                    },
                    {
                        "name": "rows",
                        "validator": "row_checksum",
                        "status": "FAIL",
                        "table": "fact_sales",
                        "message": "3 rows differ",
                        "details": {"missing_in_target": 3},
                    },
                    {
                        "name": "bad",
                        "validator": "nulls",
                        "status": "ERROR",
                        "table": "fact_sales",
                        "message": "no column x",
                    },
                ]
            },
        },
        {
            "operation_id": "pipeline_1_dims",
            "operation_type": "pipeline_execution",
            "status": "completed",
            "duration_ms": 300,
            "result": {"steps": []},
        },
        {
            "operation_id": "pipeline_2_more",
            "operation_type": "pipeline_execution",
            "status": "skipped",
            "error": "not started: job cancelled",
        },
    ],
}


def test_csv_has_one_row_per_operation():
    rows = list(csv.DictReader(io.StringIO(operations_csv(SUMMARY))))
    assert [r["operation_id"] for r in rows] == [
        "pipeline_0_facts",
        "pipeline_1_dims",
        "pipeline_2_more",
    ]
    assert rows[0]["status"] == "failed" and rows[0]["attempts"] == "1"


def test_junit_has_a_case_per_step_with_failures_and_errors():
    suite = ET.fromstring(junit_xml(SUMMARY)).find("testsuite")
    cases = suite.findall("testcase")
    names = [c.get("name") for c in cases]
    assert names[:3] == ["row_count", "rows", "bad"] and "pipeline_2_more" in names
    assert (
        suite.get("failures") == "1" and suite.get("errors") == "1" and suite.get("skipped") == "1"
    )
    assert cases[1].find("failure").get("message") == "3 rows differ"


def test_html_is_self_contained_and_escaped():
    page = html_page(SUMMARY)
    assert "Nightly &lt;validation&gt;" in page and "<script" not in page and "http" not in page
    assert (
        "row_checksum" in page
        and "2 of 3 steps passed" not in page
        and "1 of 3 steps passed" in page
    )


def test_write_reports_beside_the_json(tmp_path: Path):
    written = write_reports(SUMMARY, tmp_path / "batch_j1.json")
    assert sorted(Path(p).name for p in written.values()) == [
        "batch_j1.csv",
        "batch_j1.html",
        "batch_j1.junit.xml",
    ]


def test_reports_are_the_runner_s_job_finished_hook():
    from prefect_ombudsman.flows.finish import plugin_hooks
    from prefect_ombudsman.reports import write_job_reports

    assert write_job_reports in plugin_hooks()
