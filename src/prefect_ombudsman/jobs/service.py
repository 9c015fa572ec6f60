"""Jobs as the outside world sees them: Prefect flow runs of the batch flows, mapped to `BatchJob`.

The flow itself is the source of truth for counts: its progress artifact carries the SPEC §6
counters as JSON, and its report file lists every operation. Task runs serve drill-down while a
job runs. The CLI (`ombudsman jobs ...`) and the REST API call these functions.
"""

from __future__ import annotations

import inspect
import json
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Cancelling, Scheduled
from pydantic import BaseModel

from prefect_ombudsman.confinement import confine_path
from prefect_ombudsman.errors import ConfigurationError, OmbudsmanError
from prefect_ombudsman.jobs.models import (
    TERMINAL_JOB_STATUSES,
    BatchJob,
    BatchJobStatus,
    BatchJobType,
    BatchOperation,
    BatchOperationStatus,
    BatchProgress,
)
from prefect_ombudsman.projects import projects_root

_PAGE = 200
FLOW_NAMES = {
    "bulk-pipeline-execution": BatchJobType.bulk_pipeline_execution,
    "batch-data-generation": BatchJobType.batch_data_generation,
    "multi-project-validation": BatchJobType.multi_project_validation,
    "bulk-metadata-extraction": BatchJobType.bulk_metadata_extraction,
    "batch-comparison": BatchJobType.batch_comparison,
    "custom-batch": BatchJobType.custom,
}


class JobNotFound(OmbudsmanError):
    """No batch job with that id."""


class JobStateError(OmbudsmanError):
    """The job is in a state that does not allow the request."""


def job_status(flow_run: FlowRun) -> BatchJobStatus:
    """Prefect state -> job status (SPEC §4)."""
    state = flow_run.state
    if state is None:
        return BatchJobStatus.pending
    kind = state.type
    if kind in (StateType.SCHEDULED, StateType.PENDING):
        return (
            BatchJobStatus.queued
            if (state.name in ("AwaitingRetry", "Retrying") or flow_run.run_count > 0)
            else BatchJobStatus.pending
        )
    if kind == StateType.RUNNING:
        return BatchJobStatus.running
    if kind == StateType.PAUSED:
        return BatchJobStatus.paused
    if kind == StateType.COMPLETED:
        return BatchJobStatus.completed
    if kind in (StateType.CANCELLING, StateType.CANCELLED):
        return BatchJobStatus.cancelled
    if kind == StateType.FAILED and state.name == "PartialSuccess":
        return BatchJobStatus.partial_success
    return BatchJobStatus.failed


def _client() -> Any:
    return get_client(sync_client=True)


def _parse_id(job_id: str) -> UUID:
    try:
        return UUID(str(job_id))
    except ValueError:
        raise JobNotFound(
            f"job {job_id!r} not found (job ids are Prefect flow-run UUIDs)"
        ) from None


def _read_run(client: SyncPrefectClient, job_id: str) -> tuple[FlowRun, BatchJobType]:
    try:
        run = client.read_flow_run(_parse_id(job_id))
    except ObjectNotFound:
        raise JobNotFound(f"job {job_id!r} not found") from None
    flow = client.read_flow(run.flow_id)
    job_type = FLOW_NAMES.get(flow.name)
    if job_type is None:
        raise JobNotFound(f"job {job_id!r} is a run of flow {flow.name!r}, not a batch job")
    return run, job_type


def _latest_progress(client: SyncPrefectClient, run_id: UUID) -> dict[str, Any] | None:
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            type=ArtifactFilterType(any_=["progress"]),
        ),
        sort=ArtifactSort.UPDATED_DESC,
        limit=1,
    )
    if not artifacts:
        return None
    try:
        data = json.loads(artifacts[0].description or "{}")
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _read_all(read: Callable[..., list[Any]], **filters: Any) -> list[Any]:
    """Every object a Prefect client `read_*` call matches, 200 per request."""
    found: list[Any] = []
    while True:
        page = read(**filters, limit=_PAGE, offset=len(found))
        found.extend(page)
        if len(page) < _PAGE:
            return found


def _operations_from_task_runs(client: SyncPrefectClient, run_id: UUID) -> list[BatchOperation]:
    """Drill-down while a job runs: latest attempt per operation id wins (retried runs duplicate)."""
    runs = _read_all(
        client.read_task_runs, flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
    )
    latest: dict[str, Any] = {}
    for tr in runs:
        prev = latest.get(tr.name)
        if prev is None or (
            tr.flow_run_run_count,
            tr.created or datetime.min.replace(tzinfo=UTC),
        ) >= (
            prev.flow_run_run_count,
            prev.created or datetime.min.replace(tzinfo=UTC),
        ):
            latest[tr.name] = tr
    ops = []
    for name, tr in latest.items():
        kind = tr.state.type if tr.state else None
        status = {
            StateType.COMPLETED: BatchOperationStatus.completed,
            StateType.FAILED: BatchOperationStatus.failed,
            StateType.CRASHED: BatchOperationStatus.failed,
            StateType.CANCELLED: BatchOperationStatus.skipped,
            StateType.RUNNING: BatchOperationStatus.running,
        }.get(kind, BatchOperationStatus.pending)
        ops.append(
            BatchOperation(
                operation_id=name,
                operation_type=name.split("_", 1)[0],
                status=status,
                started_at=tr.start_time,
                completed_at=tr.end_time,
                duration_ms=int(tr.total_run_time.total_seconds() * 1000) if tr.end_time else None,
                error=tr.state.message
                if status == BatchOperationStatus.failed and tr.state
                else None,
            )
        )
    return sorted(ops, key=lambda op: _op_index(op.operation_id))


def _op_index(operation_id: str) -> tuple[int, str]:
    parts = operation_id.split("_", 2)
    return (
        (int(parts[1]), operation_id)
        if len(parts) > 1 and parts[1].isdigit()
        else (1 << 30, operation_id)
    )


def _read_report(path: str | None, projects_dir: str | None = None) -> dict[str, Any] | None:
    """The job's JSON report, only from inside the projects root (None: missing or unreadable)."""
    if not path:
        return None
    try:
        confined = confine_path(path, root=projects_root(projects_dir), field="report_path")
        data = json.loads(confined.read_text(encoding="utf-8"))
    except (OSError, ValueError, ConfigurationError):
        return None
    return data if isinstance(data, dict) else None


def build_job(
    client: SyncPrefectClient, run: FlowRun, job_type: BatchJobType, *, with_operations: bool = True
) -> BatchJob:
    """The `BatchJob` view of one flow run."""
    params = run.parameters or {}
    status = job_status(run)
    progress_data = _latest_progress(client, run.id)
    report = (
        _read_report(progress_data.get("report_path"), params.get("projects_dir"))
        if progress_data
        else None
    )
    if report is not None and report.get("job_id") != str(run.id):
        report = None
    operations: list[BatchOperation] = []
    if with_operations:
        if report is not None and status in TERMINAL_JOB_STATUSES:
            operations = [BatchOperation.model_validate(op) for op in report.get("operations", [])]
        else:
            operations = _operations_from_task_runs(client, run.id)
    progress = None
    if progress_data is not None:
        progress = BatchProgress.model_validate(
            {k: progress_data.get(k) for k in BatchProgress.model_fields if k in progress_data}
        )
    started = run.start_time
    completed = run.end_time if status in TERMINAL_JOB_STATUSES else None
    if status in TERMINAL_JOB_STATUSES and completed is None:
        completed = run.state.timestamp if run.state else None
    duration = int((completed - started).total_seconds() * 1000) if completed and started else None
    if status in TERMINAL_JOB_STATUSES and duration is None:
        duration = 0
    tags = [t for t in run.tags if t != "ombudsman" and not t.startswith(("job-type:", "project:"))]
    return BatchJob(
        job_id=str(run.id),
        job_type=job_type,
        status=status,
        name=params.get("job_name") or run.name,
        description=params.get("description"),
        operations=operations,
        progress=progress,
        parallel_execution=bool(params.get("parallel_execution", False)),
        max_parallel=int(params.get("max_parallel") or 5),
        stop_on_error=bool(params.get("stop_on_error", False)),
        retry_failed=bool(params.get("retry_failed", True)),
        max_retries=int(params.get("max_retries") if params.get("max_retries") is not None else 3),
        created_at=run.created or datetime.now(UTC),
        started_at=started,
        completed_at=completed,
        total_duration_ms=duration,
        success_count=progress.completed_operations if progress else 0,
        failure_count=progress.failed_operations if progress else 0,
        result_summary=(
            {
                k: report[k]
                for k in (
                    "status",
                    "total_operations",
                    "completed",
                    "failed",
                    "skipped",
                    "report_path",
                )
                if k in report
            }
            if report
            else None
        ),
        created_by=params.get("created_by"),
        project_id=params.get("project_id"),
        tags=tags,
        metadata={
            "flow_run_name": run.name,
            "run_count": run.run_count,
            "deployment_id": str(run.deployment_id) if run.deployment_id else None,
        },
    )


def get_job(job_id: str, *, with_operations: bool = True) -> BatchJob:
    with _client() as client:
        run, job_type = _read_run(client, job_id)
        return build_job(client, run, job_type, with_operations=with_operations)


def list_jobs(
    *,
    status: BatchJobStatus | None = None,
    job_type: BatchJobType | None = None,
    project_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[BatchJob], int]:
    """Jobs newest first, filtered; returns (page, total matching)."""
    tags = ["ombudsman"]
    if job_type:
        tags.append(f"job-type:{job_type.value}")
    if project_id:
        tags.append(f"project:{project_id}")
    with _client() as client:
        flows = {
            f.id: f.name
            for f in client.read_flows(
                flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES)))
            )
        }
        runs: list[FlowRun] = _read_all(
            client.read_flow_runs,
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=tags)),
            sort=FlowRunSort.START_TIME_DESC,
        )
        jobs = []
        for run in runs:
            jt = FLOW_NAMES.get(flows.get(run.flow_id, ""))
            if jt is None:
                continue
            if status is not None and job_status(run) != status:
                continue
            jobs.append((run, jt))
        jobs.sort(
            key=lambda pair: pair[0].created or datetime.min.replace(tzinfo=UTC), reverse=True
        )
        page_items = jobs[offset : offset + limit]
        return [build_job(client, run, jt, with_operations=False) for run, jt in page_items], len(
            jobs
        )


def job_statistics() -> dict[str, Any]:
    """Counts by status and type, running jobs, and the ten newest (the Studio's statistics shape)."""
    jobs, total = list_jobs(limit=10_000)
    return {
        "total_jobs": total,
        "status_distribution": {s.value: sum(j.status == s for j in jobs) for s in BatchJobStatus},
        "type_distribution": {t.value: sum(j.job_type == t for j in jobs) for t in BatchJobType},
        "active_jobs": sum(j.status == BatchJobStatus.running for j in jobs),
        "recent_jobs": [
            {
                "job_id": j.job_id,
                "name": j.name,
                "status": j.status.value,
                "created_at": j.created_at.isoformat(),
            }
            for j in jobs[:10]
        ],
    }


def cancel_job(job_id: str, reason: str | None = None) -> BatchJob:
    """Ask the job to stop: Cancelling for a running job (the flow's watcher stops it), Cancelled otherwise."""
    with _client() as client:
        run, job_type = _read_run(client, job_id)
        status = job_status(run)
        if status in TERMINAL_JOB_STATUSES:
            raise JobStateError(f"job {job_id} is already {status.value}")
        message = f"Cancelled: {reason}" if reason else "Cancelled on request"
        state = (
            Cancelling(message=message)
            if status == BatchJobStatus.running
            else Cancelled(message=message)
        )
        client.set_flow_run_state(run.id, state, force=True)
        return build_job(client, client.read_flow_run(run.id), job_type, with_operations=False)


def retry_job(job_id: str, *, wait: bool = True) -> BatchJob:
    """Re-run a finished job in the same flow run: completed operations come back from persisted results.

    A deployment's run is rescheduled for its worker; an in-process run executes here.
    """
    from prefect.flow_engine import run_flow

    from prefect_ombudsman import flows as flow_module

    with _client() as client:
        run, job_type = _read_run(client, job_id)
        status = job_status(run)
        if status not in TERMINAL_JOB_STATUSES:
            raise JobStateError(
                f"job {job_id} is {status.value}; only finished jobs can be retried"
            )
        if status == BatchJobStatus.completed:
            raise JobStateError(f"job {job_id} completed; nothing to retry")
        client.set_flow_run_state(run.id, Scheduled(message="Retried via ombudsman"), force=True)
        if run.deployment_id is not None:
            return build_job(client, client.read_flow_run(run.id), job_type, with_operations=False)
        run = client.read_flow_run(run.id)
    flow = flow_module.flow_for(job_type)
    if wait:
        run_flow(flow, flow_run=run, parameters=run.parameters, return_type="state")
    else:
        threading.Thread(
            target=run_flow,
            kwargs={
                "flow": flow,
                "flow_run": run,
                "parameters": run.parameters,
                "return_type": "state",
            },
            daemon=True,
        ).start()
    return get_job(job_id, with_operations=wait)


def _deployment_for(client: SyncPrefectClient, flow_name: str) -> Any:
    """A deployment that runs `flow_name`: `$OMBUDSMAN_DEPLOYMENT_NAME`, the served one, or prefect.yaml's."""
    names = [n for n in (os.environ.get("OMBUDSMAN_DEPLOYMENT_NAME"), "ombudsman", flow_name) if n]
    for name in names:
        try:
            return client.read_deployment_by_name(f"{flow_name}/{name}")
        except ObjectNotFound:
            continue
    return None


def submit_job(
    job_type: BatchJobType,
    request: BaseModel,
    *,
    projects_dir: str | None = None,
    execution: str | None = None,
) -> BatchJob:
    """Start a job without waiting: through the flow's deployment when one exists (a worker or
    `ombudsman serve` runs it), else in this process on a background thread.

    `execution` ("deployment" | "local", default `$OMBUDSMAN_EXECUTION` else automatic) forces one.
    """
    from prefect.flow_engine import run_flow

    from prefect_ombudsman import flows as flow_module
    from prefect_ombudsman.admission import check_request  # the engines: not for reading jobs

    check_request(request, root=projects_root(projects_dir))  # files confined, before any work
    flow = flow_module.flow_for(job_type)
    accepted = set(inspect.signature(flow.fn).parameters)
    parameters = {k: v for k, v in request.model_dump(mode="json").items() if k in accepted}
    if "projects_dir" in accepted and projects_dir:
        parameters["projects_dir"] = projects_dir
    project_id = getattr(request, "project_id", None)
    tags = [
        "ombudsman",
        f"job-type:{job_type.value}",
        *([f"project:{project_id}"] if project_id else []),
        *request.tags,
    ]
    mode = execution or os.environ.get("OMBUDSMAN_EXECUTION") or "auto"
    with _client() as client:
        deployment = _deployment_for(client, flow.name) if mode != "local" else None
        if mode == "deployment" and deployment is None:
            raise JobStateError(
                f"no deployment of flow {flow.name!r} exists (prefect deploy, or ombudsman serve)"
            )
        if deployment is not None:
            run = client.create_flow_run_from_deployment(
                deployment.id, parameters=parameters, tags=tags
            )
        else:
            run = client.create_flow_run(flow, name=None, parameters=parameters, tags=tags)
            thread = threading.Thread(
                target=run_flow,
                kwargs={
                    "flow": flow,
                    "flow_run": run,
                    "parameters": parameters,
                    "return_type": "state",
                },
                name=f"ombudsman-job-{run.id}",
                daemon=True,
            )
            thread.start()
        return build_job(client, client.read_flow_run(run.id), job_type, with_operations=False)


def delete_job(job_id: str) -> None:
    with _client() as client:
        run, _ = _read_run(client, job_id)
        if job_status(run) == BatchJobStatus.running:
            raise JobStateError(f"job {job_id} is running. Cancel it first.")
        client.delete_flow_run(run.id)
