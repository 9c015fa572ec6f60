"""The Studio's `/batch` REST API on top of Prefect (`ombudsman api`; OpenAPI at `/docs`).

Request and response shapes are the Studio's (reference/studio-today.md §1.5), so its clients and
documented `curl` examples work unchanged; job ids are Prefect flow-run ids. Refusals are 4xx
with a `detail` naming the problem, never a 500.
"""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic_core
from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope

from prefect_ombudsman import state_store
from prefect_ombudsman.confinement import confine_path
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.jobs import service, studio, websocket
from prefect_ombudsman.jobs.auth import AuthSettings, authenticate, install_auth, public
from prefect_ombudsman.jobs.boundary import install_boundary
from prefect_ombudsman.jobs.models import (
    BatchJobCancelRequest,
    BatchJobCreateResponse,
    BatchJobListResponse,
    BatchJobRetryRequest,
    BatchJobStatus,
    BatchJobStatusResponse,
    BatchJobType,
    BatchProgress,
)
from prefect_ombudsman.jobs.studio_report import (
    NO_RUNS,
    build_studio_report,
    pipeline_results,
    public_paths,
    studio_operation,
)
from prefect_ombudsman.jobs.types import JOB_TYPES, JobType
from prefect_ombudsman.projects import default_project_id, projects_root
from prefect_ombudsman.redaction import scrub, scrub_data

router = APIRouter(prefix="/batch", tags=["batch"])


def _create(entry: JobType, request: Any, app_state: Any) -> BatchJobCreateResponse:
    if "job_name" not in request.model_fields_set:
        raise HTTPException(
            status_code=422,
            detail=[{"loc": ["body", "job_name"], "msg": "Field required", "type": "missing"}],
        )
    if request.project_id is None and entry.default_project:
        request = request.model_copy(update={"project_id": default_project_id()})
    try:
        job = service.submit_job(entry.job_type, request, projects_dir=app_state.projects_dir)
    except service.JobStateError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except (service.RequestTooLarge, ConfigurationError) as exc:  # nothing started
        raise HTTPException(status_code=422, detail=str(exc)) from None
    # the planned operations (a batch file counts each pipeline it lists)
    count = (
        job.progress.total_operations if job.progress else len(getattr(request, entry.items_field))
    )
    return BatchJobCreateResponse(
        job_id=job.job_id,
        status=job.status,
        message=f"{entry.label} job created with {count} {entry.noun}",
        total_operations=count,
    )


def _root(http: Request) -> Path:
    return projects_root(http.app.state.projects_dir)


def public_job(job: Any, root: Path) -> dict[str, Any]:
    """A job as the Studio reads it: pipeline results in its words, no server paths.

    `public_paths` only changes strings holding the projects root or starting with `/`; an
    operation whose JSON text has neither (most of them) is kept as it is instead of walked, which
    matters for pages and jobs of thousands of operations."""
    data = job.model_dump(mode="json")
    operations, data["operations"] = data["operations"], []
    public = public_paths(data, root)
    marks = (json.dumps(str(root).rstrip("/") + "/")[1:-1].encode(), b'"/')
    ops = []
    for op in operations:
        op = studio_operation(op)
        text = pydantic_core.to_json(op)
        ops.append(public_paths(op, root) if any(m in text for m in marks) else op)
    public["operations"] = ops
    return public


def _json(payload: dict[str, Any]) -> Response:
    """A large answer serialized once, in pydantic's Rust encoder: `payload` is JSON-safe already
    (jobs dumped in JSON mode), so FastAPI's second validation against the response model is skipped
    (the model still documents the route)."""
    return Response(content=pydantic_core.to_json(payload), media_type="application/json")


def _job_or_404(job_id: str, *, with_operations: bool = True) -> Any:
    try:
        return service.get_job(job_id, with_operations=with_operations)
    except service.JobNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


def _create_route(entry: JobType) -> None:
    """`POST /batch<route>`: a job of this type from its request model (the body)."""

    def create(request: Any, http: Request) -> BatchJobCreateResponse:
        return _create(entry, request, http.app.state)

    create.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=entry.request
            ),
            inspect.Parameter("http", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        ],
        return_annotation=BatchJobCreateResponse,
    )
    router.add_api_route(
        entry.route,
        create,
        methods=["POST"],
        response_model=BatchJobCreateResponse,
        name=entry.route.rsplit("/", 1)[-1].replace("-", "_"),
        description=entry.summary,
    )


for _entry in JOB_TYPES:
    _create_route(_entry)


@router.get("/jobs", response_model=BatchJobListResponse)
def list_jobs(
    http: Request,
    status: BatchJobStatus | None = None,
    job_type: BatchJobType | None = None,
    project_id: str | None = None,
    limit: int = Query(100, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> Response:
    """Jobs newest first with their operations; filters, sort and paging run in Prefect."""
    jobs, total = service.list_jobs(
        status=status,
        job_type=job_type,
        project_id=project_id,
        limit=limit,
        offset=offset,
        with_operations=True,
    )
    root = _root(http)
    return _json(
        {
            "jobs": [public_job(j, root) for j in jobs],
            "total": total,
            "page": offset // limit + 1,
            "page_size": limit,
        }
    )


@router.get("/jobs/{job_id}", response_model=BatchJobStatusResponse)
def get_job(job_id: str, http: Request) -> Response:
    job = _job_or_404(job_id)
    progress = job.progress or BatchProgress(
        total_operations=len(job.operations),
        completed_operations=0,
        failed_operations=0,
        skipped_operations=0,
    )
    return _json({"job": public_job(job, _root(http)), "current_progress": progress.model_dump()})


@router.get("/jobs/{job_id}/progress")
def job_progress(job_id: str) -> dict[str, Any]:
    job = _job_or_404(job_id, with_operations=False)
    return {
        "status": "success",
        "job_id": job.job_id,
        "job_status": job.status.value,
        "progress": job.progress.model_dump() if job.progress else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "completed_at": job.completed_at.isoformat() if job.completed_at else None,
        "duration_ms": job.total_duration_ms,
    }


@router.get("/jobs/{job_id}/operations")
def job_operations(job_id: str, http: Request) -> dict[str, Any]:
    job = _job_or_404(job_id)
    public = public_job(job, _root(http))
    return {
        "status": "success",
        "job_id": job.job_id,
        "total_operations": len(public["operations"]),
        "operations": public["operations"],
    }


@router.post("/jobs/{job_id}/cancel")
def cancel_job(
    job_id: str, request: BatchJobCancelRequest | None = Body(default=None)
) -> dict[str, Any]:
    reason = request.reason if request else None
    try:
        service.cancel_job(job_id, reason)
    except service.JobNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except service.JobStateError:
        job = _job_or_404(job_id, with_operations=False)
        return {
            "status": "warning",
            "message": f"Job is already {job.status.value}; nothing to cancel",
            "job_id": job_id,
            "current_status": job.status.value,
        }
    return {
        "status": "success",
        "message": "Job cancellation requested",
        "job_id": job_id,
        "reason": reason,
    }


@router.post("/jobs/{job_id}/retry")
def retry_job(
    job_id: str, request: BatchJobRetryRequest | None = Body(default=None)
) -> dict[str, Any]:
    """Re-run the job's failed operations (all of them, or those of `operation_ids` that failed);
    every other operation keeps its outcome. Skipped operations are never retried."""
    job = _job_or_404(job_id)
    failed = [op.operation_id for op in job.operations if op.status.value == "failed"]
    if request and request.operation_ids:
        failed = [op_id for op_id in failed if op_id in set(request.operation_ids)]
    if not failed:
        return {"status": "info", "message": "No failed operations to retry", "job_id": job_id}
    try:
        service.retry_job(job_id, wait=False, operation_ids=failed)
    except service.JobStateError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    return {
        "status": "success",
        "message": f"Retrying {len(failed)} failed operations",
        "job_id": job_id,
        "retrying_operations": len(failed),
    }


@router.delete("/jobs/{job_id}")
def delete_job(job_id: str) -> dict[str, Any]:
    _job_or_404(job_id, with_operations=False)
    try:
        service.delete_job(job_id)
    except service.JobStateError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    return {"status": "success", "message": f"Job {job_id} deleted", "job_id": job_id}


@router.get("/statistics")
async def statistics() -> dict[str, Any]:
    """Counts pushed to Prefect (one `count_flow_runs` per status and type, run concurrently)."""
    return {
        "status": "success",
        "statistics": await service.job_statistics_async(),
        "timestamp": datetime.now(UTC).isoformat(),
    }


def _report_file(path: Any, root: Path, field: str) -> Path | None:
    """A report file the job names, only inside the projects root (reports are never read elsewhere)."""
    if not isinstance(path, str) or not path:
        return None
    try:
        confined = confine_path(path, root=root, field=field)
    except ConfigurationError:
        return None
    return confined if confined.is_file() else None


def _read_json(path: Any, root: Path, field: str) -> dict[str, Any] | None:
    confined = _report_file(path, root, field)
    if confined is None:
        return None
    try:
        data = json.loads(confined.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


@router.get("/jobs/{job_id}/report")
def job_report(job_id: str, http: Request) -> dict[str, Any]:
    """The consolidated report in the Studio's keys; 400 when no pipeline run completed or failed."""
    job = _job_or_404(job_id, with_operations=False)
    root = projects_root(http.app.state.projects_dir)
    summary = service.read_job_report(job_id, str(root))  # local copy if current, else stored
    if summary is None or not pipeline_results(summary):
        raise HTTPException(status_code=400, detail=NO_RUNS)
    validation = _read_json(
        summary.get("validation_report_path"), root, "validation_report_path"
    ) or state_store.read_report(
        job_id, storage=summary.get("state_storage"), name="validation_report.json"
    )
    report = build_studio_report(summary, validation)
    report["job_name"] = job.name
    report["job_status"] = job.status.value
    if validation is not None:
        report["validation_report"] = validation
    return {
        "status": "success",
        "job_id": job_id,
        "job_name": job.name,
        "report": public_paths(scrub_data(report), _root(http)),
    }


def create_app(
    projects_dir: str | None = None,
    *,
    auth: AuthSettings | None = None,
    max_body_bytes: int | None = None,
    studio_dir: str | None = None,
) -> FastAPI:
    """The REST app; `projects_dir` overrides `$OMBUDSMAN_PROJECTS_DIR` for the jobs it starts.

    `auth` (default: `AuthSettings.from_env()`) says where credentials live and which origins
    may call; every route any router adds needs a credential except `/health` and the login.
    Bodies over `max_body_bytes` (default `$OMBUDSMAN_API_MAX_BODY_BYTES` or 1 MiB) get 413.
    `studio_dir` serves the Studio's built frontend on this origin (see `StudioSite`)."""
    app = FastAPI(
        title="Ombudsman batch operations",
        description="The Studio's /batch API, running every job as a Prefect flow run.",
        version="0.1.0",
        dependencies=[Depends(authenticate)],
    )
    app.state.projects_dir = projects_dir
    install_boundary(app, max_body_bytes)
    install_auth(app, auth or AuthSettings.from_env())  # after: CORS wraps every answer
    app.include_router(router)
    app.include_router(websocket.router)
    app.include_router(studio.router)

    @app.get("/health", tags=["health"])
    @public
    def health() -> dict[str, Any]:
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                prefect_ok = client.api_healthcheck() is None
        except Exception:
            prefect_ok = False
        return {
            "status": "healthy" if prefect_ok else "degraded",
            "prefect_api": prefect_ok,
            "timestamp": datetime.now(UTC).isoformat(),
        }

    @app.exception_handler(service.OmbudsmanError)
    def ombudsman_error(http: Request, exc: Exception) -> JSONResponse:
        detail = public_paths(scrub(str(exc)), projects_root(http.app.state.projects_dir))
        return JSONResponse(status_code=400, content={"detail": detail})

    if studio_dir:  # last: only paths no route matched reach it
        app.mount("/", StudioSite(directory=studio_dir, html=True), name="studio")
    return app


class StudioSite(StaticFiles):
    """The Studio's built frontend on the API's own origin, public like any static asset.

    Its pages call the API with plain `fetch` (no Authorization header): on the same origin the
    browser sends the HttpOnly, SameSite=Strict session cookie `/auth/login` set, so they are
    authenticated without changing the Studio. A browser navigating to one of its client-side
    routes (`/batch`, `/batch-report/<id>`) gets index.html; other clients get a plain 404.
    """

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except StarletteHTTPException as exc:
            accepts = Headers(scope=scope).get("accept", "")
            if exc.status_code != 404 or "text/html" not in accepts:
                raise
            return await super().get_response("index.html", scope)
