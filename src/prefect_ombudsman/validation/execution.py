"""Run pipelines of a project against that project's own connections (what the flows call).

`run_project_pipeline` runs one pipeline (looked up in the search places of
studio-today §1.5, the project first) and writes `results/<run_id>.json` into the project;
`run_project` runs several (all of the project's when none are named) and aggregates them.
Nothing here is process-global: two projects in one job each use their own databases.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from prefect_ombudsman.dialects.base import driver_cause
from prefect_ombudsman.dialects.engines import ConnectionSpec, get_engine
from prefect_ombudsman.errors import (
    ConfigurationError,
    OmbudsmanError,
    OperationCancelled,
    TransientError,
)
from prefect_ombudsman.projects import Project, load_project, projects_root, studio_environment
from prefect_ombudsman.redaction import scrub
from prefect_ombudsman.validation.loader import (
    PipelineRef,
    batch_body,
    expand_pipeline,
    find_pipeline_file,
    load_pipeline,
    not_found_message,
)
from prefect_ombudsman.validation.pipeline_run import run_pipeline
from prefect_ombudsman.validation.spec import PipelineSpec
from prefect_ombudsman.validation.tables import Side

OnCancel = Callable[[Callable[[], None]], Callable[[], None]]


class ConnectionResolver(Protocol):
    """Turns a connection reference of a project into a `ConnectionSpec`: handed to the engine by
    the layer that knows where connections live (`prefect_ombudsman.connections.resolve_connection`:
    URLs, project aliases, Prefect blocks, sealed credentials), so the engine imports no blocks."""

    def __call__(
        self, ref: Any, *, project: Project | None = ..., env: Mapping[str, str] | None = ...
    ) -> ConnectionSpec: ...


def _project_for(ref: PipelineRef, project_id: str | None, root: Path) -> Project:
    """The job's project; else the project whose folder holds the pipeline file."""
    if project_id:
        try:
            return load_project(project_id, root)
        except ConfigurationError:
            if ref.path is None:
                raise
    if ref.path is not None:
        for parent in ref.path.parents:
            if parent.parent == root:
                return load_project(parent.name, root)
    raise ConfigurationError(
        f"pipeline {ref.pipeline_id!r}: no project to take connections from (project {project_id!r} does not exist)"
    )


def open_side(
    label: str,
    project: Project,
    pipeline: PipelineSpec | None = None,
    *,
    resolve: ConnectionResolver,
) -> Side:
    """The source or target side: the pipeline's own `source.connection` if set, else the project's."""
    table_spec = getattr(pipeline, label, None) if pipeline is not None else None
    ref: Any = table_spec.connection if table_spec is not None and table_spec.connection else label
    if ref == label and getattr(project.config, label) is None:
        ref = (
            "sqlserver" if label == "source" else "snowflake"
        )  # a Studio project: the legacy environment
    env = {**os.environ, **studio_environment(project)}
    spec = resolve(ref, project=project, env=env)
    return Side(
        label, get_engine(spec), default_schema=spec.default_schema, name=scrub(spec.display())
    )


def preflight(side: Side) -> None:
    """Connect once; a transient failure is raised for a retry, any other names the side."""
    try:
        with side.connect():
            pass
    except Exception as exc:
        message = f"{side.label} database {side.name} unreachable: {driver_cause(exc)}"
        if isinstance(exc, TransientError):
            raise TransientError(message) from exc
        raise OmbudsmanError(message) from None


def run_project_pipeline(
    pipeline_id: str,
    *,
    project_id: str | None = None,
    projects_dir: str | os.PathLike[str] | None = None,
    config_override: Mapping[str, Any] | None = None,
    check_cancelled: Callable[[], None] | None = None,
    max_workers: int = 4,
    ref: PipelineRef | None = None,
    on_cancel: OnCancel | None = None,
    resolve: ConnectionResolver,
) -> dict[str, Any]:
    """Load one pipeline, run it against its project's connections, write `results/<run_id>.json`.

    `on_cancel(callback) -> unregister` (an operation context's `on_cancel`) gets each side's
    `interrupt`, so a cancelled job stops the running queries, not only the next step."""
    root = projects_root(projects_dir)
    ref = ref or find_pipeline_file(pipeline_id, project_id, root)
    if ref.path is None:
        raise ConfigurationError(not_found_message(ref))
    project = _project_for(ref, project_id, root)
    pipeline = load_pipeline(
        ref.path, pipeline_id=ref.pipeline_id, override=config_override, from_batch=ref.from_batch
    )
    source, target = (
        open_side("source", project, pipeline, resolve=resolve),
        open_side("target", project, pipeline, resolve=resolve),
    )
    removers = [on_cancel(side.interrupt) for side in (source, target)] if on_cancel else []
    try:
        for side in (source, target):
            preflight(side)
        return run_pipeline(
            pipeline,
            source,
            target,
            project_id=project.project_id,
            schema_mappings=project.config.schema_mappings,
            results_dir=project.results_dir,
            max_workers=max_workers,
            check_cancelled=check_cancelled,
        )
    except Exception as exc:
        if not isinstance(exc, OperationCancelled) and (source.cancelled or target.cancelled):
            # an interrupted query surfaces as a driver error: report the cancel itself
            raise OperationCancelled(f"pipeline {pipeline.pipeline_id}: job cancelled") from None
        raise
    finally:
        for remove in removers:
            remove()


def list_project_pipelines(project: Project) -> list[str]:
    """Pipeline ids in the project's `pipelines/` folder (batch files left out: their entries are listed)."""
    from prefect_ombudsman.yamlfiles import load_yaml_file

    ids = []
    folder = project.pipelines_dir
    if not folder.is_dir():
        return []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            if batch_body(load_yaml_file(path)) is not None:
                continue
        except ConfigurationError:
            pass  # still listed: its run reports the problem
        ids.append(path.stem)
    return ids


def run_project(
    project_id: str,
    pipeline_ids: list[str] | None = None,
    *,
    projects_dir: str | os.PathLike[str] | None = None,
    check_cancelled: Callable[[], None] | None = None,
    max_workers: int = 4,
    on_cancel: OnCancel | None = None,
    resolve: ConnectionResolver,
) -> dict[str, Any]:
    """Run the named pipelines (all when none) of one project; per-pipeline outcomes plus totals."""
    root = projects_root(projects_dir)
    project = load_project(project_id, root)
    check = check_cancelled or (lambda: None)
    ids = list(pipeline_ids or []) or list_project_pipelines(project)
    refs: list[PipelineRef | tuple[str, str]] = []
    for pid in ids:
        try:
            refs.extend(expand_pipeline(pid, project_id, root))
        except ConfigurationError as exc:
            refs.append((pid, str(exc)))
    for side in (
        open_side("source", project, resolve=resolve),
        open_side("target", project, resolve=resolve),
    ):
        preflight(side)
    entries: list[dict[str, Any]] = []
    for item in refs:
        check()
        if isinstance(item, tuple):
            entries.append({"pipeline_id": item[0], "status": "error", "error": item[1]})
            continue
        try:
            result = run_project_pipeline(
                item.pipeline_id,
                project_id=project_id,
                projects_dir=root,
                check_cancelled=check,
                max_workers=max_workers,
                ref=item,
                on_cancel=on_cancel,
                resolve=resolve,
            )
        except (OperationCancelled, TransientError):
            raise  # a lost database retries the whole project operation
        except OmbudsmanError as exc:
            entries.append(
                {
                    "pipeline_id": item.pipeline_id,
                    "status": "error",
                    "error": str(exc),
                    "from_batch": item.from_batch,
                }
            )
            continue
        entries.append(pipeline_entry(result))
    return {
        "project_id": project_id,
        "project_name": project.config.name,
        "total_pipelines": len(entries),
        "passed": sum(e["status"] == "passed" for e in entries),
        "failed": sum(e["status"] == "failed" for e in entries),
        "errors": sum(e["status"] == "error" for e in entries),
        "status": "passed"
        if entries and all(e["status"] == "passed" for e in entries)
        else ("passed" if not entries else "failed"),
        "pipelines": entries,
    }


def pipeline_entry(result: dict[str, Any]) -> dict[str, Any]:
    """The short form of a pipeline result kept in a project result (the full one is in its file)."""
    keep = (
        "run_id",
        "pipeline_id",
        "pipeline_name",
        "status",
        "summary",
        "duration_ms",
        "results_path",
        "from_batch",
        "tables",
    )
    entry = {k: result.get(k) for k in keep}
    entry["steps"] = [
        {k: s.get(k) for k in ("name", "validator", "status", "severity", "table", "message")}
        for s in result.get("steps", [])
    ]
    return entry
