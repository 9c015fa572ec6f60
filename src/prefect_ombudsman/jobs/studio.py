"""The Studio routes its batch page and layout call beside `/batch`, backed by real data.

- `/projects/list`, `/projects/{id}` (also makes it the caller's active project, as the Studio
  does), `/projects/active`: projects from the projects root (`project.yaml` or the Studio's
  `project.json`); the active project is kept per user in `<root>/.ombudsman/studio_users.json`.
- `/workload/pipelines/list`: the pipeline and batch files of a project for the picker.
- `/connections/status`: connects to the project's source and target (`SELECT 1`, bounded
  timeout); the answer names the database kind and a URL without secrets.
- `/alerts/`, `/alerts/count`, `/alerts/{id}/read`, `/alerts/read-all`: failed, partial and
  crashed jobs the user has not marked read.

Shapes are those the Studio frontend reads (reference/studio-today.md and its React source).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from prefect_ombudsman.atomic import write_json_atomic
from prefect_ombudsman.errors import OmbudsmanError
from prefect_ombudsman.jobs import service
from prefect_ombudsman.jobs.accounts import Principal
from prefect_ombudsman.jobs.auth import authenticate
from prefect_ombudsman.jobs.models import BatchJobStatus
from prefect_ombudsman.jobs.studio_report import public_paths
from prefect_ombudsman.projects import (
    Project,
    default_project_id,
    load_project,
    projects_root,
)
from prefect_ombudsman.redaction import scrub

router = APIRouter(tags=["studio"])
CONNECT_TIMEOUT_SECONDS = 5.0
_STATE_LOCK = threading.Lock()
_ALERT_LIMIT = 200


def current_user(principal: Principal | None = Depends(authenticate)) -> str:
    """The caller's name (API token or signed-in user); "anonymous" when auth is off."""
    return principal.name if principal is not None else "anonymous"


def _root(http: Request) -> Path:
    return projects_root(http.app.state.projects_dir)


# ----------------------------------------------------------------------------- per-user state


def _state_file(root: Path) -> Path:
    return root / ".ombudsman" / "studio_users.json"


def _user_state(root: Path, user: str) -> dict[str, Any]:
    try:
        data = json.loads(_state_file(root).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    entry = (data.get("users") or {}).get(user) if isinstance(data, dict) else None
    return entry if isinstance(entry, dict) else {}


def _update_user_state(root: Path, user: str, **changes: Any) -> None:
    with _STATE_LOCK:
        path = _state_file(root)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        users = data.setdefault("users", {})
        users[user] = {**users.get(user, {}), **changes}
        write_json_atomic(path, data)


# ----------------------------------------------------------------------------- projects


def _stamp(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()


def project_metadata(project: Project) -> dict[str, Any]:
    """The Studio's project metadata (its `Project` interface): names only, never credentials."""
    extra = project.config.model_extra or {}
    config_file = next(
        (f for f in (project.path / "project.yaml", project.path / "project.json") if f.is_file()),
        project.path,
    )
    created = (
        extra.get("created_at")
        or datetime.fromtimestamp(config_file.stat().st_ctime, UTC).isoformat()
    )
    return {
        "project_id": project.project_id,
        "name": project.config.name,
        "description": project.config.description or "",
        "created_at": str(created),
        "updated_at": str(extra.get("updated_at") or _stamp(config_file)),
        "sql_database": extra.get("sql_database") or "",
        "sql_schemas": list(extra.get("sql_schemas") or []),
        "snowflake_database": extra.get("snowflake_database") or "",
        "snowflake_schemas": list(extra.get("snowflake_schemas") or []),
        "schema_mappings": dict(project.config.schema_mappings),
    }


def _projects(root: Path) -> list[Project]:
    found = []
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            if not ((folder / "project.yaml").is_file() or (folder / "project.json").is_file()):
                continue
            try:
                found.append(load_project(folder.name, root))
            except OmbudsmanError:
                continue  # a broken project does not hide the others
    return found


def _project_or_404(project_id: str, root: Path) -> Project:
    try:
        return load_project(project_id, root)
    except OmbudsmanError as exc:
        raise HTTPException(
            status_code=404,
            detail=public_paths(f"Project not found: {project_id}: {scrub(str(exc))}", root),
        ) from None


@router.get("/projects/list")
def list_projects(
    http: Request,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    search: str | None = None,
) -> dict[str, Any]:
    """Projects of the projects root, most recently updated first."""
    projects = [project_metadata(p) for p in _projects(_root(http))]
    if search:
        projects = [p for p in projects if search.lower() in p["name"].lower()]
    projects.sort(key=lambda p: p["updated_at"], reverse=True)
    page = projects[offset : offset + limit]
    return {
        "status": "success",
        "projects": page,
        "count": len(page),
        "total": len(projects),
        "page": offset // limit + 1,
        "page_size": limit,
        "has_more": offset + limit < len(projects),
    }


@router.get("/projects/active")
def active_project(http: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    """The caller's active project (else the default project when it exists)."""
    root = _root(http)
    for candidate in (_user_state(root, user).get("active_project"), default_project_id()):
        if not candidate:
            continue
        try:
            project = load_project(candidate, root)
        except OmbudsmanError:
            continue
        return {"status": "success", "active_project": project_metadata(project)}
    return {"status": "no_active_project", "message": "No project is currently active"}


_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such project."}}


@router.get("/projects/{project_id}", responses=_NOT_FOUND)
def get_project(
    project_id: str, http: Request, user: str = Depends(current_user)
) -> dict[str, Any]:
    """A project's metadata and configuration; it becomes the caller's active project."""
    root = _root(http)
    project = _project_or_404(project_id, root)
    _update_user_state(root, user, active_project=project.project_id)
    config: dict[str, Any] = {
        "schema_mappings": dict(project.config.schema_mappings),
        "defaults": dict(project.config.defaults),
    }
    for side in ("source", "target"):
        described = _describe(project, side)
        if described:
            config[side] = described
    return public_paths(
        {
            "status": "success",
            "message": f"Project loaded: {project.config.name}",
            "metadata": project_metadata(project),
            "config": config,
        },
        root,
    )


# ----------------------------------------------------------------------------- pipelines


def _pipeline_entry(path: Path, root: Path, project_id: str) -> dict[str, Any] | None:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(doc, dict):
        return None
    meta: dict[str, Any] = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
    body: dict[str, Any] = doc["pipeline"] if isinstance(doc.get("pipeline"), dict) else doc
    batch: dict[str, Any] | None = doc["batch"] if isinstance(doc.get("batch"), dict) else None
    source: dict[str, Any] = body["source"] if isinstance(body.get("source"), dict) else {}
    steps = body.get("steps") or body.get("validations") or doc.get("custom_queries") or []
    entry: dict[str, Any] = {
        "filename": path.name,
        "path": str(path.relative_to(root)) if path.is_relative_to(root) else path.name,
        "name": meta.get("name") or body.get("name") or path.stem,
        "table": source.get("table") or body.get("table") or "unknown",
        "validation_count": meta.get("validation_count") or len(steps),
        "created_at": str(meta.get("created_at") or _stamp(path)),
        "project_id": meta.get("project_id") or project_id,
        "active": meta.get("active", True) is not False,
        "type": "batch" if batch is not None and "pipelines" in batch else "pipeline",
    }
    if entry["type"] == "batch":
        listed = (batch or {}).get("pipelines") or []
        entry.update(
            {
                "name": batch.get("name") or entry["name"],  # type: ignore[union-attr]
                "pipeline_count": len(listed),
                "batch_type": batch.get("type") or "sequential",  # type: ignore[union-attr]
                "description": batch.get("description") or "",  # type: ignore[union-attr]
                "pipelines": [p.get("file") if isinstance(p, dict) else p for p in listed],
            }
        )
    return entry


@router.get("/workload/pipelines/list", responses=_NOT_FOUND)
def list_pipelines(
    http: Request,
    project_id: str | None = None,
    active_only: bool = False,
    user: str = Depends(current_user),
) -> dict[str, Any]:
    """The pipeline and batch files of a project (the given one, else the caller's active one)."""
    root = _root(http)
    project_id = project_id or _user_state(root, user).get("active_project") or default_project_id()
    project = _project_or_404(project_id, root)
    entries: list[dict[str, Any]] = []
    for folder in (project.pipelines_dir, project.path):
        if not folder.is_dir():
            continue
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            if path.name in ("project.yaml",) or path.name.endswith(".meta.yaml"):
                continue
            entry = _pipeline_entry(path, root, project.project_id)
            if entry is None or (active_only and not entry["active"]):
                continue
            if any(e["filename"] == entry["filename"] for e in entries):
                continue
            entries.append(entry)
    entries.sort(key=lambda e: e["created_at"], reverse=True)
    return {"pipelines": entries, "total": len(entries)}


# ----------------------------------------------------------------------------- connections


def _describe(project: Project, side: str) -> dict[str, Any] | None:
    from prefect_ombudsman.connections import resolve_connection

    if getattr(project.config, side) is None:
        return None
    try:
        spec = resolve_connection(side, project=project)
    except OmbudsmanError as exc:
        return {"configured": False, "message": scrub(str(exc))}
    return {"configured": True, "kind": spec.kind, "url": spec.url}


def _check(project: Project, side: str) -> dict[str, Any]:
    """Connect and run `SELECT 1` within the timeout; the answer holds no secret."""
    from sqlalchemy import text

    from prefect_ombudsman.connections import engine_for, resolve_connection

    if getattr(project.config, side) is None:
        return {
            "configured": False,
            "status": "not_configured",
            "message": f"project {project.project_id!r} has no {side} connection",
        }
    try:
        spec = resolve_connection(side, project=project)
    except OmbudsmanError as exc:
        return {"configured": False, "status": "error", "message": scrub(str(exc))}
    spec = spec.model_copy(update={"login_timeout": int(CONNECT_TIMEOUT_SECONDS)})
    answer: dict[str, Any] = {"configured": True, "role": side, "kind": spec.kind, "url": spec.url}

    def probe() -> None:
        with engine_for(spec).connect() as conn:
            conn.execute(text("SELECT 1"))

    pool = cf.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(probe)
    started = datetime.now(UTC)
    try:
        future.result(timeout=CONNECT_TIMEOUT_SECONDS)
    except cf.TimeoutError:
        answer.update(status="error", message=f"no answer within {CONNECT_TIMEOUT_SECONDS:g} s")
    except Exception as exc:
        answer.update(status="error", message=scrub(f"{type(exc).__name__}: {exc}")[:500])
    else:
        answer.update(status="success", message="Connection successful")
    finally:
        pool.shutdown(wait=False)
    answer["latency_ms"] = int((datetime.now(UTC) - started).total_seconds() * 1000)
    return answer


@router.get("/connections/status", responses=_NOT_FOUND)
def connection_status(
    http: Request, project_id: str | None = None, user: str = Depends(current_user)
) -> dict[str, Any]:
    """The project's source (Studio key `sqlserver`) and target (`snowflake`), actually connected to."""
    root = _root(http)
    project_id = project_id or _user_state(root, user).get("active_project") or default_project_id()
    try:
        project = load_project(project_id, root)
    except OmbudsmanError as exc:
        missing = {"configured": False, "status": "error", "message": scrub(str(exc))}
        return {
            "project_id": project_id,
            "connections": {"sqlserver": missing, "snowflake": missing},
        }
    with cf.ThreadPoolExecutor(max_workers=2) as pool:
        source, target = pool.map(lambda side: _check(project, side), ("source", "target"))
    return public_paths(
        {
            "project_id": project.project_id,
            "connections": {"sqlserver": source, "snowflake": target},
        },
        root,
    )


# ----------------------------------------------------------------------------- alerts


def _alert_runs(user_state: dict[str, Any]) -> list[Any]:
    """Failed and partial jobs that ended after the user's last read-all (newest first, bounded)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterEndTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    after = user_state.get("alerts_read_all_at")
    flow_run_filter = FlowRunFilter(
        # failed, crashed and partial_success alike
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])
        ),
        end_time=(
            FlowRunFilterEndTime.model_validate({"after_": datetime.fromisoformat(after)})
            if after
            else None
        ),
    )
    with service.get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=service.run_filters()["flow_filter"],
            flow_run_filter=flow_run_filter,
            sort=FlowRunSort.END_TIME_DESC,
            limit=_ALERT_LIMIT,
        )


def _alert(run: Any, read: set[str]) -> dict[str, Any]:
    status = service.job_status(run)
    name = (run.parameters or {}).get("job_name") or run.name
    return {
        "id": str(run.id),
        "timestamp": (run.end_time or run.created or datetime.now(UTC)).isoformat(),
        "severity": "error" if status == BatchJobStatus.failed else "warning",
        "category": "validation",
        "title": f"Job {name} {status.value.replace('_', ' ')}",
        "message": scrub(run.state.message or "") if run.state else "",
        "source": f"batch/jobs/{run.id}",
        "details": {"job_id": str(run.id), "status": status.value},
        "suggestions": [],
        "read": str(run.id) in read,
        "action_url": None,
        "action_label": None,
    }


@router.get("/alerts/")
def list_alerts(http: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    state = _user_state(_root(http), user)
    read = set(state.get("alerts_read") or [])
    alerts = [_alert(r, read) for r in _alert_runs(state)]
    return {"alerts": alerts, "unread_count": sum(not a["read"] for a in alerts)}


@router.get("/alerts/count")
def alert_count(http: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    """Failed or partial jobs the user has not marked read."""
    state = _user_state(_root(http), user)
    read = set(state.get("alerts_read") or [])
    return {"unread_count": sum(str(r.id) not in read for r in _alert_runs(state))}


@router.post("/alerts/read-all")
def read_all_alerts(http: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    _update_user_state(
        _root(http), user, alerts_read_all_at=datetime.now(UTC).isoformat(), alerts_read=[]
    )
    return {"status": "success", "message": "All alerts marked as read"}


@router.post("/alerts/{alert_id}/read")
def read_alert(alert_id: str, http: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    root = _root(http)
    read = list(_user_state(root, user).get("alerts_read") or [])
    if alert_id not in read:
        read = [*read, alert_id][-_ALERT_LIMIT:]
    _update_user_state(root, user, alerts_read=read)
    return {"status": "success", "message": "Alert marked as read"}
