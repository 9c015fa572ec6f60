"""The /batch REST API: Studio shapes, jobs as Prefect flow runs, 4xx refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import wait_until

pytestmark = pytest.mark.usefixtures("prefect_api")


def _wait_final(client: TestClient, job_id: str, timeout: float = 60) -> dict[str, Any]:
    final = {"completed", "failed", "cancelled", "partial_success"}
    assert wait_until(
        lambda: client.get(f"/batch/jobs/{job_id}").json()["job"]["status"] in final,
        timeout=timeout,
        interval=0.2,
    )
    return client.get(f"/batch/jobs/{job_id}").json()


def test_custom_job_runs_and_reads_back_in_studio_shapes(client: TestClient):
    body = {
        "job_name": "api smoke",
        "items": [{"operation": "sleep", "arguments": {"seconds": 0.05}}] * 3
        + [{"operation": "fail"}],
        "parallel_execution": True,
        "max_parallel": 2,
        "tags": ["smoke"],
    }
    created = client.post("/batch/custom/execute", json=body)
    assert created.status_code == 200, created.text
    payload = created.json()
    assert (
        payload["message"] == "Custom batch job created with 4 operations"
        and payload["total_operations"] == 4
    )
    job_id = payload["job_id"]
    final = _wait_final(client, job_id)
    job = final["job"]
    assert (
        job["status"] == "partial_success"
        and job["name"] == "api smoke"
        and job["job_type"] == "custom"
    )
    assert job["success_count"] == 3 and job["failure_count"] == 1 and "smoke" in job["tags"]
    assert job["completed_at"] and job["total_duration_ms"] is not None
    assert final["current_progress"]["percent_complete"] == 100.0
    progress = client.get(f"/batch/jobs/{job_id}/progress").json()
    assert progress["status"] == "success" and progress["job_status"] == "partial_success"
    ops = client.get(f"/batch/jobs/{job_id}/operations").json()
    assert ops["total_operations"] == 4
    assert [o["status"] for o in ops["operations"]] == [
        "completed",
        "completed",
        "completed",
        "failed",
    ]
    listed = client.get("/batch/jobs", params={"job_type": "custom", "limit": 50}).json()
    assert (
        job_id in {j["job_id"] for j in listed["jobs"]}
        and listed["page"] == 1
        and listed["page_size"] == 50
    )
    stats = client.get("/batch/statistics").json()["statistics"]
    assert stats["total_jobs"] >= 1 and set(stats["status_distribution"]) >= {
        "completed",
        "partial_success",
    }
    report = client.get(f"/batch/jobs/{job_id}/report")  # no pipeline run: the Studio's 400
    assert report.status_code == 400 and "No completed pipeline runs" in report.json()["detail"]
    warning = client.post(f"/batch/jobs/{job_id}/cancel", json={"reason": "late"}).json()
    assert warning["status"] == "warning" and warning["current_status"] == "partial_success"


def test_retry_reruns_only_failed_operations(client: TestClient, tmp_projects: Path):
    marker = tmp_projects / "flaky"  # inside the projects root: markers are confined
    items = [
        {"operation": "noop"},
        {"operation": "flaky", "arguments": {"marker": str(marker), "failures": 1}},
    ]
    job_id = client.post(
        "/batch/custom/execute",
        json={"job_name": "retry me", "items": items, "retry_failed": False},
    ).json()["job_id"]
    assert _wait_final(client, job_id)["job"]["status"] == "partial_success"
    retried = client.post(f"/batch/jobs/{job_id}/retry", json={"max_retries": 3}).json()
    assert retried == {
        "status": "success",
        "message": "Retrying 1 failed operations",
        "job_id": job_id,
        "retrying_operations": 1,
    }
    # the job stays partial_success until the retry's run got going: wait for its real end
    assert wait_until(
        lambda: client.get(f"/batch/jobs/{job_id}").json()["job"]["status"] == "completed",
        timeout=120,
        interval=0.2,
    )
    assert marker.read_text() == "2"
    nothing = client.post(f"/batch/jobs/{job_id}/retry").json()
    assert nothing["status"] == "info"


def test_cancel_a_running_job(client: TestClient):
    # operations that only the cancel ends: the job cannot finish before the cancel arrives
    items = [{"operation": "sleep", "arguments": {"seconds": 3600}}] * 10
    job_id = client.post(
        "/batch/custom/execute", json={"job_name": "long", "items": items, "max_parallel": 1}
    ).json()["job_id"]
    assert wait_until(
        lambda: client.get(f"/batch/jobs/{job_id}").json()["job"]["status"] == "running",
        timeout=60,
        interval=0.1,
    )
    assert client.delete(f"/batch/jobs/{job_id}").status_code == 400  # running: cancel it first
    answer = client.post(
        f"/batch/jobs/{job_id}/cancel", json={"reason": "user pressed stop"}
    ).json()
    assert answer == {
        "status": "success",
        "message": "Job cancellation requested",
        "job_id": job_id,
        "reason": "user pressed stop",
    }
    final = _wait_final(client, job_id, timeout=120)
    assert final["job"]["status"] == "cancelled"
    assert wait_until(
        lambda: (
            client.get(f"/batch/jobs/{job_id}").json()["job"]["operations"][-1]["status"]
            == "skipped"
        ),
        timeout=60,
    )
    # deletable once the runner has stopped its operations (Cancelling -> Cancelled), not before:
    # deleting the run under a running job would leave its operations running
    assert wait_until(
        lambda: client.delete(f"/batch/jobs/{job_id}").status_code == 200, timeout=120
    )
    assert client.get(f"/batch/jobs/{job_id}").status_code == 404


def test_empty_item_list_completes_with_zero_operations(client: TestClient):
    created = client.post(
        "/batch/data/bulk-generate", json={"job_name": "nothing", "items": []}
    ).json()
    assert (
        created["total_operations"] == 0
        and created["message"] == "Batch data generation job created with 0 items"
    )
    final = _wait_final(client, created["job_id"])
    assert final["job"]["status"] == "completed" and final["job"]["project_id"] == "demo"


def test_missing_pipeline_fails_its_operation_naming_where_it_looked(
    client: TestClient, tmp_projects: Path
):
    (tmp_projects / "p1").mkdir()
    (tmp_projects / "p1" / "project.yaml").write_text(
        "name: P1\nsource: sqlite:///a.db\ntarget: sqlite:///b.db\n"
    )
    body = {
        "job_name": "Daily Validation",
        "pipelines": [{"pipeline_id": "dim_customer"}],
        "project_id": "p1",
    }
    created = client.post("/batch/pipelines/bulk-execute", json=body).json()
    assert created["message"] == "Batch pipeline execution job created with 1 pipelines"
    final = _wait_final(client, created["job_id"])
    op = final["job"]["operations"][0]
    assert op["operation_id"] == "pipeline_0_dim_customer" and op["status"] == "failed"
    assert "dim_customer" in op["error"] and "p1" in op["error"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/batch/custom/execute",
            {"job_name": "x", "items": [], "max_parallel": 0},
            "max_parallel",
        ),
        (
            "/batch/custom/execute",
            {"job_name": "x", "items": [], "max_parallel": "lots"},
            "max_parallel",
        ),
        (
            "/batch/data/bulk-generate",
            {"job_name": "x", "items": [{"schema_type": "Retial"}]},
            "schema_type",
        ),
        (
            "/batch/data/bulk-generate",
            {"job_name": "x", "items": [{"schema_type": "Retail", "row_count": 0}]},
            "row_count",
        ),
        (
            "/batch/pipelines/bulk-execute",
            {"job_name": "x", "pipelines": [{"pipeline_id": "../etc"}]},
            "pipeline_id",
        ),
    ],
)
def test_bad_requests_are_refused_with_the_field_named(
    client: TestClient, path: str, body: dict[str, Any], field: str
):
    response = client.post(path, json=body)
    assert response.status_code == 422
    assert field in response.text


def test_unknown_job_is_404_and_health_answers(client: TestClient):
    assert client.get("/batch/jobs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.get("/batch/jobs/not-a-uuid/progress").status_code == 404
    assert client.get("/batch/jobs", params={"status": "bogus"}).status_code == 422
    health = client.get("/health").json()
    assert health["status"] == "healthy" and health["prefect_api"] is True
    assert client.get("/openapi.json").json()["info"]["title"] == "Ombudsman batch operations"
