"""What reading jobs costs stays bounded without changing the answers: a finished job's summary
and progress come from its final progress artifact (no report file read unless operations are
asked for), statistics come from one run history per flow and agree with exact counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from prefect_ombudsman.jobs import service
from prefect_ombudsman.jobs.api import public_job
from prefect_ombudsman.jobs.models import (
    BatchJob,
    BatchJobStatus,
    BatchJobType,
    BatchOperation,
    BatchOperationStatus,
)
from prefect_ombudsman.jobs.studio_report import public_paths, studio_operation
from support import wait_until

pytestmark = pytest.mark.usefixtures("prefect_api")
FINAL = {"completed", "failed", "cancelled", "partial_success"}


def _custom(client: TestClient, items: list[dict[str, Any]], **extra: Any) -> str:
    body = {"job_name": extra.pop("job_name", "read cost"), "items": items, **extra}
    response = client.post("/batch/custom/execute", json=body)
    assert response.status_code == 200, response.text
    return response.json()["job_id"]


def _wait_final(client: TestClient, job_id: str) -> dict[str, Any]:
    assert wait_until(
        lambda: client.get(f"/batch/jobs/{job_id}/progress").json()["job_status"] in FINAL,
        timeout=120,
        interval=0.2,
    )
    return client.get(f"/batch/jobs/{job_id}").json()["job"]


def test_finished_job_summary_and_progress_without_its_report_file(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
):
    job_id = _custom(
        client,
        [{"operation": "noop"}, {"operation": "noop"}, {"operation": "fail"}],
        project_id="readcost",
    )
    full = _wait_final(client, job_id)  # operations asked for: read from the report file
    assert full["status"] == "partial_success" and len(full["operations"]) == 3
    with_report = service.get_job(job_id)
    assert with_report.result_summary and with_report.result_summary["report_path"]

    reads: list[Any] = []
    real = service._read_report

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "_read_report", counted)
    alone = service.get_job(job_id, with_operations=False)
    listed, total = service.list_jobs(project_id="readcost", limit=10)
    assert reads == []  # neither the job nor the list page opened a report file
    assert total == 1 and [j.job_id for j in listed] == [job_id]
    expected = {
        "status": "partial_success",
        "total_operations": 3,
        "completed": 2,
        "failed": 1,
        "skipped": 0,
        "report_path": with_report.result_summary["report_path"],
    }
    for job in (alone, listed[0]):
        assert job.result_summary == expected
        assert job.progress == with_report.progress
        assert job.progress is not None and job.progress.percent_complete == 100.0
        assert (job.success_count, job.failure_count) == (2, 1)
    progress = client.get(f"/batch/jobs/{job_id}/progress").json()
    assert reads == [] and progress["progress"] == with_report.progress.model_dump()
    page = client.get("/batch/jobs", params={"project_id": "readcost"}).json()  # with operations
    assert len(reads) == 1 and len(page["jobs"][0]["operations"]) == 3
    assert page["jobs"][0]["result_summary"]["failed"] == 1


def _exact_counts() -> dict[str, Any]:
    """The statistics as one `count_flow_runs` per status and per type (the slow, exact way)."""
    with service._client() as client:
        return {
            "total_jobs": client.count_flow_runs(**service.run_filters()),
            "status_distribution": {
                s.value: client.count_flow_runs(**service.run_filters(status=s))
                for s in BatchJobStatus
            },
            "type_distribution": {
                t.value: client.count_flow_runs(**service.run_filters(job_type=t))
                for t in BatchJobType
            },
        }


def _counts(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: stats[k] for k in ("total_jobs", "status_distribution", "type_distribution")}


def test_statistics_agree_with_exact_counts_as_jobs_end(client: TestClient):
    before = client.get("/batch/statistics").json()["statistics"]
    ok = _custom(client, [{"operation": "noop"}], project_id="statscount")
    bad = _custom(client, [{"operation": "fail"}], project_id="statscount")
    _wait_final(client, ok)
    _wait_final(client, bad)

    def agrees() -> bool:  # other tests' jobs may still be ending: equal once nothing moves
        stats = client.get("/batch/statistics").json()["statistics"]
        return _counts(stats) == _exact_counts()

    assert wait_until(agrees, timeout=120, interval=0.5)
    after = client.get("/batch/statistics").json()["statistics"]
    assert after["total_jobs"] >= before["total_jobs"] + 2
    assert (
        after["status_distribution"]["completed"] >= before["status_distribution"]["completed"] + 1
    )
    assert after["status_distribution"]["failed"] >= before["status_distribution"]["failed"] + 1
    assert after["type_distribution"]["custom"] >= before["type_distribution"]["custom"] + 2
    assert after["total_jobs"] == sum(after["status_distribution"].values())
    assert after["active_jobs"] == after["status_distribution"]["running"]
    recent = {r["job_id"]: r["status"] for r in after["recent_jobs"]}
    assert recent.get(ok) == "completed" and recent.get(bad) == "failed"


def test_public_job_walks_only_operations_holding_paths(tmp_path: Path):
    """The fast path keeps the answer `public_paths` gives for the whole job."""
    root = tmp_path / "projects"
    ops = [
        BatchOperation(operation_id="custom_0_noop", operation_type="custom", result={"ok": 1}),
        BatchOperation(
            operation_id="custom_1_write",
            operation_type="custom",
            status=BatchOperationStatus.failed,
            error=f"cannot write {root}/out/x.csv",
            result={"report_path": "/srv/elsewhere/r.json", "files": [f"{root}/a/b.json"]},
            metadata={"csv": "/var/tmp/out.csv", "note": "no path here"},
        ),
        BatchOperation(operation_id="custom_2_noop", operation_type="custom"),
    ]
    job = BatchJob(
        job_id="j",
        job_type=BatchJobType.custom,
        name="paths",
        operations=ops,
        result_summary={"report_path": f"{root}/.ombudsman/jobs/batch_j.json"},
    )
    whole = job.model_dump(mode="json")
    whole["operations"] = [studio_operation(op) for op in whole["operations"]]
    expected = public_paths(whole, root)
    answer = public_job(job, root)
    assert answer == expected and list(answer) == list(expected)
    assert answer["operations"][1]["error"] == "cannot write out/x.csv"
    assert answer["operations"][1]["result"] == {"report_path": "r.json", "files": ["a/b.json"]}
    assert answer["operations"][1]["metadata"]["csv"] == "out.csv"
    assert answer["result_summary"]["report_path"] == ".ombudsman/jobs/batch_j.json"
