"""The Studio's batch contract, field by field, with the request bodies its React page sends
(BatchOperations.tsx), against a real Prefect API and real embedded databases."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from warehouse import make_project

from support import free_port, wait_until

pytestmark = pytest.mark.usefixtures("prefect_api")

FINAL = {"completed", "failed", "cancelled", "partial_success"}
JOB_KEYS = {
    "job_id", "job_type", "status", "name", "description", "operations", "progress",
    "parallel_execution", "max_parallel", "stop_on_error", "created_at", "started_at",
    "completed_at", "total_duration_ms", "success_count", "failure_count", "project_id", "tags",
}  # fmt: skip
OPERATION_KEYS = {
    "operation_id", "operation_type", "status", "started_at", "completed_at", "duration_ms",
    "result", "error", "metadata",
}  # fmt: skip
PROGRESS_KEYS = {
    "total_operations", "completed_operations", "failed_operations", "skipped_operations",
    "current_operation", "percent_complete", "estimated_time_remaining_ms",
}  # fmt: skip


def _job(client: TestClient, job_id: str) -> dict[str, Any]:
    response = client.get(f"/batch/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()["job"]


def _wait_final(client: TestClient, job_id: str, timeout: float = 90) -> dict[str, Any]:
    assert wait_until(
        lambda: _job(client, job_id)["status"] in FINAL, timeout=timeout, interval=0.2
    )
    return _job(client, job_id)


def _custom(client: TestClient, items: list[dict[str, Any]], **extra: Any) -> str:
    body = {"job_name": extra.pop("job_name", "contract"), "items": items, **extra}
    response = client.post("/batch/custom/execute", json=body)
    assert response.status_code == 200, response.text
    return response.json()["job_id"]


def _retail(root: Path) -> Path:
    folder = make_project(root, "retail", drift={"missing_sales": 2, "orphans": 1})
    (folder / "pipelines" / "nightly.yaml").write_text(
        textwrap.dedent(
            """
            batch:
              name: Nightly
              type: sequential
              pipelines:
                - {file: sales.yaml}
                - {file: customers.yaml}
            """
        )
    )
    return folder


def test_pipeline_job_from_the_batch_page(client: TestClient, tmp_projects: Path):
    _retail(tmp_projects)
    body = {  # handleBulkPipelineExecution's body: filenames from the picker, the active project
        "job_name": "Nightly run",
        "pipelines": [{"pipeline_id": "nightly.yaml"}, {"pipeline_id": "customers.yaml"}],
        "parallel_execution": False,
        "max_parallel": 3,
        "stop_on_error": False,
        "project_id": "retail",
    }
    created = client.post("/batch/pipelines/bulk-execute", json=body)
    assert created.status_code == 200, created.text
    payload = created.json()
    assert set(payload) == {"job_id", "status", "message", "total_operations"}
    assert payload["total_operations"] == 3  # the batch file expands to its two pipelines
    assert payload["message"] == "Batch pipeline execution job created with 3 pipelines"
    job_id = payload["job_id"]

    born = _job(client, job_id)  # born with every operation listed and progress set
    assert JOB_KEYS <= set(born) and born["progress"] is not None
    assert set(born["progress"]) == PROGRESS_KEYS and born["progress"]["total_operations"] == 3
    assert [op["operation_id"] for op in born["operations"]] == [
        "pipeline_0_sales",
        "pipeline_1_customers",
        "pipeline_2_customers",
    ]
    assert born["operations"][0]["metadata"]["from_batch"] == "nightly"
    assert client.get(f"/batch/jobs/{job_id}/operations").json()["total_operations"] == 3

    job = _wait_final(client, job_id)
    assert job["status"] == "partial_success" and job["project_id"] == "retail"
    assert (job["success_count"], job["failure_count"]) == (2, 1)
    sales, customers = job["operations"][0], job["operations"][1]
    assert set(sales) == OPERATION_KEYS
    assert sales["status"] == "failed" and sales["result"]["status"] == "failed"
    assert customers["status"] == "completed" and customers["result"]["status"] == "completed"
    assert sales["result"]["results_summary"] == {"total_steps": 4, "passed": 0, "failed": 4}
    assert customers["result"]["results_summary"] == {"total_steps": 2, "passed": 2, "failed": 0}
    assert sales["result"]["run_id"] and sales["error"]

    listed = client.get("/batch/jobs", params={"limit": 100, "project_id": "retail"}).json()
    assert listed["total"] == 1 and listed["page"] == 1 and listed["page_size"] == 100
    assert [op["status"] for op in listed["jobs"][0]["operations"]] == [
        "failed",
        "completed",
        "completed",
    ]

    response = client.get(f"/batch/jobs/{job_id}/report")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "success" and answer["job_name"] == "Nightly run"
    report = answer["report"]
    summary = report["executive_summary"]
    assert summary == {
        "total_pipelines": 3,
        "total_validations": 8,
        "passed": 4,
        "failed": 4,
        "errors": 0,
        "skipped": 0,
        "pass_rate": 50.0,
        "tables_validated": 2,
        "table_list": ["dim_customer", "fact_sales"],
        "overall_status": "FAIL",
    }
    metrics = report["aggregate_metrics"]
    sql, snow = metrics["row_count_totals"]["sql"], metrics["row_count_totals"]["snowflake"]
    assert sql - snow == 2 and metrics["row_count_totals"]["diff"] == 2
    assert metrics["orphaned_keys_total"] == 1 and metrics["schema_mismatches"] == 0
    assert metrics["null_count_total"] >= 1 and metrics["duplicate_count_total"] == 0
    tables = {t["table_name"]: t for t in report["table_summary"]}
    assert tables["fact_sales"]["failed"] == 4 and tables["fact_sales"]["pass_rate"] == 0.0
    assert tables["dim_customer"]["pass_rate"] == 100.0
    details = report["pipeline_details"]
    assert [p["status"] for p in details] == ["failed", "completed", "completed"]
    assert details[0]["pass_count"] == 0 and details[0]["fail_count"] == 4
    counts = next(v for v in details[0]["validations"] if v["validator"] == "record_counts")
    assert counts["status"] == "FAIL" and counts["key_metrics"]["diff"] == 2
    failures = report["failure_analysis"]
    assert failures["row_count_mismatch"]["count"] == 1
    assert len(failures["critical"]) + len(failures["warnings"]) == 4
    assert all(isinstance(i["details"], str) for i in failures["critical"] + failures["warnings"])
    queries = {q["validation"]: q for q in report["debugging_queries"]}
    assert any("COUNT(*)" in q["query"] for q in queries["validate_record_counts"]["queries"])
    assert report["generated_at"]
    for text in (response.text, json.dumps(listed), json.dumps(job)):
        assert str(tmp_projects) not in text  # no server path in any answer


def test_operations_pending_at_creation_and_while_running(client: TestClient):
    job_id = _custom(client, [{"operation": "sleep", "arguments": {"seconds": 1.0}}] * 4)
    born = _job(client, job_id)
    assert len(born["operations"]) == 4 and born["progress"]["total_operations"] == 4
    assert sum(op["status"] == "pending" for op in born["operations"]) >= 3
    assert client.get(f"/batch/jobs/{job_id}/operations").json()["total_operations"] == 4
    assert client.get(f"/batch/jobs/{job_id}/progress").json()["progress"]["total_operations"] == 4
    snapshots: list[dict[str, Any]] = []

    def one_done() -> bool:
        snapshots.append(_job(client, job_id))
        return any(op["status"] == "completed" for op in snapshots[-1]["operations"])

    assert wait_until(one_done, timeout=60, interval=0.1)
    running = snapshots[-1]  # sequential: the first operation has just ended
    assert running["status"] == "running" and len(running["operations"]) == 4
    assert running["operations"][-1]["status"] == "pending"  # not started: still listed
    assert _wait_final(client, job_id)["status"] == "completed"


def test_retry_exactly_the_named_failed_operations(client: TestClient):
    job_id = _custom(
        client,
        [
            {"operation": "noop"},
            {"operation": "fail", "name": "a"},
            {"operation": "fail", "name": "b"},
        ],
        retry_failed=False,
    )
    first = {op["operation_id"]: op for op in _wait_final(client, job_id)["operations"]}
    assert first["custom_1_a"]["status"] == first["custom_2_b"]["status"] == "failed"
    unknown = client.post(f"/batch/jobs/{job_id}/retry", json={"operation_ids": ["nope"]})
    assert unknown.status_code == 200
    assert unknown.json() == {
        "status": "info",
        "message": "No failed operations to retry",
        "job_id": job_id,
    }
    retried = client.post(
        f"/batch/jobs/{job_id}/retry", json={"operation_ids": ["custom_1_a", "custom_0_noop"]}
    )
    assert retried.json() == {
        "status": "success",
        "message": "Retrying 1 failed operations",
        "job_id": job_id,
        "retrying_operations": 1,
    }
    assert wait_until(
        lambda: (
            (ops := {op["operation_id"]: op for op in _job(client, job_id)["operations"]})
            and ops["custom_1_a"]["completed_at"] != first["custom_1_a"]["completed_at"]
            and _job(client, job_id)["status"] in FINAL
        ),
        timeout=60,
        interval=0.2,
    )
    after = {op["operation_id"]: op for op in _job(client, job_id)["operations"]}
    assert after["custom_1_a"]["status"] == "failed"
    assert after["custom_2_b"]["completed_at"] == first["custom_2_b"]["completed_at"]  # not re-run
    assert after["custom_2_b"]["status"] == "failed"
    assert after["custom_0_noop"]["status"] == "completed"


def test_cancel_reason_shown_and_skipped_operations_not_retried(client: TestClient):
    job_id = _custom(client, [{"operation": "sleep", "arguments": {"seconds": 0.5}}] * 6)
    assert wait_until(lambda: _job(client, job_id)["status"] == "running", timeout=60)
    answer = client.post(
        f"/batch/jobs/{job_id}/cancel", json={"reason": "User cancelled from UI"}
    ).json()
    assert answer["status"] == "success" and answer["reason"] == "User cancelled from UI"
    job = _wait_final(client, job_id)
    assert job["status"] == "cancelled"
    assert wait_until(
        lambda: _job(client, job_id)["operations"][-1]["status"] == "skipped", timeout=15
    )
    skipped = [op for op in _job(client, job_id)["operations"] if op["status"] == "skipped"]
    assert skipped and {op["error"] for op in skipped} == {"Cancelled: User cancelled from UI"}
    retry = client.post(f"/batch/jobs/{job_id}/retry").json()
    assert retry["status"] == "info"


def test_job_name_required_and_report_needs_a_pipeline_run(client: TestClient, tmp_projects: Path):
    missing = client.post("/batch/pipelines/bulk-execute", json={"pipelines": []})
    assert missing.status_code == 422 and "job_name" in missing.text
    make_project(tmp_projects, "empty", pipelines={})
    created = client.post(
        "/batch/pipelines/bulk-execute",
        json={"job_name": "ghost", "pipelines": [{"pipeline_id": "ghost"}], "project_id": "empty"},
    ).json()
    assert _wait_final(client, created["job_id"])["status"] == "failed"
    report = client.get(f"/batch/jobs/{created['job_id']}/report")
    assert report.status_code == 400
    assert report.json()["detail"].startswith("No completed pipeline runs found")


def test_websocket_pushes_job_updates(client: TestClient):
    with (
        client,  # one event loop for both sockets, as under uvicorn
        client.websocket_connect("/batch/ws") as everything,
        client.websocket_connect("/batch/ws/p1") as p1,
    ):
        everything.send_text("ping")
        while (text := everything.receive_text()) != "pong":
            assert json.loads(text)["type"] == "job_update"
        other = _custom(client, [{"operation": "noop"}], project_id="p2")
        job_id = _custom(client, [{"operation": "noop"}] * 2, job_name="live", project_id="p1")
        seen_p1: list[dict[str, Any]] = []
        while not seen_p1 or seen_p1[-1]["data"]["status"] != "completed":
            message = json.loads(p1.receive_text())
            assert message["data"]["project_id"] == "p1"
            if message["data"]["job_id"] == job_id:
                seen_p1.append(message)
        final = seen_p1[-1]
        assert set(final) == {"type", "timestamp", "data"} and final["type"] == "job_update"
        data = final["data"]
        assert set(data) == {
            "job_id", "status", "name", "project_id", "progress", "success_count",
            "failure_count", "started_at", "completed_at", "total_duration_ms",
        }  # fmt: skip
        assert data["name"] == "live" and data["success_count"] == 2
        assert data["progress"] == {
            "total_operations": 2,
            "completed_operations": 2,
            "failed_operations": 0,
            "percent_complete": 100.0,
        }
        assert data["completed_at"] and data["total_duration_ms"] is not None
        global_ids = set()
        while not {other, job_id} <= global_ids:
            global_ids.add(json.loads(everything.receive_text())["data"]["job_id"])


def test_projects_pipelines_connections_and_alerts(client: TestClient, tmp_projects: Path):
    _retail(tmp_projects)
    (tmp_projects / "broken").mkdir()
    port = free_port()  # nothing listens: the target cannot connect
    (tmp_projects / "broken" / "project.yaml").write_text(
        f"name: Broken\nsource: sqlite:///a.db\n"
        f"target: postgresql://ombudsman:s3cret-pass@127.0.0.1:{port}/db\n"
    )
    listed = client.get("/projects/list").json()
    assert listed["status"] == "success" and listed["total"] == 2
    assert {p["project_id"] for p in listed["projects"]} == {"retail", "broken"}
    assert set(listed["projects"][0]) >= {
        "project_id", "name", "description", "created_at", "updated_at", "sql_database",
        "sql_schemas", "snowflake_database", "snowflake_schemas", "schema_mappings",
    }  # fmt: skip
    assert client.get("/projects/nope").status_code == 404
    loaded = client.get("/projects/broken")
    assert loaded.status_code == 200 and loaded.json()["metadata"]["name"] == "Broken"
    assert "s3cret-pass" not in loaded.text
    assert client.get("/projects/active").json()["active_project"]["project_id"] == "broken"
    client.get("/projects/retail")
    assert client.get("/projects/active").json()["active_project"]["project_id"] == "retail"
    saved = json.loads((tmp_projects / ".ombudsman" / "studio_users.json").read_text())
    assert saved["users"]["tests-full"]["active_project"] == "retail"  # per user: the token's name

    pipelines = client.get("/workload/pipelines/list", params={"active_only": True}).json()
    by_file = {p["filename"]: p for p in pipelines["pipelines"]}
    assert pipelines["total"] == 3 and set(by_file) == {
        "sales.yaml",
        "customers.yaml",
        "nightly.yaml",
    }
    assert (
        by_file["nightly.yaml"]["type"] == "batch"
        and by_file["nightly.yaml"]["pipeline_count"] == 2
    )
    assert (
        by_file["sales.yaml"]["type"] == "pipeline"
        and by_file["sales.yaml"]["validation_count"] == 4
    )
    assert by_file["sales.yaml"]["table"] == "fact_sales"
    assert not by_file["sales.yaml"]["path"].startswith("/")

    good = client.get("/connections/status").json()
    assert good["project_id"] == "retail"
    assert good["connections"]["sqlserver"]["status"] == "success"
    assert good["connections"]["snowflake"]["status"] == "success"
    assert good["connections"]["snowflake"]["kind"] == "duckdb"
    assert str(tmp_projects) not in json.dumps(good)  # URLs relative to the projects root
    bad = client.get("/connections/status", params={"project_id": "broken"})
    target = bad.json()["connections"]["snowflake"]
    assert target["status"] == "error" and target["message"] and "s3cret-pass" not in bad.text

    client.post("/alerts/read-all")
    assert client.get("/alerts/count").json() == {"unread_count": 0}
    job_id = _custom(client, [{"operation": "fail"}], job_name="will fail")
    assert _wait_final(client, job_id)["status"] == "failed"
    assert client.get("/alerts/count").json() == {"unread_count": 1}
    alerts = client.get("/alerts/").json()
    assert alerts["unread_count"] == 1 and alerts["alerts"][0]["id"] == job_id
    assert alerts["alerts"][0]["severity"] == "error" and not alerts["alerts"][0]["read"]
    assert client.post(f"/alerts/{job_id}/read").json()["status"] == "success"
    assert client.get("/alerts/count").json() == {"unread_count": 0}


def test_list_and_statistics_filter_in_prefect(client: TestClient):
    ok = _custom(client, [{"operation": "noop"}], project_id="stats")
    bad = _custom(client, [{"operation": "fail"}], project_id="stats")
    _wait_final(client, ok)
    _wait_final(client, bad)
    failed = client.get("/batch/jobs", params={"status": "failed", "project_id": "stats"}).json()
    assert failed["total"] == 1 and [j["job_id"] for j in failed["jobs"]] == [bad]
    page = client.get("/batch/jobs", params={"project_id": "stats", "limit": 1, "offset": 1}).json()
    assert page["total"] == 2 and page["page"] == 2 and [j["job_id"] for j in page["jobs"]] == [ok]
    stats = client.get("/batch/statistics").json()["statistics"]
    assert set(stats["status_distribution"]) == FINAL | {"pending", "queued", "running", "paused"}
    assert stats["status_distribution"]["failed"] >= 1 and stats["type_distribution"]["custom"] >= 2
    assert stats["total_jobs"] == sum(stats["status_distribution"].values())
    assert {r["job_id"] for r in stats["recent_jobs"]} >= {ok, bad}
