"""Jobs as the outside world sees them: Prefect flow runs of the batch flows, mapped to `BatchJob`.

The flow itself is the source of truth for counts: its progress artifact carries the SPEC §6
counters as JSON, and its report file lists every operation. Task runs serve drill-down while a
job runs. The CLI (`ombudsman jobs ...`) and the REST API call these functions.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
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
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import AwaitingRetry, Cancelled, Cancelling
from pydantic import BaseModel

from prefect_ombudsman import state_store
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
from prefect_ombudsman.jobs.progress import compute_progress
from prefect_ombudsman.jobs.types import JOB_TYPES, entry_for
from prefect_ombudsman.projects import projects_root
from prefect_ombudsman.redaction import scrub, scrub_data

log = logging.getLogger("prefect_ombudsman.jobs")
_PAGE = 200
# Prefect flow name -> job type of our flows, from the job-type registry
FLOW_NAMES = {entry.flow_name: entry.job_type for entry in JOB_TYPES}


class JobNotFound(OmbudsmanError):
    """No batch job with that id."""


class JobStateError(OmbudsmanError):
    """The job is in a state that does not allow the request."""


class RequestTooLarge(OmbudsmanError):
    """The request's parameters exceed what Prefect stores on a flow run (422 / exit 2)."""


def parameter_limit() -> int:
    """Prefect's limit on a flow run's JSON-serialized parameters (`PREFECT_SERVER_API_MAX_PARAMETER_SIZE`)."""
    from prefect.settings import get_current_settings

    return int(get_current_settings().server.api.max_parameter_size)


def check_parameter_size(parameters: dict[str, Any]) -> None:
    """Refuse, before any flow run exists, parameters Prefect would refuse (default 512 KiB)."""
    limit = parameter_limit()
    if limit <= 0:
        return
    size = len(json.dumps(parameters, separators=(",", ":"), default=str).encode())
    if size <= limit:
        return
    sizes = {
        k: len(json.dumps(v, separators=(",", ":"), default=str).encode())
        for k, v in parameters.items()
    }
    field = max(sizes, key=lambda k: sizes[k])
    count = f" ({len(parameters[field]):,} entries)" if isinstance(parameters[field], list) else ""
    raise RequestTooLarge(
        f"{field}: the request is {size:,} bytes as flow-run parameters, over Prefect's limit of "
        f"{limit:,} bytes ({limit // 1024} KiB, PREFECT_SERVER_API_MAX_PARAMETER_SIZE); "
        f"{field!r} takes {sizes[field]:,} bytes{count}: split it into several jobs"
    )


def seal_parameters(parameters: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Move inline credentials into Prefect Secret blocks (see credentials.py); (sealed, block names)."""
    from prefect_ombudsman import credentials

    if not credentials.has_secret(parameters):
        return parameters, []
    from prefect_ombudsman.blocks.credential_store import delete_credentials, save_credential

    saved: list[str] = []

    def store(value: str) -> str:
        name = save_credential(value)
        saved.append(name)
        return name

    try:
        sealed, names = credentials.seal(parameters, store)
    except BaseException:
        delete_credentials(saved)
        raise
    return sealed, names


# Artifacts the jobs service writes beside the runner's progress artifact (all keyed by flow run):
# the planned operations (written at submit, so a job is born with all its operations pending),
# the cancel reason, and the operations a retry re-runs.
PROGRESS_ARTIFACT = "progress"
PLAN_ARTIFACT = "ombudsman-plan"
CANCEL_ARTIFACT = "ombudsman-cancel"
RETRY_ARTIFACT = "ombudsman-retry"
_RETRY_STATE_NAMES = ("AwaitingRetry", "Retrying")
ACTIVE_STATE_TYPES = (
    StateType.SCHEDULED,
    StateType.PENDING,
    StateType.RUNNING,
    StateType.PAUSED,
    StateType.CANCELLING,
)


def job_status(flow_run: FlowRun) -> BatchJobStatus:
    """Prefect state -> job status (SPEC §4)."""
    state = flow_run.state
    if state is None:
        return BatchJobStatus.pending
    return status_of_state(state.type, state.name)


def status_of_state(kind: StateType, name: str | None) -> BatchJobStatus:
    """A Prefect state's type and name -> job status."""
    if kind in (StateType.SCHEDULED, StateType.PENDING):
        return BatchJobStatus.queued if name in _RETRY_STATE_NAMES else BatchJobStatus.pending
    if kind == StateType.RUNNING:
        return BatchJobStatus.running
    if kind == StateType.PAUSED:
        return BatchJobStatus.paused
    if kind == StateType.COMPLETED:
        return BatchJobStatus.completed
    if kind in (StateType.CANCELLING, StateType.CANCELLED):
        return BatchJobStatus.cancelled
    if kind == StateType.FAILED and name == "PartialSuccess":
        return BatchJobStatus.partial_success
    return BatchJobStatus.failed


def state_filter(status: BatchJobStatus | None) -> FlowRunFilterState | None:
    """The Prefect state filter matching exactly the runs `job_status` maps to `status`."""
    if status is None:
        return None
    types = {
        BatchJobStatus.pending: [StateType.SCHEDULED, StateType.PENDING],
        BatchJobStatus.queued: [StateType.SCHEDULED, StateType.PENDING],
        BatchJobStatus.running: [StateType.RUNNING],
        BatchJobStatus.paused: [StateType.PAUSED],
        BatchJobStatus.completed: [StateType.COMPLETED],
        BatchJobStatus.cancelled: [StateType.CANCELLING, StateType.CANCELLED],
        BatchJobStatus.failed: [StateType.FAILED, StateType.CRASHED],
        BatchJobStatus.partial_success: [StateType.FAILED],
    }[status]
    names = None
    if status == BatchJobStatus.pending:
        names = FlowRunFilterStateName(not_any_=list(_RETRY_STATE_NAMES))
    elif status == BatchJobStatus.queued:
        names = FlowRunFilterStateName(any_=list(_RETRY_STATE_NAMES))
    elif status == BatchJobStatus.partial_success:
        names = FlowRunFilterStateName(any_=["PartialSuccess"])
    elif status == BatchJobStatus.failed:
        names = FlowRunFilterStateName(not_any_=["PartialSuccess"])
    return FlowRunFilterState(type=FlowRunFilterStateType(any_=types), name=names)


# concurrent Prefect reads of one request (statistics' histories, a page's count beside its runs)
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ombudsman-prefect")
_SHARED_CLIENTS: dict[tuple[Any, ...], SyncPrefectClient] = {}
_SHARED_LOCK = threading.Lock()


@contextmanager
def _client() -> Iterator[SyncPrefectClient]:
    """The process's Prefect client for the current API (one per process and API URL/credential):
    its connection pool and TLS context are reused by every request instead of built per call
    (tens of milliseconds each). An in-process (ephemeral) API gets a fresh client per call."""
    from prefect.settings import get_current_settings

    api = get_current_settings().api
    if not api.url:
        with get_client(sync_client=True) as client:
            yield client
        return
    secrets = "\0".join(v.get_secret_value() if v else "" for v in (api.key, api.auth_string))
    credential = hashlib.sha256(secrets.encode()).hexdigest()  # the key holds no secret itself
    key = (os.getpid(), str(api.url), credential, api.request_timeout, api.tls_insecure_skip_verify)
    with _SHARED_LOCK:
        shared = _SHARED_CLIENTS.get(key)
        if shared is None:
            shared = _SHARED_CLIENTS[key] = get_client(sync_client=True)
            shared.__enter__()
    yield shared


def _parse_id(job_id: str) -> UUID:
    try:
        return UUID(str(job_id))
    except ValueError:
        raise JobNotFound(
            f"job {job_id!r} not found (job ids are Prefect flow-run UUIDs)"
        ) from None


# flow id -> flow name of our six flows; flows are created once, so one read fills it
_FLOW_IDS: dict[UUID, str] = {}
_FLOW_IDS_LOCK = threading.Lock()


def flow_names_by_id(client: SyncPrefectClient, wanted: Iterable[UUID] = ()) -> dict[UUID, str]:
    """Our flows by id; read from Prefect (one call) only when an id is not known yet."""
    with _FLOW_IDS_LOCK:
        if not _FLOW_IDS or any(fid not in _FLOW_IDS for fid in wanted):
            flows = client.read_flows(
                flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES)))
            )
            _FLOW_IDS.update({f.id: f.name for f in flows})
        return dict(_FLOW_IDS)


def job_type_of(client: SyncPrefectClient, run: FlowRun) -> BatchJobType | None:
    return FLOW_NAMES.get(flow_names_by_id(client, [run.flow_id]).get(run.flow_id, ""))


def _read_run(client: SyncPrefectClient, job_id: str) -> tuple[FlowRun, BatchJobType]:
    try:
        run = client.read_flow_run(_parse_id(job_id))
    except ObjectNotFound:
        raise JobNotFound(f"job {job_id!r} not found") from None
    job_type = job_type_of(client, run)
    if job_type is None:
        raise JobNotFound(f"job {job_id!r} is a run of another flow, not a batch job")
    return run, job_type


@dataclass
class RunArtifacts:
    """What the flow and the service recorded about one run beside its state."""

    progress: dict[str, Any] | None = None
    plan: list[dict[str, Any]] | None = None
    cancel_reason: str | None = None
    retry: dict[str, Any] | None = None


def read_run_artifacts(
    client: SyncPrefectClient,
    run_ids: list[UUID],
    types: Iterable[str] = (PROGRESS_ARTIFACT, PLAN_ARTIFACT, CANCEL_ARTIFACT, RETRY_ARTIFACT),
    into: dict[UUID, RunArtifacts] | None = None,
) -> dict[UUID, RunArtifacts]:
    """The newest artifact of each type for many runs: one `read_artifacts` request per 200."""
    found = into if into is not None else {rid: RunArtifacts() for rid in run_ids}
    if not run_ids:
        return found
    seen: set[tuple[UUID, str]] = set()
    for artifact in read_all(
        client.read_artifacts,
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=list(run_ids)),
            type=ArtifactFilterType(any_=list(types)),
        ),
        sort=ArtifactSort.UPDATED_DESC,
    ):
        key = (artifact.flow_run_id, artifact.type)
        if artifact.flow_run_id not in found or key in seen:
            continue
        seen.add(key)
        entry = found[artifact.flow_run_id]
        if artifact.type == PROGRESS_ARTIFACT:
            try:
                data = json.loads(artifact.description or "{}")
            except json.JSONDecodeError:
                data = None
            entry.progress = data if isinstance(data, dict) else None
        elif artifact.type == PLAN_ARTIFACT and isinstance(artifact.data, dict):
            entry.plan = list(artifact.data.get("operations") or [])
        elif artifact.type == CANCEL_ARTIFACT and isinstance(artifact.data, dict):
            entry.cancel_reason = artifact.data.get("reason")
        elif artifact.type == RETRY_ARTIFACT and isinstance(artifact.data, dict):
            entry.retry = {**artifact.data, "requested_at": artifact.created}
    return found


def read_all(read: Callable[..., list[Any]], **filters: Any) -> list[Any]:
    """Every object a Prefect client `read_*` call matches, 200 per request."""
    found: list[Any] = []
    while True:
        page = read(**filters, limit=_PAGE, offset=len(found))
        found.extend(page)
        if len(page) < _PAGE:
            return found


def _task_run_status(tr: Any) -> BatchOperationStatus:
    kind: StateType | None = tr.state.type if tr.state else None
    return (
        {
            StateType.COMPLETED: BatchOperationStatus.completed,
            StateType.FAILED: BatchOperationStatus.failed,
            StateType.CRASHED: BatchOperationStatus.failed,
            StateType.CANCELLED: BatchOperationStatus.skipped,
            StateType.RUNNING: BatchOperationStatus.running,
        }.get(kind, BatchOperationStatus.pending)
        if kind
        else BatchOperationStatus.pending
    )


def read_task_runs(client: SyncPrefectClient, run_ids: list[UUID]) -> dict[UUID, list[Any]]:
    """Task runs of many flow runs at once (drill-down of running jobs)."""
    by_run: dict[UUID, list[Any]] = {rid: [] for rid in run_ids}
    if not run_ids:
        return by_run
    for tr in read_all(
        client.read_task_runs, flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids))
    ):
        by_run.setdefault(tr.flow_run_id, []).append(tr)
    return by_run


def _operations_from_task_runs(
    task_runs: list[Any], retry: dict[str, Any] | None = None
) -> dict[str, BatchOperation]:
    """Drill-down while a job runs: latest attempt per operation id wins (retried runs duplicate).

    Operations a pending retry will re-run read `pending` until their new attempt starts.
    """
    latest: dict[str, Any] = {}
    for tr in task_runs:
        prev = latest.get(tr.name)
        if prev is None or (
            tr.flow_run_run_count,
            tr.created or datetime.min.replace(tzinfo=UTC),
        ) >= (
            prev.flow_run_run_count,
            prev.created or datetime.min.replace(tzinfo=UTC),
        ):
            latest[tr.name] = tr
    retried = set((retry or {}).get("operation_ids") or [])
    requested_at = (retry or {}).get("requested_at")
    ops: dict[str, BatchOperation] = {}
    for name, tr in latest.items():
        if (
            name in retried
            and requested_at is not None
            and tr.created
            and tr.created < requested_at
        ):
            continue  # the previous attempt: the planned entry (pending) stands for it
        status = _task_run_status(tr)
        ops[name] = BatchOperation(
            operation_id=name,
            operation_type=name.split("_", 1)[0],
            status=status,
            started_at=tr.start_time,
            completed_at=tr.end_time,
            duration_ms=int(tr.total_run_time.total_seconds() * 1000) if tr.end_time else None,
            error=tr.state.message if status == BatchOperationStatus.failed and tr.state else None,
        )
    return ops


def _op_index(operation_id: str) -> tuple[int, str]:
    parts = operation_id.split("_", 2)
    return (
        (int(parts[1]), operation_id)
        if len(parts) > 1 and parts[1].isdigit()
        else (1 << 30, operation_id)
    )


def _read_report(
    path: str | None, projects_dir: str | None = None, progress: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The job's JSON report: the local copy when it is the job's latest (`report_id` of the
    progress artifact) and inside the projects root, else the copy in Prefect result storage
    (None: missing or unreadable)."""
    progress = progress or {}
    report_id, job_id = progress.get("report_id"), progress.get("job_id")
    data: Any = None
    if path:
        try:
            confined = confine_path(path, root=projects_root(projects_dir), field="report_path")
            data = json.loads(confined.read_text(encoding="utf-8"))
        except (OSError, ValueError, ConfigurationError):
            data = None
    if isinstance(data, dict) and (not report_id or data.get("report_id") == report_id):
        return data
    if report_id and job_id:
        try:
            return state_store.read_report(
                job_id, storage=progress.get("state_storage"), report_id=report_id
            )
        except ConfigurationError:
            return None
    return None


def final_summary(progress: dict[str, Any] | None, status: BatchJobStatus) -> dict[str, Any] | None:
    """The job summary of a finished run from its final progress artifact, without its report file.

    The runner's last update of the artifact (forced, after the report is written) carries the
    final status, the counters and `report_path`; an artifact still saying running (a crash) or
    without a report does not describe the finished job (None: read the report, or plan).
    """
    if (
        not progress
        or status not in TERMINAL_JOB_STATUSES
        or progress.get("job_status") not in {s.value for s in TERMINAL_JOB_STATUSES}
        or not (progress.get("report_path") or progress.get("report_id"))  # a report was kept
    ):
        return None
    return {
        "status": progress["job_status"],
        "total_operations": progress.get("total_operations"),
        "completed": progress.get("completed_operations"),
        "failed": progress.get("failed_operations"),
        "skipped": progress.get("skipped_operations"),
        "report_path": progress.get("report_path"),
    }


def _planned(plan: list[dict[str, Any]]) -> dict[str, BatchOperation]:
    return {
        p["operation_id"]: BatchOperation(
            operation_id=p["operation_id"],
            operation_type=p.get("operation_type") or p["operation_id"].split("_", 1)[0],
            metadata=p.get("metadata"),
        )
        for p in plan
        if isinstance(p, dict) and p.get("operation_id")
    }


def _live_operations(
    arts: RunArtifacts, task_runs: list[Any], status: BatchJobStatus
) -> list[BatchOperation]:
    """Every planned operation (pending until it starts) overlaid with its task run."""
    ops = _planned(arts.plan or [])
    for op_id, op in _operations_from_task_runs(task_runs, arts.retry).items():
        planned = ops.get(op_id)
        if planned is None and (ops or _op_index(op_id)[0] == 1 << 30):
            # Prefect creates a task run under a generated name ("operation-3f2") and renames
            # it to its operation id as it starts: a name no plan knows is not an operation
            continue
        if planned is not None:
            op.operation_type = planned.operation_type
            op.metadata = planned.metadata
        ops[op_id] = op
    if status in TERMINAL_JOB_STATUSES:
        # ended without a report (cancelled before it started, crashed): nothing is left running
        for op in ops.values():
            if op.status in (BatchOperationStatus.pending, BatchOperationStatus.running):
                op.status = BatchOperationStatus.skipped
                op.error = op.error or f"not started: job {status.value}"
    return sorted(ops.values(), key=lambda op: _op_index(op.operation_id))


def build_job(
    client: SyncPrefectClient,
    run: FlowRun,
    job_type: BatchJobType,
    *,
    with_operations: bool = True,
    artifacts: RunArtifacts | None = None,
    task_runs: list[Any] | None = None,
) -> BatchJob:
    """The `BatchJob` view of one flow run (artifacts and task runs read here unless given)."""
    params = run.parameters or {}
    status = job_status(run)
    arts = artifacts
    if arts is None:
        arts = read_run_artifacts(client, [run.id])[run.id]
    progress_data = arts.progress
    final = final_summary(progress_data, status)
    report = (
        _read_report(
            progress_data.get("report_path"),
            params.get("projects_dir"),
            {**progress_data, "job_id": str(run.id)},
        )
        if progress_data and (with_operations or final is None)
        else None
    )
    if report is not None and (
        report.get("job_id") != str(run.id) or status not in TERMINAL_JOB_STATUSES
    ):
        report = None  # a retry is under way: the old report no longer describes the job
    operations: list[BatchOperation] = []
    if with_operations:
        if report is not None:
            operations = [BatchOperation.model_validate(op) for op in report.get("operations", [])]
        else:
            if task_runs is None:
                task_runs = read_task_runs(client, [run.id])[run.id]
            operations = _live_operations(arts, task_runs, status)
        if arts.cancel_reason and status == BatchJobStatus.cancelled:
            for op in operations:
                if op.status == BatchOperationStatus.skipped:
                    op.error = f"Cancelled: {arts.cancel_reason}"
    progress = None
    if progress_data is not None and (
        report is not None or final is not None or status not in TERMINAL_JOB_STATUSES
    ):
        progress = BatchProgress.model_validate(
            {k: progress_data.get(k) for k in BatchProgress.model_fields if k in progress_data}
        )
    if with_operations and operations and (progress is None or status == BatchJobStatus.queued):
        progress = compute_progress(
            operations, parallelism=int(params.get("max_parallel") or 1), total=len(operations)
        )
    elif progress is None and arts.plan is not None:
        total = len(arts.plan)
        progress = BatchProgress(
            total_operations=total,
            completed_operations=0,
            failed_operations=0,
            skipped_operations=total if status in TERMINAL_JOB_STATUSES else 0,
            percent_complete=100.0 if status in TERMINAL_JOB_STATUSES or not total else 0.0,
        )
    started = run.start_time
    completed: datetime | None = run.end_time if status in TERMINAL_JOB_STATUSES else None
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
        max_retries=int(params["max_retries"] if params.get("max_retries") is not None else 3),
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
                    "validation_report_path",
                )
                if k in report
            }
            if report
            else final
        ),
        created_by=params.get("created_by"),
        project_id=params.get("project_id"),
        tags=tags,
        metadata={
            "flow_run_name": run.name,
            "run_count": run.run_count,
            "deployment_id": str(run.deployment_id) if run.deployment_id else None,
            **({"cancel_reason": arts.cancel_reason} if arts.cancel_reason else {}),
        },
    )


def get_job(job_id: str, *, with_operations: bool = True) -> BatchJob:
    with _client() as client:
        run, job_type = _read_run(client, job_id)
        arts = run_artifacts(client, [run])
        return build_job(
            client, run, job_type, with_operations=with_operations, artifacts=arts[run.id]
        )


def read_job_report(job_id: str, projects_dir: str | None = None) -> dict[str, Any] | None:
    """The job's whole JSON report, from a local copy (inside `projects_dir`, default the job's
    projects root) or Prefect result storage (None: none yet)."""
    with _client() as client:
        run, _ = _read_run(client, job_id)
        progress = read_run_artifacts(client, [run.id], types=(PROGRESS_ARTIFACT,))[run.id].progress
    if not progress:
        return None
    return _read_report(
        progress.get("report_path"),
        projects_dir or (run.parameters or {}).get("projects_dir"),
        {**progress, "job_id": str(run.id)},
    )


def run_artifacts(client: SyncPrefectClient, runs: list[FlowRun]) -> dict[UUID, RunArtifacts]:
    """Artifacts of many runs in one request, plus their plans (a second request) only for runs
    whose final report is not there yet: a finished job never reads its plan."""
    arts = read_run_artifacts(
        client, [r.id for r in runs], types=(PROGRESS_ARTIFACT, CANCEL_ARTIFACT, RETRY_ARTIFACT)
    )
    unfinished = [r.id for r in runs if _unfinished(r, arts[r.id])]
    read_run_artifacts(client, unfinished, types=(PLAN_ARTIFACT,), into=arts)
    return arts


def _unfinished(run: FlowRun, arts: RunArtifacts) -> bool:
    """No final report describes the job yet (its operations come from the plan and task runs)."""
    return job_status(run) not in TERMINAL_JOB_STATUSES or not (arts.progress or {}).get(
        "report_path"
    )


def run_filters(
    *,
    status: BatchJobStatus | None = None,
    job_type: BatchJobType | None = None,
    project_id: str | None = None,
) -> dict[str, Any]:
    """`read_flow_runs` / `count_flow_runs` filters for jobs: our flows, project tag, state."""
    names = [n for n, jt in FLOW_NAMES.items() if job_type is None or jt == job_type]
    return {
        "flow_filter": FlowFilter(name=FlowFilterName(any_=names)),
        "flow_run_filter": FlowRunFilter(
            tags=FlowRunFilterTags(all_=[f"project:{project_id}"]) if project_id else None,
            state=state_filter(status),
        ),
    }


def build_jobs(
    client: SyncPrefectClient, runs: list[FlowRun], *, with_operations: bool = True
) -> list[BatchJob]:
    """Many jobs with a bounded number of Prefect calls: artifacts of all runs in one request
    (plans only for runs without a final report), task runs of the unfinished ones in one more."""
    names = flow_names_by_id(client, {r.flow_id for r in runs})
    typed = [(r, jt) for r in runs if (jt := FLOW_NAMES.get(names.get(r.flow_id, ""))) is not None]
    arts = run_artifacts(client, [r for r, _ in typed])
    unfinished = [r.id for r, _ in typed if _unfinished(r, arts[r.id])]
    task_runs = read_task_runs(client, unfinished) if with_operations else {}
    return [
        build_job(
            client,
            r,
            jt,
            with_operations=with_operations,
            artifacts=arts[r.id],
            task_runs=task_runs.get(r.id, []),
        )
        for r, jt in typed
    ]


def list_jobs(
    *,
    status: BatchJobStatus | None = None,
    job_type: BatchJobType | None = None,
    project_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
    with_operations: bool = False,
) -> tuple[list[BatchJob], int]:
    """Jobs newest first, filtered in Prefect; returns (page, total matching).

    Prefect calls per page: one `read_flow_runs` per 200 jobs (filter, sort, limit/offset), one
    `count_flow_runs` (beside them, on another thread), two `read_artifacts`, one `read_task_runs` (when operations are asked for
    and some job is unfinished); "newest" is the expected start time, the creation time of a
    submitted job.
    """
    filters = run_filters(status=status, job_type=job_type, project_id=project_id)
    with _client() as client:
        counted = _POOL.submit(client.count_flow_runs, **filters)
        runs: list[FlowRun] = []
        while len(runs) < limit:  # Prefect serves at most 200 runs a request
            want = min(_PAGE, limit - len(runs))
            page = client.read_flow_runs(
                **filters,
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=want,
                offset=offset + len(runs),
            )
            runs.extend(page)
            if len(page) < want:
                break
        total = counted.result()
        return build_jobs(client, runs, with_operations=with_operations), total


# one history interval covering every run: Prefect buckets runs by expected start time, which it
# sets on every run (the creation time of a submitted job, the slot of a scheduled one)
_HISTORY_SPAN = {"history_start": "1970-01-01T00:00:00Z", "history_end": "2200-01-01T00:00:00Z"}


def _state_counts(client: SyncPrefectClient, flow_name: str) -> dict[BatchJobStatus, int]:
    """Runs of one flow by job status: one `POST /flow_runs/history` (counts per state type and name)."""
    response = client.request(
        "POST",
        "/flow_runs/history",
        json={
            **_HISTORY_SPAN,
            "history_interval_seconds": 231 * 365 * 86400,
            "flows": FlowFilter(name=FlowFilterName(any_=[flow_name])).model_dump(mode="json"),
        },
    )
    response.raise_for_status()
    counts = dict.fromkeys(BatchJobStatus, 0)
    for interval in response.json():
        for state in interval.get("states") or []:
            status = status_of_state(StateType(state["state_type"]), state.get("state_name"))
            counts[status] += int(state.get("count_runs") or 0)
    return counts


def job_statistics() -> dict[str, Any]:
    """Counts by status and type, running jobs, and the ten newest (the Studio's statistics shape).

    Seven Prefect requests, concurrently: one run history per flow (its runs counted by state type
    and name in one interval, which gives both distributions and the total) and the ten newest runs.
    """
    with _client() as client:
        recent_call = _POOL.submit(
            client.read_flow_runs,
            **run_filters(),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=10,
        )
        per_flow = list(_POOL.map(lambda name: _state_counts(client, name), FLOW_NAMES))
        recent: list[FlowRun] = recent_call.result()
    by_status = {s: sum(c[s] for c in per_flow) for s in BatchJobStatus}
    by_type = dict.fromkeys(BatchJobType, 0)
    for name, counts in zip(FLOW_NAMES, per_flow, strict=True):
        by_type[FLOW_NAMES[name]] += sum(counts.values())
    return {
        "total_jobs": sum(by_status.values()),
        "status_distribution": {s.value: n for s, n in by_status.items()},
        "type_distribution": {t.value: n for t, n in by_type.items()},
        "active_jobs": by_status[BatchJobStatus.running],
        "recent_jobs": [
            {
                "job_id": str(r.id),
                "name": (r.parameters or {}).get("job_name") or r.name,
                "status": job_status(r).value,
                "created_at": (r.created or datetime.now(UTC)).isoformat(),
            }
            for r in recent
        ],
    }


async def job_statistics_async() -> dict[str, Any]:
    """`job_statistics` off the event loop."""
    return await asyncio.to_thread(job_statistics)


def _create_run_artifact(
    client: SyncPrefectClient, run_id: UUID, kind: str, data: dict[str, Any], description: str
) -> None:
    from prefect.client.schemas.actions import ArtifactCreate

    client.create_artifact(
        ArtifactCreate(type=kind, flow_run_id=run_id, data=data, description=description)
    )


def cancel_job(job_id: str, reason: str | None = None) -> BatchJob:
    """Ask the job to stop: Cancelling for a running job (the flow's watcher stops it), Cancelled otherwise.

    The reason is kept in an artifact of the run and shown as `Cancelled: <reason>` in the error
    of every operation the cancel skipped.
    """
    with _client() as client:
        run, job_type = _read_run(client, job_id)
        status = job_status(run)
        if status in TERMINAL_JOB_STATUSES:
            raise JobStateError(f"job {job_id} is already {status.value}")
        message = f"Cancelled: {reason}" if reason else "Cancelled on request"
        if reason:
            _create_run_artifact(
                client, run.id, CANCEL_ARTIFACT, {"reason": reason}, f"Cancel reason: {reason}"
            )
        state: State[Any] = (
            Cancelling(message=message)
            if status == BatchJobStatus.running
            else Cancelled(message=message)
        )
        client.set_flow_run_state(run.id, state, force=True)
        return build_job(client, client.read_flow_run(run.id), job_type, with_operations=False)


def retry_job(
    job_id: str, *, wait: bool = True, operation_ids: list[str] | None = None
) -> BatchJob:
    """Re-run a finished job in the same flow run: completed operations come back from persisted results.

    With `operation_ids`, only those operations run again and every other one keeps its outcome
    (the runner reads the selection file beside its checkpoint). A deployment's run is rescheduled
    for its worker; an in-process run executes here.
    """
    from prefect.flow_engine import run_flow

    with _client() as client:
        run, job_type = _read_run(client, job_id)
        status = job_status(run)
        if status not in TERMINAL_JOB_STATUSES:
            raise JobStateError(
                f"job {job_id} is {status.value}; only finished jobs can be retried"
            )
        if status == BatchJobStatus.completed:
            raise JobStateError(f"job {job_id} completed; nothing to retry")
        if operation_ids is not None:
            progress = read_run_artifacts(client, [run.id], types=(PROGRESS_ARTIFACT,))[run.id]
            storage = (progress.progress or {}).get("state_storage")
            state_store.write_retry_selection(
                state_store.store_for(storage), str(run.id), operation_ids
            )
            _create_run_artifact(
                client,
                run.id,
                RETRY_ARTIFACT,
                {"operation_ids": list(operation_ids)},
                f"Retry of {len(operation_ids)} operations",
            )
        client.set_flow_run_state(
            run.id, AwaitingRetry(message="Retried via ombudsman"), force=True
        )
        if run.deployment_id is not None:
            return build_job(client, client.read_flow_run(run.id), job_type, with_operations=False)
        run = client.read_flow_run(run.id)
    flow = entry_for(job_type).load_flow()
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


def plan_operations(
    job_type: BatchJobType, request: BaseModel, job_id: str, projects_dir: str | None
) -> list[dict[str, Any]]:
    """The operations the flow will run (its own planner), as {operation_id, operation_type, metadata}."""
    plans = entry_for(job_type).plan(request, job_id, projects_dir)
    return [
        scrub_data(
            {
                "operation_id": p.operation_id,
                "operation_type": p.operation_type,
                "metadata": p.metadata,
            }
        )
        for p in plans
    ]


def _sealed_request(request: BaseModel, parameters: dict[str, Any]) -> BaseModel:
    """The request as the flow will see it (inline credentials replaced by their references)."""
    fields = type(request).model_fields
    return type(request).model_validate({k: v for k, v in parameters.items() if k in fields})


def _record_plan(
    client: SyncPrefectClient,
    run: FlowRun,
    job_type: BatchJobType,
    request: BaseModel,
    projects_dir: str | None,
) -> int | None:
    """Write the planned operations as an artifact of the run, before it starts (None if planning failed:
    the flow then reports the same problem as its operation's error)."""
    try:
        plan = plan_operations(job_type, request, str(run.id), projects_dir)
    except Exception as exc:
        log.warning("could not plan job %s ahead of its run: %s", run.id, scrub(str(exc)))
        return None
    _create_run_artifact(
        client,
        run.id,
        PLAN_ARTIFACT,
        {"operations": plan},
        f"{len(plan)} planned operations",
    )
    return len(plan)


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
    from prefect_ombudsman.admission import check_request  # the engines: not for reading jobs

    check_request(request, root=projects_root(projects_dir))  # files confined, before any work
    flow = entry_for(job_type).load_flow()
    accepted = set(inspect.signature(flow.fn).parameters)
    parameters = {k: v for k, v in request.model_dump(mode="json").items() if k in accepted}
    if "projects_dir" in accepted and projects_dir:
        parameters["projects_dir"] = projects_dir
    check_parameter_size(parameters)
    project_id = getattr(request, "project_id", None)
    tags = [
        "ombudsman",
        f"job-type:{job_type.value}",
        *([f"project:{project_id}"] if project_id else []),
        *(getattr(request, "tags", None) or []),
    ]
    mode = execution or os.environ.get("OMBUDSMAN_EXECUTION") or "auto"
    with _client() as client:
        deployment = _deployment_for(client, flow.name) if mode != "local" else None
        if mode == "deployment" and deployment is None:
            raise JobStateError(
                f"no deployment of flow {flow.name!r} exists (prefect deploy, or ombudsman serve)"
            )
        parameters, sealed = seal_parameters(parameters)
        try:
            check_parameter_size(parameters)  # references are a little longer than URLs
            run = _create_run(
                client,
                flow,
                deployment,
                parameters,
                tags,
                # planned from the sealed parameters: no inline credential reaches the artifact
                on_created=lambda run: _record_plan(
                    client, run, job_type, _sealed_request(request, parameters), projects_dir
                ),
            )
        except BaseException:
            from prefect_ombudsman.blocks.credential_store import delete_credentials

            delete_credentials(sealed)
            raise
        return build_job(client, client.read_flow_run(run.id), job_type, with_operations=False)


def _create_run(
    client: SyncPrefectClient,
    flow: Any,
    deployment: Any,
    parameters: dict[str, Any],
    tags: list[str],
    on_created: Callable[[FlowRun], Any] | None = None,
) -> FlowRun:
    """The flow run: scheduled for the deployment's worker, else started on a thread here
    (`on_created` runs between the run's creation and its start)."""
    from prefect.flow_engine import run_flow

    if deployment is not None:
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters=parameters, tags=tags
        )
        if on_created is not None:
            on_created(run)
    else:
        run = client.create_flow_run(flow, name=None, parameters=parameters, tags=tags)
        if on_created is not None:
            on_created(run)
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
    return run


def delete_job(job_id: str) -> None:
    """Delete a finished job's flow run and the Secret blocks holding its inline credentials."""
    from prefect_ombudsman.blocks.credential_store import delete_credentials
    from prefect_ombudsman.credentials import references

    with _client() as client:
        run, _ = _read_run(client, job_id)
        if job_status(run) == BatchJobStatus.running:
            raise JobStateError(f"job {job_id} is running. Cancel it first.")
        if run.state is not None and run.state.is_cancelling():
            raise JobStateError(
                f"job {job_id} is being cancelled: its running operations are still stopping. "
                "Delete it once it has ended."
            )
        client.delete_flow_run(run.id)
    delete_credentials(references(run.parameters or {}))
